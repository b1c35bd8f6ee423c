"""Batched decoding for the MLX TrOCR: greedy and beam search over a KV cache.

The encoder and the cross-attention keys/values run once per batch; each step feeds one
token per row and grows the per-layer self-attention cache. Rows that reach EOS leave the
batch (their cache rows are dropped), so a batch costs what its longest line costs only
for the rows still running.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from models.mlx.model import TrOCR, select_rows
from models.trocr.runtime import Decoded  # same result and confidence as the ONNX engine


def _log_softmax(logits: mx.array) -> mx.array:
    logits = logits.astype(mx.float32)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def greedy(
    model: TrOCR, pixel_values: np.ndarray, max_new_tokens: int, min_new_tokens: int = 0
) -> list[Decoded]:
    """Greedy decoding of a batch [B, C, H, W]; per-row early stop at EOS.

    `min_new_tokens` forbids EOS for that many steps (benchmarks force a step count).
    """
    cfg = model.cfg
    batch = pixel_values.shape[0]
    if batch == 0:
        return []
    cross = model.cross_kv(model.encode(pixel_values))
    tokens: list[list[int]] = [[] for _ in range(batch)]
    logprob = np.zeros(batch, np.float64)
    alive = np.arange(batch)  # original row index of each row still in the batch
    step_input = np.full((batch, 1), cfg.decoder_start_token_id, dtype=np.int32)
    cache = None
    for step in range(max_new_tokens):
        logits, cache = model.decode(step_input, cross, cache)
        logp = _log_softmax(logits[:, -1, :])
        if step < min_new_tokens:
            logp[:, cfg.eos_token_id] = -mx.inf
        best = mx.argmax(logp, axis=-1)
        best_lp = mx.take_along_axis(logp, best[:, None], axis=-1)[:, 0]
        best_np, best_lp_np = np.array(best), np.array(best_lp)  # evaluates the step
        logprob[alive] += best_lp_np
        for row, token in zip(alive, best_np, strict=True):
            tokens[row].append(int(token))
        running = best_np != cfg.eos_token_id
        if not running.any():
            break
        if not running.all():
            keep = mx.array(np.flatnonzero(running))
            cache, cross = select_rows(cache, keep), select_rows(cross, keep)
            alive, best_np = alive[running], best_np[running]
        step_input = best_np[:, None].astype(np.int32)
    return [Decoded(t, float(lp)) for t, lp in zip(tokens, logprob, strict=True)]


@dataclass
class _Row:
    """Beam state of one input: running beams and the best finished hypotheses."""

    beams: list[list[int]]  # tokens of each running beam
    scores: np.ndarray  # running sum of log-probs per beam, float32 as in HF
    finished: list[tuple[float, list[int], float]]  # (normalized score, tokens, sum log-prob)


def beam_search(
    model: TrOCR,
    pixel_values: np.ndarray,
    max_new_tokens: int,
    num_beams: int,
    length_penalty: float = 1.0,
    early_stopping: bool = False,
) -> list[Decoded]:
    """Beam search as Hugging Face's `generate(num_beams=...)` does it, batched over inputs.

    Per input: keep the 2*num_beams best continuations; those ending in EOS (or at the
    length limit) among the top num_beams become hypotheses scored sum(log p) /
    length**length_penalty; the best num_beams unfinished ones run on. An input stops
    when its finished hypotheses cannot be beaten (HF's heuristic) and leaves the batch.
    """
    if num_beams <= 1:
        return greedy(model, pixel_values, max_new_tokens)
    cfg, nb = model.cfg, num_beams
    batch = pixel_values.shape[0]
    cross = model.cross_kv(model.encode(pixel_values))
    cross = select_rows(cross, mx.array(np.repeat(np.arange(batch), nb)))
    first = np.full(nb, -1e9, dtype=np.float32)
    first[0] = 0.0  # all beams start equal: only beam 0 may expand at the first step
    rows = {b: _Row([[]] * nb, first.copy(), []) for b in range(batch)}
    alive = list(range(batch))
    step_input = np.full((batch * nb, 1), cfg.decoder_start_token_id, dtype=np.int32)
    cache = None
    for step in range(max_new_tokens):
        logits, cache = model.decode(step_input, cross, cache)
        logp = _log_softmax(logits[:, -1, :])
        vocab = logp.shape[-1]
        scores = mx.array(np.stack([rows[b].scores for b in alive]))
        total = (logp.reshape(len(alive), nb, vocab) + scores[:, :, None]).reshape(len(alive), -1)
        top = mx.argpartition(-total, kth=2 * nb - 1, axis=-1)[:, : 2 * nb]
        top_np = np.array(top)
        top_total = np.array(mx.take_along_axis(total, top, axis=-1))
        last = step + 1 == max_new_tokens
        next_alive, parents, tokens = [], [], []
        for i, b in enumerate(alive):
            row = rows[b]
            order = np.argsort(-top_total[i], kind="stable")
            cand = [(top_total[i, j], *divmod(int(top_np[i, j]), vocab)) for j in order]
            new_beams, new_scores = [], []
            for rank, (total_lp, beam, token) in enumerate(cand):
                seq = row.beams[beam]
                if token == cfg.eos_token_id or last:
                    full = early_stopping and len(row.finished) == nb
                    if rank < nb and not full:
                        score = float(total_lp) / (step + 1) ** length_penalty
                        row.finished.append((score, [*seq, token], float(total_lp)))
                elif len(new_beams) < nb:
                    new_beams.append([*seq, token])
                    new_scores.append(total_lp)
                    parents.append(i * nb + beam)
                    tokens.append(token)
            row.finished = sorted(row.finished, key=lambda h: -h[0])[:nb]
            row.beams, row.scores = new_beams, np.array(new_scores, dtype=np.float32)
            full = len(row.finished) == nb
            # HF's stop heuristic: the best running beam, normalized at the current length,
            # can no longer beat the worst kept hypothesis.
            done = last or (early_stopping and full)
            if not done and full:
                best_running = new_scores[0] / (step + 1) ** length_penalty
                done = best_running <= min(h[0] for h in row.finished)
            if done:
                del parents[len(parents) - len(new_beams) :], tokens[len(tokens) - len(new_beams) :]
            else:
                next_alive.append(b)
        if not next_alive:
            break
        keep = mx.array(np.array(parents, dtype=np.int32))
        cache, cross = select_rows(cache, keep), select_rows(cross, keep)
        alive = next_alive
        step_input = np.array(tokens, dtype=np.int32)[:, None]
    return [Decoded(rows[b].finished[0][1], rows[b].finished[0][2]) for b in range(batch)]
