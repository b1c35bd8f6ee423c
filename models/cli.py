"""`ocrq models ...`: model tooling. Each command lives beside the code it drives and is
registered here; heavy imports (torch, transformers, mlx) happen inside the commands."""

from __future__ import annotations

import click


@click.group("models")
def models_group() -> None:
    """Export, quantize, verify, convert and list recognizer models."""


def register_commands() -> None:
    """Attach the commands of each backend that is present in this install."""
    import importlib

    for module_name in ("models.trocr.cli", "models.mlx.cli"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        for command in module.COMMANDS:
            models_group.add_command(command)


register_commands()
