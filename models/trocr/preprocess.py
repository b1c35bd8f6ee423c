"""Crops -> pixel_values exactly as the model's saved `preprocessor_config.json` says.

TrOCR ships a ViT image processor config: resize to (height, width) with a PIL resample
filter, rescale by `rescale_factor`, normalize by `image_mean`/`image_std`. We read those
values instead of hard-coding 384 / 0.5 so any VisionEncoderDecoder checkpoint works, and
we do it with Pillow + numpy so the worker needs no transformers import.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ocrq.errors import ModelError


@dataclass(frozen=True)
class Preprocessor:
    height: int
    width: int
    resample: int = 2  # PIL.Image.Resampling value (2 = bilinear)
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @classmethod
    def from_file(cls, path: Path | str) -> Preprocessor:
        try:
            cfg = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read image processor config {path}: {exc}") from exc
        size = cfg.get("size", 384)
        if isinstance(size, int):
            height = width = size
        elif "height" in size and "width" in size:
            height, width = int(size["height"]), int(size["width"])
        else:
            raise ModelError(f"{path}: unsupported size {size!r} (need height and width)")

        def triple(value: float | Sequence[float]) -> tuple[float, float, float]:
            vals = [float(value)] * 3 if isinstance(value, (int, float)) else list(value)
            return (vals[0], vals[1], vals[2])

        return cls(
            height=height,
            width=width,
            resample=int(cfg.get("resample", 2)),
            do_resize=bool(cfg.get("do_resize", True)),
            do_rescale=bool(cfg.get("do_rescale", True)),
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)),
            do_normalize=bool(cfg.get("do_normalize", True)),
            mean=triple(cfg.get("image_mean", 0.5)),
            std=triple(cfg.get("image_std", 0.5)),
        )

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """HxWx3 uint8 RGB crops -> float32 [B, 3, height, width]."""
        out = np.empty((len(crops), 3, self.height, self.width), np.float32)
        mean = np.asarray(self.mean, np.float32)
        inv_std = 1.0 / np.asarray(self.std, np.float32)
        for i, crop in enumerate(crops):
            image = Image.fromarray(np.ascontiguousarray(crop)).convert("RGB")
            if self.do_resize and image.size != (self.width, self.height):
                image = image.resize((self.width, self.height), Image.Resampling(self.resample))
            x = np.asarray(image, np.float32)
            if x.shape[:2] != (self.height, self.width):
                raise ModelError(f"crop of {x.shape[:2]} does not fit {self.height}x{self.width}")
            if self.do_rescale:
                x = x * np.float32(self.rescale_factor)
            if self.do_normalize:
                x = (x - mean) * inv_std
            out[i] = x.transpose(2, 0, 1)
        return out
