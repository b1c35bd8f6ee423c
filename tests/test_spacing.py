"""Thin spaces before ; : ! ? : gaps measured in rendered lines, and the setting end to
end through the real recognizer (PP-OCRv6 from the rapidocr wheel, real onnxruntime)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.ppocr.engine import PPOCRConfig, load
from models.ppocr.recognizer import WIDTH_STEP, _with_spaces
from models.ppocr.spacing import (
    LOST_SPACE,
    blank_run,
    drop_thin_spaces,
    far_apart,
    line_ink,
    lost_spaces,
    needs_measuring,
)
from ocrq.config import EngineOptions
from tests.fixtures_text import render_spaced

# Old book print: word spaces of 16 px, thin spaces of 11 and 9 px before ";" and "!"
# ("!" has wide side bearings): from ink to ink 12 and 15 px against 18, 0.67 and 0.83 of
# the word spaces (the book pages: 0.50-0.88). Much narrower ones the recognizer does not
# read as spaces at all in this face and size.
BOOK = [("identity", 11), (";", 16), ("and", 16), ("the", 16), ("carts", 9), ("!", 16)]
BOOK += [("legs", 16), ("at", 16), ("rest", 16), ("done", 0)]


def _dropped(pieces):
    image, text, centres = render_spaced(pieces)
    tokens = list(text)
    steps = np.array([int(c) // WIDTH_STEP for c in centres])
    kept, kept_steps = drop_thin_spaces(tokens, steps, image.mean(axis=2), WIDTH_STEP)
    assert len(kept) == len(kept_steps)
    assert all(s in steps for s in kept_steps)
    return "".join(kept)


def test_blank_run_is_the_longest_inkless_stretch():
    ink = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0], dtype=bool)
    assert blank_run(ink, 0, 9) == 3
    assert blank_run(ink, 0, 3) == 2
    assert blank_run(ink, 3, 4) == 0
    assert blank_run(ink, 8, 20) == 1  # past the end: the crop's own columns only


def test_thin_spaces_before_marks_are_dropped_word_spaces_kept():
    assert _dropped(BOOK) == "identity; and the carts! legs at rest done"


def test_a_space_as_wide_as_the_words_stays_before_a_mark():
    # a receipt: "Total : 12.00", the gap before ":" a whole cell like the word spaces
    pieces = [("Cash", 14), ("Total", 14), (":", 14), ("12.00", 0)]
    assert _dropped(pieces) == "Cash Total : 12.00"


def test_a_line_with_no_other_space_keeps_its_space():
    assert _dropped([("Total", 5), (":", 0)]) == "Total :"


def test_only_lines_with_a_space_before_a_mark_are_measured():
    assert needs_measuring("identity ; and")
    assert needs_measuring("why ?")
    assert not needs_measuring("identity; and: why? now!")
    assert not needs_measuring("a - b , c")


def test_recognizer_drops_the_thin_space_it_reads_unless_told_not_to(tmp_path):
    image, text, _ = render_spaced(BOOK)
    options = EngineOptions(precision="fp32")
    config = PPOCRConfig()
    as_read = replace(config, recognizer=replace(config.recognizer, thin_spaces=False))
    kept = load(options, tmp_path, config=as_read).recognizer.recognize([image])[0].text
    dropped = load(options, tmp_path, config=config).recognizer.recognize([image])[0].text
    # the recognizer reads the thin spaces as spaces: the case this exists for
    assert "identity ; and" in kept and "carts !" in kept, kept
    assert dropped == kept.replace(" ;", ";").replace(" !", "!"), (kept, dropped)
    assert "legs at rest" in dropped


def _read_without_spaces(pieces):
    """A rendered line's characters and steps as a recognizer that wrote no space at
    all would give them, and the line's ink."""
    image, text, centres = render_spaced(pieces)
    kept = [(ch, int(c) // WIDTH_STEP) for ch, c in zip(text, centres, strict=True) if ch != " "]
    tokens = [ch for ch, _ in kept]
    return tokens, np.array([s for _, s in kept]), line_ink(image.mean(axis=2))


def test_a_space_lost_over_a_gutter_is_put_back_and_word_spaces_are_not_invented():
    # "be" at a column's end, a 1-em gutter (26 px type: 30 px), "comp." at the next
    # column's start; before them two words 12 px apart (a wide justified space)
    tokens, steps, ink = _read_without_spaces([("json", 12), ("be", 30), ("comp.", 0)])
    least = LOST_SPACE * 48  # input columns: a 48-px line at its own aspect
    far = far_apart(tokens, steps, least / WIDTH_STEP)
    assert far
    after = lost_spaces(far, steps, ink, WIDTH_STEP, least)
    assert after == [5]  # after "jsonbe": the gutter, not the word space
    probs = np.linspace(0.5, 1.0, len(tokens))
    spaced, spaced_steps, spaced_probs = _with_spaces(tokens, steps, probs, after)
    assert "".join(spaced) == "jsonbe comp."
    assert steps[5] <= spaced_steps[6] <= steps[6] and spaced_probs[6] == probs[5]
    wider = far_apart(tokens, steps, 2 * least / WIDTH_STEP)
    assert lost_spaces(wider, steps, ink, WIDTH_STEP, 2 * least) == []  # a 96-px line
