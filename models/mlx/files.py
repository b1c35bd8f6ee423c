"""Names of a converted MLX model, kept apart from models/mlx/model.py so that finding a
model (`engine.resolve`) and the conversion tooling need no mlx import."""

from __future__ import annotations

KIND = "trocr-mlx"  # manifest "kind" of a converted model
MLX_SUFFIX = "-mlx"  # beside the ONNX export of the same source in one cache
WEIGHTS_FILE = "model.safetensors"
