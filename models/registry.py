"""Engine selection by name: one loader per backend module, imported lazily so a worker
pays only for the backend it runs (no transformers/mlx import for the default engine)."""

from __future__ import annotations

import importlib
from pathlib import Path

from models.base import Engine
from ocrq.config import EngineOptions
from ocrq.errors import ModelError

# engine name -> "module:function"; each function is load(options, models_dir, threads) -> Engine
LOADERS = {
    "ppocr": "models.ppocr.engine:load",
    "trocr-onnx": "models.trocr.engine:load",
    "trocr-mlx": "models.mlx.engine:load",
}


def load_engine(options: EngineOptions, models_dir: Path, threads: int = 1) -> Engine:
    target = LOADERS.get(options.engine)
    if target is None:
        raise ModelError(f"unknown engine {options.engine!r}; choose one of {', '.join(LOADERS)}")
    module_name, func_name = target.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name)(options, models_dir, threads)
