"""Parity of a converted MLX model against the PyTorch reference (`ocrq models verify`).

Two checks on the same inputs: teacher-forced logits (max absolute difference relative to
the logit range, and cosine) and free-running greedy tokens (must be identical in float32).

Why these thresholds (float32): both sides compute the same float32 graph with different
kernels (summation order, fused attention, erf/tanh), so logits differ by float rounding
grown through the layers: measured 5e-6..1.2e-5 absolute on logits of magnitude 25-46
for the tiny models (relative ~3e-7) and ~2e-5 relative for full-size trocr-small/base
shapes. A wrong weight, a missed layernorm, an off-by-one position or a wrong scale moves
logits by 1e-2..1 relative, so 1e-4 relative leaves 5x headroom over rounding and
still catches every real mistake. Half precision rounds each weight to 3 (float16) or
2 (bfloat16) significant digits; its thresholds only guard against a broken conversion,
and token agreement is reported but not required (random-weight models have tiny margins,
see DESIGN.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Thresholds:
    max_rel_diff: float  # max |mlx - torch| / max(1, max |torch|)
    min_cosine: float  # cosine of the flattened logits
    exact_tokens: bool  # greedy tokens must equal PyTorch's on every input


THRESHOLDS = {
    "float32": Thresholds(max_rel_diff=1e-4, min_cosine=0.99999, exact_tokens=True),
    "float16": Thresholds(max_rel_diff=2e-2, min_cosine=0.999, exact_tokens=False),
    "bfloat16": Thresholds(max_rel_diff=1e-1, min_cosine=0.99, exact_tokens=False),
}


def trim(tokens: list[int], eos: int, pad: int) -> list[int]:
    """Generated ids up to and including the first EOS, without trailing padding."""
    out = []
    for token in tokens:
        out.append(int(token))
        if token == eos:
            break
    while out and out[-1] == pad:
        out.pop()
    return out


def verify_mlx(model_dir: Path, pixel_values: np.ndarray, reference: dict) -> dict[str, Any]:
    """Compare the MLX model in `model_dir` with a PyTorch `reference` on `pixel_values`.

    `reference` is `models.trocr.reference.torch_reference(...)`: "logits" [B, T, V]
    teacher-forced on "decoder_input_ids" [B, T], "greedy_tokens" (generated ids per row,
    start token excluded) and "max_new_tokens".
    """
    import mlx.core as mx

    from models.mlx.generate import greedy
    from models.mlx.model import load_model

    model = load_model(Path(model_dir))
    dtype = str(model.dtype).removeprefix("mlx.core.")
    limits = THRESHOLDS[dtype]
    ids = np.asarray(reference["decoder_input_ids"])
    logits = np.array(model(pixel_values, ids).astype(mx.float32))
    ref = np.asarray(reference["logits"], dtype=np.float32)
    diff = float(np.abs(logits - ref).max())
    rel = diff / max(1.0, float(np.abs(ref).max()))
    a, b = logits.ravel().astype(np.float64), ref.ravel().astype(np.float64)
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    eos, pad = model.cfg.eos_token_id, model.cfg.pad_token_id
    decoded = greedy(model, pixel_values, int(reference["max_new_tokens"]))
    ours = [trim(d.tokens, eos, pad) for d in decoded]
    theirs = [trim(t, eos, pad) for t in reference["greedy_tokens"]]
    same_rows = sum(o == t for o, t in zip(ours, theirs, strict=True))
    positions = sum(max(len(o), len(t)) for o, t in zip(ours, theirs, strict=True))
    same_positions = sum(
        sum(x == y for x, y in zip(o, t, strict=False)) for o, t in zip(ours, theirs, strict=True)
    )
    failures = []
    if rel > limits.max_rel_diff:
        failures.append(f"max relative logit diff {rel:.2e} > {limits.max_rel_diff:.0e}")
    if cosine < limits.min_cosine:
        failures.append(f"logit cosine {cosine:.6f} < {limits.min_cosine}")
    if limits.exact_tokens and same_rows != len(ours):
        failures.append(f"greedy tokens differ on {len(ours) - same_rows}/{len(ours)} inputs")
    return {
        "backend": "mlx",
        "dtype": dtype,
        "inputs": len(ours),
        "max_abs_logit_diff": diff,
        "max_rel_logit_diff": rel,
        "logit_cosine": cosine,
        "greedy_rows_identical": same_rows,
        "greedy_token_agreement": same_positions / positions if positions else 1.0,
        "thresholds": asdict(limits),
        "passed": not failures,
        "failures": failures,
    }
