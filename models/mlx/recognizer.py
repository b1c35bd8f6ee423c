"""The MLX engine's recognizer: the ONNX engine's batching, preprocessing, tokenizer and
confidence, with the MLX model and its KV-cached decoding underneath.

Importing this module starts mlx (and its BLAS): `models.mlx.engine.load` imports it only
after setting the BLAS thread count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.mlx.generate import beam_search
from models.mlx.model import load_model
from models.trocr.engine import TrOCRRecognizer, load_tokenizer
from models.trocr.preprocess import Preprocessor
from models.trocr.runtime import Decoded


@dataclass(frozen=True)
class DecodeOptions:
    batch_size: int = 16
    max_new_tokens: int = 64
    num_beams: int = 1
    length_penalty: float = 1.0  # beam search only, from generation_config.json
    early_stopping: bool = False


class MLXRecognizer(TrOCRRecognizer):
    """crops -> TextLine(text, confidence) with a converted model in `model_dir`."""

    def __init__(self, model_dir: Path, options: DecodeOptions):
        model_dir = Path(model_dir)
        super().__init__(
            load_model(model_dir),  # type: ignore[arg-type]  # duck-typed: decode_batch below
            Preprocessor.from_file(model_dir / "preprocessor_config.json"),
            load_tokenizer(model_dir),
            options,  # type: ignore[arg-type]
        )
        self.model_dir = model_dir

    def decode_batch(self, pixel_values: np.ndarray) -> list[Decoded]:
        o = self.options
        return beam_search(
            self.model,
            pixel_values,
            o.max_new_tokens,
            o.num_beams,
            o.length_penalty,
            o.early_stopping,
        )

    def text(self, tokens: list[int]) -> str:
        ids = [t for t in tokens if t != self.model.cfg.eos_token_id]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()
