"""Model tooling behind `ocrq models ...`: export, quantize, verify and convert models.

Most of it needs PyTorch and transformers (the `export` extra) or MLX. A worker never
imports this package: the engines (models.ppocr, models.trocr, models.mlx) read only the
files it writes (tests/test_models_imports.py checks that).
"""
