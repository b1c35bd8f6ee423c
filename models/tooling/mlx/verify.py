"""Parity of a converted MLX model against the PyTorch reference (`ocrq models verify`).

Two checks on the same inputs: teacher-forced logits (max absolute difference relative to
the logit range, and cosine) and free-running greedy tokens (must be identical in float32).

Why these thresholds (float32): both sides compute the same float32 graph with different
kernels (summation order, fused attention), so logits differ only by rounding grown
through the layers. Measured on 8 rendered lines, 24 steps: tiny DeiT/ViT x small/base
shapes 7.6e-6..2.6e-5 absolute, 2.4e-7..8.3e-7 relative to the logit range, cosine
>= 0.99999999999993; full-size trocr-small shape (random weights) 2.3e-6 absolute,
1.4e-6 relative; greedy tokens identical everywhere. A wrong weight, a missed layernorm,
an off-by-one position or a wrong scale moves logits by 1e-2..1 relative (a 5% change of
one layernorm weight already fails), so 1e-4 relative is ~70x above rounding and still
below any real mistake; it is also the ONNX FP32 threshold, so both backends answer to
the same bar. Greedy tokens must be identical.

Half precision rounds every weight and activation: measured float16 0.7e-3..1.8e-3
relative (cosine >= 0.9999996), bfloat16 6.6e-3..1.4e-2 (cosine >= 0.99997) on the tiny
models. Their thresholds (2e-2 / 1e-1 relative) leave room for deeper full-size models
and only guard against a broken conversion; token agreement is reported, not required
(bfloat16 changed 2-4 of 8 rows: random-weight models have tiny logit margins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.tooling.parity import Thresholds, compare, trim

# Keyed by the dtype the weights were converted to (convert-mlx --dtype).
THRESHOLDS = {
    "float32": Thresholds(max_rel_diff=1e-4, min_cosine=0.99999, exact_tokens=True),
    "float16": Thresholds(max_rel_diff=2e-2, min_cosine=0.999, exact_tokens=False),
    "bfloat16": Thresholds(max_rel_diff=1e-1, min_cosine=0.99, exact_tokens=False),
}


def verify_mlx(model_dir: Path, pixel_values: np.ndarray, reference: dict) -> dict[str, Any]:
    """Compare the MLX model in `model_dir` with a PyTorch `reference` on `pixel_values`.

    `reference` is `models.tooling.trocr.reference.torch_reference(...)`: "logits" [B, T, V]
    teacher-forced on "decoder_input_ids" [B, T], "greedy_tokens" (generated ids per row,
    start token excluded, up to EOS) and "max_new_tokens". Returns the figures of
    `models.tooling.parity.compare` (max abs/rel logit diff, cosine, greedy agreement,
    thresholds, passed, failures) plus "backend" and "dtype".
    """
    # mlx is optional (the `mlx` extra): imported when an MLX model is checked, so that
    # ONNX checks run without it. models.mlx.generate and .model import mlx too.
    import mlx.core as mx

    from models.mlx.generate import greedy
    from models.mlx.model import load_model

    model = load_model(Path(model_dir))
    dtype = str(model.dtype).removeprefix("mlx.core.")
    ids = np.asarray(reference["decoder_input_ids"])
    logits = np.array(model(pixel_values, ids).astype(mx.float32))
    eos, pad = model.cfg.eos_token_id, model.cfg.pad_token_id
    decoded = greedy(model, pixel_values, int(reference["max_new_tokens"]))
    ours = [trim(d.tokens, eos, pad) for d in decoded]
    report = compare(logits, ours, reference, THRESHOLDS[dtype])
    return {"backend": "mlx", "dtype": dtype, **report}
