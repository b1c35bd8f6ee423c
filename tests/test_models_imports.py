"""The runtime a worker imports stays apart from the model tooling: no torch, no
transformers, nothing of models.tooling (each checked in a fresh interpreter, since this
test process may have imported them already)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What a worker imports to load an engine (models.registry imports the engine's module).
WORKER_MODULES = ("models.registry", "models.page", "models.ppocr.engine", "models.trocr.engine")
# The MLX engine's modules, which import mlx (installed on Apple Silicon, or mlx[cpu]).
MLX_MODULES = ("models.mlx.engine", "models.mlx.recognizer")
TOOLING = ("torch", "transformers", "models.tooling")


def imported_after(modules: tuple[str, ...], watched: tuple[str, ...]) -> list[str]:
    """Modules under any of `watched` that a fresh interpreter holds after importing
    `modules`."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"watched = {list(watched)!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "    if any(m == w or m.startswith(w + '.') for w in watched))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_engines_a_worker_imports_pull_in_no_tooling():
    assert imported_after(WORKER_MODULES, TOOLING) == []


def test_the_mlx_engine_pulls_in_no_tooling():
    try:
        import mlx.core  # noqa: F401
    except Exception as exc:  # plain `mlx` on Linux installs but fails to import
        pytest.skip(f"mlx does not import here ({type(exc).__name__}: {exc})")
    assert imported_after(MLX_MODULES, TOOLING) == []


def test_the_models_command_group_imports_its_tooling_only_when_a_command_runs():
    """`ocrq` imports models.cli at start-up: torch, transformers, mlx and onnxruntime
    wait for a command that needs them."""
    heavy = ("torch", "transformers", "mlx", "onnxruntime", "onnx")
    assert imported_after(("models.cli",), heavy) == []
