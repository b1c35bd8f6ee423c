"""Optional 0/180 degree angle classifier (PP-OCR mobile cls): upside-down crops are
turned before recognition. Wraps any recognizer, so the engine interface is unchanged."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from models.base import Recognizer, TextLine

CLS_H, CLS_W = 48, 192


def cls_batch(crops: Sequence[np.ndarray]) -> np.ndarray:
    batch = np.zeros((len(crops), 3, CLS_H, CLS_W), dtype=np.float32)
    for n, crop in enumerate(crops):
        h, w = crop.shape[:2]
        rw = int(min(CLS_W, np.ceil(CLS_H * w / max(h, 1))))
        resized = cv2.resize(crop, (max(rw, 1), CLS_H), interpolation=cv2.INTER_LINEAR)
        view = batch[n, :, :, : resized.shape[1]]
        np.multiply(resized.transpose(2, 0, 1), 2.0 / 255.0, out=view, casting="unsafe")
        view -= 1.0
    return batch


class AngleCorrectingRecognizer:
    def __init__(
        self,
        session,
        inner: Recognizer,
        thresh: float = 0.9,
        batch_size: int = 16,
    ):
        self.session = session
        self.inner = inner
        self.thresh = thresh
        self.batch_size = batch_size
        self._input = session.get_inputs()[0].name

    def upside_down(self, crops: Sequence[np.ndarray]) -> list[bool]:
        flags: list[bool] = []
        for start in range(0, len(crops), self.batch_size):
            part = crops[start : start + self.batch_size]
            probs = self.session.run(None, {self._input: cls_batch(part)})[0]
            flags.extend(bool(p[1] > self.thresh) for p in probs)
        return flags

    def recognize(self, crops: Sequence[np.ndarray]) -> list[TextLine]:
        flags = self.upside_down(crops) if crops else []
        fixed = [
            np.ascontiguousarray(c[::-1, ::-1]) if f else c
            for c, f in zip(crops, flags, strict=True)
        ]
        return self.inner.recognize(fixed)
