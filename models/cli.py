"""`ocrq models ...`: the model tooling's command group (producer/cli.py adds it to `ocrq`).

Each command lives beside the code it drives, in models/tooling, and imports that code
(torch, transformers, mlx, onnxruntime) only when it runs.
"""

from __future__ import annotations

import click

from models.tooling.mlx import cli as mlx_cli
from models.tooling.ppocr import cli as ppocr_cli
from models.tooling.trocr import cli as trocr_cli


@click.group("models")
def models_group() -> None:
    """Export, quantize, verify, convert, fine-tune and list recognizer models."""


for command in [*trocr_cli.COMMANDS, *mlx_cli.COMMANDS, *ppocr_cli.COMMANDS]:
    models_group.add_command(command)
