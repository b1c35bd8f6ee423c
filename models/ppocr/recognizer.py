"""CTC line recognition around the PP-OCR recognizer ONNX graph.

The graph maps Nx3x48xW crops (normalized to [-1, 1]) to NxTxC softmax probabilities,
T = W / 8. Crops of one page are recognized in batches grouped by width (after resizing
to height 48), so a batch pads each crop only up to its neighbours' widths, not up to the
widest line on the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import onnx

from models.base import TextLine
from models.ppocr import spacing
from models.ppocr.smallcaps import (
    glyph_ascents,
    lowers_words,
    needs_measuring,
    recase_small_caps,
)
from models.words import line_spans

REC_HEIGHT = 48  # the shipped recognizer's input height
# Metadata a recognizer fine-tuned at another height carries (models/tooling/ppocr):
# its input height, and the width scale it was measured best at.
HEIGHT_METADATA = "ocrq_input_height"
WIDTH_SCALE_METADATA = "ocrq_width_scale"
WIDTH_STEP = 8  # the network's horizontal stride: one CTC step per 8 input columns


@dataclass(frozen=True)
class RecognizerConfig:
    batch_size: int = 16
    # Input height the recognizer was trained at: 48 for the shipped file; a recognizer
    # fine-tuned lower (models/tooling/ppocr) says its own in its metadata.
    height: int = REC_HEIGHT
    # A bucket is closed when the next (wider) crop would exceed this multiple of the
    # bucket's narrowest width: bounds the padding any crop in a batch carries.
    bucket_ratio: float = 1.5
    # A bucket is also closed when its crops would sum to more than this many input columns
    # (batch x width): large batches of long lines run slower per column than small ones
    # (activations fall out of cache), while short crops still batch up to batch_size.
    # 0 disables the cap. Default 1 = one crop per run: on one ORT thread that was fastest
    # for every crop length measured (side by side, same run: oldbooks 2.0x, tesseract_test
    # 1.25x, receipts 1.09x s/page; UW-III lines unchanged).
    max_batch_columns: int = 1
    # Grey columns added right of the widest crop of a batch (rounded up to the stride).
    # A crop run alone has no batch padding; without this margin the model put spaces
    # before "!" and quotes at line ends that it did not emit in a padded batch (measured).
    # 8 (one CTC step) rather than 16 (2026-11-30, side by side, one core): receipts 1.035x
    # (INT8) and 1.045x (FP32) faster, their short lines carrying one step less; CER INT8
    # receipts 2.99 -> 2.99 %, book pages 1.22 -> 1.23, tesseract_test 1.06 -> 0.99, lines
    # 0.59 -> 0.59; FP32 2.99 -> 2.98, the rest unchanged. At 0 receipts lost (3.16 %).
    right_pad: int = 8
    min_width: int = 32  # pad narrow crops (single characters) up to this width
    max_width: int = 3200  # very long lines are squeezed to this width
    # "latin": decode only Latin-script letters, digits, punctuation and currency signs
    # (the model also knows ~18,000 CJK and other symbols, which on Latin documents only
    # ever appear as confusions, e.g. "米" for "*"); "all": the full character list.
    charset: str = "latin"
    # Slice the classifier head to the `charset` classes at load (models/ppocr/head.py):
    # same argmax, far less work per CTC step. Off only to measure what it buys.
    narrow_head: bool = True
    # Words set in small capitals, measured in the crop (models/ppocr/smallcaps.py):
    # "auto" lowers them in running text, capitals elsewhere; "capitals" writes them in
    # capitals (not the mixed case read); "lower" in lower case after the first letter
    # (`recase_small_caps`; EngineOptions.small_caps picks one); "off": as read.
    small_caps: str = "auto"
    # Drop the thin spaces older print sets before ; : ! ? (models/ppocr/spacing.py),
    # measured against the line's word spaces; False writes every space read.
    thin_spaces: bool = True
    # Put back the space the recognizer lost over a blank of at least 0.6 line heights
    # (a column gutter read across: models/ppocr/spacing.py); False: as read.
    lost_spaces: bool = True
    # Word spans (`TextLine.words`) from the CTC steps, snapped to the crop's ink
    # (models/words.py): each word's box on the page for searchable PDFs, hOCR and ALTO.
    # False leaves them to `ocrq.results.words_of` (the line split by character count).
    word_boxes: bool = True
    # Crops are scaled to height 48 and to this fraction of the width that would keep
    # their aspect: the network reads glyphs a little narrower than true shape at least as
    # well, and its work is proportional to width. Measured side by side on all four eval
    # sets (scripts/eval_engine.py, one core), CER % at 1.0 -> 0.85: INT8 (VNNI CPU) lines
    # 0.59 -> 0.59, tesseract_test 1.22 -> 1.21, oldbooks 1.21 -> 1.12, receipts 3.19 ->
    # 3.26; FP32 0.59 -> 0.56, 1.29 -> 1.32, 1.19 -> 1.13, 3.15 -> 3.19; pages 1.08-1.18x
    # faster. At 0.8 INT8 lost more on receipts (3.33 %) and book pages (1.18 %).
    width_scale: float = 0.85


# Latin letters that on modern print are (almost) only ever misreadings of i, s, l.
_LATIN_CONFUSABLES = {"\u0131", "\u017f", "\u0138"}  # dotless i, long s, kra


def is_latin(token: str) -> bool:
    """True for tokens made of Basic Latin, Latin-1, Latin Extended-A, general
    punctuation (dashes, quotes, ellipsis, per mille) or currency signs."""
    for ch in token:
        o = ord(ch)
        if ch in _LATIN_CONFUSABLES:
            return False
        if not (
            0x20 <= o < 0x7F
            or 0xA0 <= o < 0x180
            or 0x2010 <= o <= 0x2027
            or 0x2030 <= o <= 0x203A
            or 0x20A0 <= o <= 0x20CF
            or ch == "\u2122"
        ):
            return False
    return True


def allowed_classes(charset: Sequence[str], mode: str) -> np.ndarray | None:
    """Class indices the decoder may emit (blank always), or None for all of them."""
    if mode == "all":
        return None
    if mode != "latin":
        raise ValueError(f"unknown charset mode {mode!r}")
    keep = [i for i, c in enumerate(charset) if i == 0 or is_latin(c)]
    # A charset already cut to these classes (a narrowed head) needs no mask.
    return None if len(keep) == len(charset) else np.array(keep, dtype=np.intp)


def config_from_metadata(meta: dict[str, str], config: RecognizerConfig) -> RecognizerConfig:
    """`config` at the height (and width scale) a graph's metadata names, if it names any."""
    changes: dict[str, float | int] = {}
    if HEIGHT_METADATA in meta:
        changes["height"] = int(meta[HEIGHT_METADATA])
    if WIDTH_SCALE_METADATA in meta:
        changes["width_scale"] = float(meta[WIDTH_SCALE_METADATA])
    return replace(config, **changes) if changes else config


