"""Running the exported graphs: encoder once per batch, then KV-cached decoding.

Greedy: all rows step together; a row that emits EOS is finished and dropped from the
batch (its self and cross K/V rows are sliced away), so late steps cost only the rows
still decoding. Beam search keeps `num_beams` rows per input and drops an input's rows
once it is done. Confidence is the geometric mean of the chosen tokens' probabilities
(exp of the mean log-prob, EOS included), in 0..1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.onnx_session import open_session
from ocrq.errors import ModelError

ENCODER_BATCH = 8


@dataclass(frozen=True)
class Decoded:
    tokens: list[int]  # generated ids, start token excluded, up to and including EOS
    logprob: float  # sum of the chosen tokens' log-probs

    @property
    def confidence(self) -> float:
        return float(np.exp(self.logprob / max(1, len(self.tokens))))


@dataclass(frozen=True)
class TokenIds:
    start: int
    eos: int
    pad: int

    @classmethod
    def from_dir(cls, model_dir: Path) -> TokenIds:
        """From generation_config.json, falling back to config.json (as transformers does)."""
        cfg: dict = {}
        for name in ("config.json", "generation_config.json"):
            path = model_dir / name
            if path.is_file():
                data = json.loads(path.read_text())
                cfg.update({k: v for k, v in data.items() if v is not None})
        dec = cfg.get("decoder", {})
        start = cfg.get("decoder_start_token_id", dec.get("decoder_start_token_id"))
        eos = cfg.get("eos_token_id", dec.get("eos_token_id"))
        pad = cfg.get("pad_token_id", dec.get("pad_token_id", eos))
        if isinstance(eos, list):
            eos = eos[0]
        if start is None or eos is None:
            raise ModelError(f"{model_dir}: no decoder_start_token_id / eos_token_id in configs")
        return cls(int(start), int(eos), int(pad if pad is not None else eos))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


class OnnxTrOCR:
    """The encoder and decoder-step sessions of one exported model."""

    def __init__(self, encoder_path: Path, decoder_path: Path, ids: TokenIds, threads: int = 1):
        self.encoder = open_session(encoder_path, threads)
        self.decoder = open_session(decoder_path, threads)
        self.ids = ids
        self.cross_names = [o.name for o in self.encoder.get_outputs()]
        inputs = {i.name: i for i in self.decoder.get_inputs()}
        self.past_names = [n for n in inputs if n.startswith("past_")]
        self.layers = len(self.past_names) // 2
        past = inputs[self.past_names[0]]
        self.heads, self.head_dim = int(past.shape[1]), int(past.shape[3])
        if len(self.cross_names) != 2 * self.layers:
            raise ModelError(f"{encoder_path.name} and {decoder_path.name} do not belong together")

    def encode(self, pixel_values: np.ndarray) -> list[np.ndarray]:
        """Cross-attention K/V of every decoder layer: [k0, v0, k1, v1, ...].

        Images are encoded at most ENCODER_BATCH at a time: the encoder's activations for
        32 images outgrow the cache (small size, one core: 5.26 s for 32 images in one
        call, 4.8 s in four calls of 8), while the decoder still steps all rows together.
        """
        if len(pixel_values) <= ENCODER_BATCH:
            return self.encoder.run(None, {"pixel_values": pixel_values})
        parts = [
            self.encoder.run(None, {"pixel_values": pixel_values[i : i + ENCODER_BATCH]})
            for i in range(0, len(pixel_values), ENCODER_BATCH)
        ]
        return [np.concatenate(chunks) for chunks in zip(*parts, strict=True)]

    def empty_past(self, batch: int) -> list[np.ndarray]:
        empty = np.zeros((batch, self.heads, 0, self.head_dim), np.float32)
        return [empty] * (2 * self.layers)

    def step(
        self, input_ids: np.ndarray, past: list[np.ndarray], cross: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """logits [B, T, V] and the new self-attention K/V."""
        feed = {"input_ids": input_ids.astype(np.int64, copy=False)}
        feed.update(zip(self.past_names, past, strict=True))
        feed.update(zip(self.cross_names, cross, strict=True))
        out = self.decoder.run(None, feed)
        return out[0], out[1:]

    def teacher_forced_logits(self, pixel_values: np.ndarray, input_ids: np.ndarray) -> np.ndarray:
        """All positions in one call (zero-length past): for parity checks."""
        cross = self.encode(pixel_values)
        logits, _ = self.step(input_ids, self.empty_past(len(input_ids)), cross)
        return logits


def greedy(
    model: OnnxTrOCR,
    pixel_values: np.ndarray,
    max_new_tokens: int,
    min_new_tokens: int = 0,
) -> list[Decoded]:
    """Batched greedy decoding; finished rows leave the batch.

    `min_new_tokens` masks EOS for that many steps (benchmarks force a fixed step count).
    """
    n = len(pixel_values)
    if n == 0:
        return []
    cross = model.encode(pixel_values)
    past = model.empty_past(n)
    rows = np.arange(n)  # original index of each live row
    tokens: list[list[int]] = [[] for _ in range(n)]
    logprob = np.zeros(n, np.float64)
    ids = np.full((n, 1), model.ids.start, np.int64)
    eos = model.ids.eos
    for step in range(max_new_tokens):
        logits, past = model.step(ids, past, cross)
        scores = log_softmax(logits[:, -1].astype(np.float32))
        if step < min_new_tokens:
            scores[:, eos] = -np.inf
        best = scores.argmax(-1)
        logprob[rows] += scores[np.arange(len(rows)), best]
        for r, t in zip(rows, best, strict=True):
            tokens[r].append(int(t))
        live = best != eos
        if not live.all():
            if not live.any():
                break
            keep = np.flatnonzero(live)
            rows, best = rows[keep], best[keep]
            past = [p[keep] for p in past]
            cross = [c[keep] for c in cross]
        ids = best[:, None].astype(np.int64)
    return [Decoded(tokens[i], float(logprob[i])) for i in range(n)]


def beam_search(
    model: OnnxTrOCR,
    pixel_values: np.ndarray,
    max_new_tokens: int,
    num_beams: int,
    length_penalty: float = 1.0,
) -> list[Decoded]:
    """Beam search, batched over inputs; an input's beams leave the batch once it is done.

    Hypotheses end at EOS; scores are sum log-prob / length**length_penalty; an input is
    done when it has `num_beams` finished hypotheses and no live beam can beat the worst
    of them (as in transformers with early_stopping=False, for length_penalty > 0).
    """
    n, k = len(pixel_values), num_beams
    if n == 0:
        return []
    eos = model.ids.eos
    cross = [np.repeat(c, k, axis=0) for c in model.encode(pixel_values)]
    past = model.empty_past(n * k)
    inputs = np.arange(n)  # original input of each live group of k rows
    seqs = [[[] for _ in range(k)] for _ in range(n)]
    # only beam 0 is live at first, so the k beams do not start as k copies of one
    beam_scores = np.tile(np.array([0.0] + [-1e9] * (k - 1)), (n, 1))
    finished: list[list[tuple[float, list[int], float]]] = [[] for _ in range(n)]
    ids = np.full((n * k, 1), model.ids.start, np.int64)

    def norm(score: float, length: int) -> float:
        return score / (max(1, length) ** length_penalty)

    for step in range(max_new_tokens):
        logits, past = model.step(ids, past, cross)
        scores = log_softmax(logits[:, -1].astype(np.float32)).astype(np.float64)
        vocab = scores.shape[-1]
        live = len(inputs)
        total = (beam_scores[:, :, None] + scores.reshape(live, k, vocab)).reshape(live, -1)
        top = np.argsort(-total, axis=1)[:, : 2 * k]
        next_beams, next_tokens, next_scores, keep_groups = [], [], [], []
        for g in range(live):
            i = inputs[g]
            chosen_b, chosen_t, chosen_s = [], [], []
            for rank, flat in enumerate(top[g]):
                beam, token = divmod(int(flat), vocab)
                score = float(total[g, flat])
                if token == eos:
                    if rank < k:  # only EOS candidates among the best k count
                        toks = [*seqs[i][beam], eos]
                        finished[i].append((norm(score, len(toks)), toks, score))
                    continue
                chosen_b.append(beam)
                chosen_t.append(token)
                chosen_s.append(score)
                if len(chosen_b) == k:
                    break
            seqs[i] = [[*seqs[i][b], t] for b, t in zip(chosen_b, chosen_t, strict=True)]
            last = step + 1 == max_new_tokens
            if last:  # out of steps: live beams compete as they are
                for seq, score in zip(seqs[i], chosen_s, strict=True):
                    finished[i].append((norm(score, len(seq)), seq, score))
            finished[i].sort(key=lambda h: -h[0])
            del finished[i][k:]
            best_live = chosen_s[0] if chosen_s else -np.inf
            done = last or (
                len(finished[i]) == k and norm(best_live, step + 1) <= finished[i][-1][0]
            )
            if not done:
                keep_groups.append(g)
            next_beams.append(chosen_b)
            next_tokens.append(chosen_t)
            next_scores.append(chosen_s)
        if not keep_groups:
            break
        # reorder the cache rows to follow the surviving beams, keeping live groups only
        src = np.array([g * k + b for g in keep_groups for b in next_beams[g]], np.int64)
        past = [p[src] for p in past]
        if len(keep_groups) < live:
            rows = np.array([g * k + b for g in keep_groups for b in range(k)], np.int64)
            cross = [c[rows] for c in cross]
        inputs = inputs[keep_groups]
        beam_scores = np.array([next_scores[g] for g in keep_groups], np.float64)
        ids = np.array([t for g in keep_groups for t in next_tokens[g]], np.int64)[:, None]
    out = []
    for i in range(n):
        best = max(finished[i], key=lambda h: h[0])
        out.append(Decoded(best[1], best[2]))
    return out
