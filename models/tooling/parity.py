"""Comparing a backend with the PyTorch reference: the figures, the pass/fail rule and what
a manifest records of them. Shared by the ONNX (models.tooling.trocr.verify) and MLX
(models.tooling.mlx.verify) checks, each with its own thresholds."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ocrq.errors import ModelError

CHECK_TOKENS = 20  # decode steps of the parity checks


class ParityError(ModelError):
    """A backend's outputs are outside the parity thresholds."""


@dataclass(frozen=True)
class Thresholds:
    max_rel_diff: float  # max |ours - torch| / max(1, max |torch|)
    min_cosine: float
    exact_tokens: bool


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


def compare(
    logits: np.ndarray,
    ours: list[list[int]],
    reference: dict[str, Any],
    limits: Thresholds,
) -> dict[str, Any]:
    """A backend's teacher-forced `logits` and free-running greedy tokens (`ours`, one
    list per input) against the PyTorch `reference`: the figures, and whether they pass
    `limits` (with the failures named)."""
    ref = np.asarray(reference["logits"], np.float32)
    diff = float(np.abs(logits - ref).max())
    rel = diff / max(1.0, float(np.abs(ref).max()))
    a, b = logits.ravel().astype(np.float64), ref.ravel().astype(np.float64)
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    theirs = reference["greedy_tokens"]
    same_rows = sum(o == t for o, t in zip(ours, theirs, strict=True))
    positions = sum(max(len(o), len(t)) for o, t in zip(ours, theirs, strict=True))
    same = sum(
        sum(x == y for x, y in zip(o, t, strict=False)) for o, t in zip(ours, theirs, strict=True)
    )
    forced_top1, margin = _forced_top1(logits, ref, theirs)
    failures = []
    if rel > limits.max_rel_diff:
        failures.append(f"max relative logit diff {rel:.2e} > {limits.max_rel_diff:.0e}")
    if cosine < limits.min_cosine:
        failures.append(f"logit cosine {cosine:.6f} < {limits.min_cosine}")
    if limits.exact_tokens and same_rows != len(ours):
        failures.append(f"greedy tokens differ on {len(ours) - same_rows}/{len(ours)} inputs")
    return {
        "inputs": len(ours),
        "max_abs_logit_diff": diff,
        "max_rel_logit_diff": rel,
        "logit_cosine": cosine,
        "greedy_rows_identical": same_rows,
        "greedy_token_agreement": same / positions if positions else 1.0,
        "forced_top1_agreement": forced_top1,
        "reference_top1_margin": margin,
        "thresholds": asdict(limits),
        "passed": not failures,
        "failures": failures,
    }


def _forced_top1(
    logits: np.ndarray, ref: np.ndarray, ref_tokens: list[list[int]]
) -> tuple[float, float]:
    """Top-1 agreement with the reference at every position of the teacher-forced prefix
    (up to its EOS), and the reference's mean top-1 minus top-2 logit there.

    Free-running greedy agreement stops counting at a row's first flip, since everything
    after follows other tokens; forced top-1 counts each position on its own. The margin
    says how close the reference's choices were: near 0 (random weights, flat logits),
    any rounding flips them."""
    steps = logits.shape[1]
    mask = np.zeros(logits.shape[:2], bool)
    for row, tokens in enumerate(ref_tokens):
        mask[row, : min(len(tokens) + 1, steps)] = True
    same = logits.argmax(-1) == ref.argmax(-1)
    top2 = np.partition(ref, -2, axis=-1)[..., -2:]  # [second, first]
    margin = top2[..., 1] - top2[..., 0]
    return float(same[mask].mean()), float(margin[mask].mean())


def summary(report: dict[str, Any], inputs: str) -> dict[str, Any]:
    """The figures of a `compare` report a manifest records, with what they were taken on."""
    keep = (
        "inputs",
        "max_abs_logit_diff",
        "max_rel_logit_diff",
        "logit_cosine",
        "greedy_rows_identical",
        "greedy_token_agreement",
        "forced_top1_agreement",
        "reference_top1_margin",
        "passed",
        "dtype",
    )
    return {"on": inputs, **{k: report[k] for k in keep if k in report}}