def free_input_height(model: onnx.ModelProto, keep_shapes: bool = False) -> bool:
    """Leave the graph's input height free (the wheel's file pins 48), in place; the
    exporter's shape notes go too unless `keep_shapes` (ONNX Runtime infers them again;
    the opset converter needs them). False if the height was free already."""
    dim = model.graph.input[0].type.tensor_type.shape.dim[2]
    if not dim.HasField("dim_value"):
        return False
    dim.Clear()
    dim.dim_param = "height"
    if not keep_shapes:
        del model.graph.value_info[:]
    return True


def charset_from_metadata(character: str) -> list[str]:
    """Class index -> string: blank at 0, the metadata list, then space at the end."""
    chars = character.split("\n")
    if chars and chars[-1] == "":
        chars = chars[:-1]
    return ["", *chars, " "]


def best_path(
    probs: np.ndarray, lengths: Sequence[int] | None = None, allowed: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Best path of NxTxC probabilities: argmax per step, collapse repeats, drop blanks
    (index 0). Per row: (classes emitted, the steps they were emitted at, their
    probabilities). `allowed` restricts the argmax to those class indices (must include
    0); steps at or beyond `lengths[i]` are never emitted."""
    if allowed is not None:
        probs = probs[:, :, allowed]
    best = probs.argmax(axis=2)
    best_p = np.take_along_axis(probs, best[:, :, None], axis=2)[:, :, 0]
    if allowed is not None:
        best = allowed[best]
    keep = best != 0
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    if lengths is not None:
        for i, length in enumerate(lengths):
            keep[i, length:] = False
    return [(best[i][k], np.nonzero(k)[0], best_p[i][k]) for i, k in enumerate(keep)]


def ctc_greedy_decode(
    probs: np.ndarray,
    charset: Sequence[str],
    lengths: Sequence[int] | None = None,
    allowed: np.ndarray | None = None,
) -> list[TextLine]:
    """Best path decoding (`best_path`) to text, with `confidence`."""
    return [
        TextLine("".join(charset[j] for j in idx), confidence(p))
        for idx, _, p in best_path(probs, lengths, allowed)
    ]


def confidence(emitted: np.ndarray) -> float:
    """A line's confidence: the mean max-probability of its emitted characters (an empty
    line gets 0.0: 1.0 would overstate)."""
    return float(emitted.mean()) if emitted.size else 0.0


def resized_width(h: int, w: int, cfg: RecognizerConfig) -> int:
    """Width of a crop after scaling it to `cfg.height` (`width_scale` x the width that
    keeps its aspect, clamped)."""
    wr = int(np.ceil(cfg.height * w * cfg.width_scale / max(h, 1)))
    return int(min(max(wr, 1), cfg.max_width))


def width_buckets(
    widths: Sequence[int], batch_size: int, ratio: float, max_columns: int = 0
) -> list[list[int]]:
    """Group crop indices into batches of similar width: sort by width, cut a new batch
    when it is full, the next width exceeds `ratio` x the batch's first width, or (if
    `max_columns` > 0) the padded batch would exceed `max_columns` columns in total."""
    order = sorted(range(len(widths)), key=lambda i: widths[i])
    buckets: list[list[int]] = []
    for i in order:
        if (
            buckets
            and len(buckets[-1]) < batch_size
            and widths[i] <= ratio * max(widths[buckets[-1][0]], 1)
            and (max_columns <= 0 or (len(buckets[-1]) + 1) * widths[i] <= max_columns)
        ):
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


def build_batch(crops: Sequence[np.ndarray], widths: Sequence[int], cfg: RecognizerConfig):
    """Resize each crop to `cfg.height` x its width, normalize into one NCHW tensor padded (with 0,
    i.e. mid-grey, as in training) to the batch width rounded up to the stride."""
    width = max(max(widths) + cfg.right_pad, cfg.min_width)
    width = int(np.ceil(width / WIDTH_STEP) * WIDTH_STEP)
    batch = np.zeros((len(crops), 3, cfg.height, width), dtype=np.float32)
    for n, (crop, w) in enumerate(zip(crops, widths, strict=True)):
        resized = cv2.resize(crop, (w, cfg.height), interpolation=cv2.INTER_LINEAR)
        view = batch[n, :, :, :w]
        np.multiply(resized.transpose(2, 0, 1), 2.0 / 255.0, out=view, casting="unsafe")
        view -= 1.0
    return batch


class PPOCRRecognizer:
    """`Recognizer` over one ORT session: `recognize(crops) -> list[TextLine]` in input order."""

    def __init__(
        self,
        session,
        charset: list[str],
        config: RecognizerConfig | None = None,
    ):
        self.session = session
        self.charset = charset
        self.config = config or RecognizerConfig()
        self._input = session.get_inputs()[0].name
        self.allowed = allowed_classes(charset, self.config.charset)

    def recognize(self, crops: Sequence[np.ndarray]) -> list[TextLine]:
        cfg = self.config
        results: list[TextLine | None] = [None] * len(crops)
        widths = [resized_width(c.shape[0], c.shape[1], cfg) for c in crops]
        buckets = width_buckets(
            widths, max(1, cfg.batch_size), cfg.bucket_ratio, cfg.max_batch_columns
        )
        for bucket in buckets:
            batch = build_batch([crops[i] for i in bucket], [widths[i] for i in bucket], cfg)
            probs = self.session.run(None, {self._input: batch})[0]
            # Steps beyond a crop's own width see only padding: never decode them.
            lengths = [int(np.ceil(widths[i] / WIDTH_STEP)) for i in bucket]
            paths = best_path(probs, lengths, self.allowed)
            for row, (i, (idx, steps, p)) in enumerate(zip(bucket, paths, strict=True)):
                tokens = [self.charset[j] for j in idx]
                view = batch[row, :, :, : widths[i]]
                results[i] = self._measured(tokens, steps, p, view, crops[i].shape[1])
        return [r if r is not None else TextLine("", 0.0) for r in results]

    def _measured(
        self, tokens: list[str], steps: np.ndarray, probs: np.ndarray, crop: np.ndarray, width: int
    ) -> TextLine:
        """A row's line after the checks that measure its crop (thin spaces, small
        capitals), each run only where the text read could change, and its word spans
        (`crop` is the row's input, `width` the columns of the crop it was resized from).
        All measure the same gray image (the input's channel mean), computed at most once,
        and the spans and thin spaces the same ink columns."""
        cfg = self.config
        text = "".join(tokens)
        line_confidence = confidence(probs)
        gray = ink = None
        if cfg.thin_spaces and spacing.needs_measuring(text):
            gray = crop.mean(axis=0)
            ink = spacing.line_ink(gray)
            drop = spacing.thin_spaces(tokens, steps, ink, WIDTH_STEP)
            if drop:
                keep = [k for k in range(len(tokens)) if k not in drop]
                tokens, steps, probs = [tokens[k] for k in keep], steps[keep], probs[keep]
                text = "".join(tokens)
        least = spacing.LOST_SPACE * cfg.height * cfg.width_scale  # input columns
        far = spacing.far_apart(tokens, steps, least / WIDTH_STEP) if cfg.lost_spaces else []
        if far:
            gray = crop.mean(axis=0) if gray is None else gray
            ink = spacing.line_ink(gray) if ink is None else ink
            after = spacing.lost_spaces(far, steps, ink, WIDTH_STEP, least)
            tokens, steps, probs = _with_spaces(tokens, steps, probs, after)
            text = "".join(tokens)
        # each character placed at its token's CTC step
        lengths = [len(t) for t in tokens]
        columns = np.repeat(steps * WIDTH_STEP, lengths)
        if cfg.small_caps != "off":
            running = lowers_words(text, cfg.small_caps)
            if needs_measuring(text, cfg.small_caps, running):
                gray = crop.mean(axis=0) if gray is None else gray
                ascent = glyph_ascents(gray, columns)
                # one for one: each character keeps its place, so the spans follow
                text = recase_small_caps(text, ascent, cfg.small_caps, running)
        if not cfg.word_boxes or not text.strip():
            return TextLine(text, line_confidence)
        if ink is None:
            ink = spacing.line_ink(crop.mean(axis=0) if gray is None else gray)
        spans = line_spans(
            text,
            columns,
            np.repeat(probs, lengths),
            WIDTH_STEP,
            ink,
            scale=width / crop.shape[-1],
        )
        return TextLine(text, line_confidence, spans or None)


def _with_spaces(
    tokens: list[str], steps: np.ndarray, probs: np.ndarray, after: list[int]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A space token put after each index in `after`, at the step halfway to the next
    token, as sure as the less sure of its two neighbours."""
    if not after:
        return tokens, steps, probs
    at = [k + 1 for k in after]
    mid = [(steps[k] + steps[k + 1]) // 2 for k in after]
    sure = [min(probs[k], probs[k + 1]) for k in after]
    out = list(tokens)
    for k in reversed(at):
        out.insert(k, " ")
    return out, np.insert(steps, at, mid), np.insert(probs, at, sure)
