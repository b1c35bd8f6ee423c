"""CTC decoding on hand-built probabilities and width-bucket batching (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from models.ppocr.recognizer import (
    REC_HEIGHT,
    RecognizerConfig,
    allowed_classes,
    build_batch,
    charset_from_metadata,
    ctc_greedy_decode,
    is_latin,
    resized_width,
    width_buckets,
)

CHARSET = charset_from_metadata("a\nb\nc\n")  # ["", "a", "b", "c", " "]


def one_hot(seq, p=0.9):
    classes = len(CHARSET)
    probs = np.full((len(seq), classes), (1 - p) / (classes - 1), dtype=np.float32)
    probs[np.arange(len(seq)), seq] = p
    return probs


def test_charset_blank_first_space_last():
    assert CHARSET == ["", "a", "b", "c", " "]


def test_ctc_collapses_repeats_and_drops_blanks():
    # a a _ a b b _ _ space c  ->  "aab c"
    probs = one_hot([1, 1, 0, 1, 2, 2, 0, 0, 4, 3])[None]
    (line,) = ctc_greedy_decode(probs, CHARSET)
    assert line.text == "aab c"
    assert line.confidence == pytest.approx(0.9, abs=1e-5)


def test_ctc_confidence_is_mean_of_emitted_steps_and_lengths_cut_padding():
    probs = np.stack([one_hot([1, 0, 2, 3]), one_hot([3, 3, 0, 1])])
    probs[0, 2] = one_hot([2], p=0.5)[0]
    a, b = ctc_greedy_decode(probs, CHARSET, lengths=[4, 2])
    assert a.text == "abc" and a.confidence == pytest.approx((0.9 + 0.5 + 0.9) / 3, abs=1e-5)
    assert b.text == "c"  # steps 2.. are padding for this crop
    (empty,) = ctc_greedy_decode(one_hot([0, 0, 0])[None], CHARSET)
    assert empty.text == "" and empty.confidence == 0.0


def test_width_buckets_sorted_bounded_and_complete():
    widths = [100, 900, 120, 140, 1000, 95, 400, 130]
    buckets = width_buckets(widths, batch_size=3, ratio=1.5)
    assert sorted(i for b in buckets for i in b) == list(range(len(widths)))
    for b in buckets:
        assert len(b) <= 3
        ws = [widths[i] for i in b]
        assert max(ws) <= 1.5 * min(ws)
    assert [[widths[i] for i in b] for b in buckets] == [
        [95, 100, 120],
        [130, 140],
        [400],
        [900, 1000],
    ]


def test_width_buckets_column_cap_splits_long_lines_only():
    widths = [100, 110, 120, 130, 900, 950, 1000]
    buckets = width_buckets(widths, batch_size=16, ratio=1.5, max_columns=2000)
    assert sorted(i for b in buckets for i in b) == list(range(len(widths)))
    for b in buckets:
        assert len(b) * max(widths[i] for i in b) <= 2000 or len(b) == 1
    # short crops still share one batch; the long ones go at most two at a time
    assert [[widths[i] for i in b] for b in buckets] == [
        [100, 110, 120, 130],
        [900, 950],
        [1000],
    ]
    # a cap below any width means one crop per batch
    assert all(len(b) == 1 for b in width_buckets(widths, 16, 1.5, max_columns=1))


def test_build_batch_shape_padding_and_normalization():
    crops = [np.zeros((24, 50, 3), np.uint8), np.full((48, 200, 3), 255, np.uint8)]
    cfg = RecognizerConfig(right_pad=0, width_scale=1.0)
    widths = [resized_width(c.shape[0], c.shape[1], cfg) for c in crops]
    assert widths == [100, 200]
    batch = build_batch(crops, widths, cfg)
    assert batch.shape == (2, 3, REC_HEIGHT, 200)
    assert np.all(batch[0, :, :, :100] == -1.0) and np.all(batch[0, :, :, 100:] == 0.0)
    assert np.all(batch[1] == 1.0)


def test_resized_width_narrows_by_width_scale_then_clamps():
    assert resized_width(24, 100, RecognizerConfig(width_scale=1.0)) == 200
    assert resized_width(24, 100, RecognizerConfig(width_scale=0.85)) == 170
    assert resized_width(24, 100, RecognizerConfig()) == 170  # the default narrows
    assert resized_width(10, 5000, RecognizerConfig(width_scale=0.85, max_width=3200)) == 3200
    assert resized_width(480, 1, RecognizerConfig()) == 1


def test_build_batch_right_pad_adds_grey_columns_rounded_to_stride():
    crop = np.full((48, 100, 3), 255, np.uint8)
    batch = build_batch([crop], [100], RecognizerConfig(right_pad=13))
    assert batch.shape == (1, 3, REC_HEIGHT, 120)  # 100 + 13 rounded up to a multiple of 8
    assert np.all(batch[0, :, :, :100] == 1.0) and np.all(batch[0, :, :, 100:] == 0.0)


def test_latin_restriction_takes_best_allowed_class():
    charset = ["", "a", "米", "*", " "]
    allowed = allowed_classes(charset, "latin")
    assert allowed.tolist() == [0, 1, 3, 4]
    probs = np.array([[[0.05, 0.05, 0.6, 0.3, 0.0], [0.1, 0.8, 0.05, 0.05, 0.0]]], np.float32)
    (restricted,) = ctc_greedy_decode(probs, charset, allowed=allowed)
    assert restricted.text == "*a"
    assert restricted.confidence == pytest.approx((0.3 + 0.8) / 2)
    (full,) = ctc_greedy_decode(probs, charset)
    assert full.text == "米a"
    assert allowed_classes(charset, "all") is None


def test_is_latin_keeps_european_text_and_typographic_punctuation():
    for token in ["é", "ß", "Œ", "„", "«", "—", "€", "…", "ł"]:
        assert is_latin(token), token
    for token in ["米", "あ", "Ж", "🛃"]:
        assert not is_latin(token), token
