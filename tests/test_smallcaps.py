"""Small capitals: measured glyph heights (rendered fixtures) and the option end to end
through the real recognizer (PP-OCRv6 from the rapidocr wheel, real onnxruntime)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.ppocr.engine import load
from models.ppocr.smallcaps import (
    _baseline,
    glyph_ascents,
    in_running_text,
    ink_mask,
    lowers_words,
    needs_measuring,
    recase_small_caps,
    whole_glyphs,
)
from models.registry import load_engine
from ocrq.config import EngineOptions
from ocrq.errors import ModelError
from ocrq.storage import model_key
from tests.fixtures_text import SMALL_CAPS_RATIO, render_runs


def test_glyph_ascents_separate_capitals_small_capitals_and_x_height():
    image, centres = render_runs([("The ", False), ("P", False), ("alace", True)])
    ascent = glyph_ascents(image.mean(axis=2), np.array(centres))
    text = "The PALACE"
    cap = ascent[text.index("T")]
    small = [ascent[n] for n in range(5, 10)]  # A L A C E
    assert ascent[text.index("h")] == pytest.approx(cap, abs=2)  # an ascender: cap height
    assert ascent[text.index("e")] < 0.75 * cap  # x-height
    assert all(abs(a / cap - SMALL_CAPS_RATIO) < 0.08 for a in small), (cap, small)
    assert np.isnan(ascent[3])  # the space: no glyph within reach


def test_words_in_small_capitals_are_lowered_and_true_capitals_kept():
    image, centres = render_runs(
        [("IV. The ", False), ("P", False), ("alace of the ", True), ("K", False), ("ing", True)]
    )
    read = "IV. The PALACE OF THE KING"
    ascent = glyph_ascents(image.mean(axis=2), np.array(centres))
    assert recase_small_caps(read, ascent, "lower") == "IV. The Palace of the King"
    # the mixed case the recognizer reads in small capitals is made whole for `keep`
    mixed = "IV. The PAlACE OF THE KING"
    assert recase_small_caps(mixed, ascent, "capitals") == read
    # one character for one: a letter whose capital is two ("ß" -> "SS") stays as read
    assert recase_small_caps("IV. The PAßACE OF THE KING", ascent, "capitals") == (
        "IV. The PAßACE OF THE KING"
    )


def test_a_line_in_full_capitals_is_left_alone():
    image, centres = render_runs([("CHAPTER III. THE KING", False)])
    read = "CHAPTER III. THE KING"
    ascent = glyph_ascents(image.mean(axis=2), np.array(centres))
    assert recase_small_caps(read, ascent, "lower") == read
    mixed = "CHAPTER III. THE KInG"  # a misread in full capitals is no small-capital word
    assert recase_small_caps(mixed, ascent, "capitals") == mixed


def test_only_lines_with_a_word_of_two_capitals_are_measured():
    assert needs_measuring("Mr. EDWIN Landseer", "lower")
    assert needs_measuring("IV.", "lower")
    assert not needs_measuring("Mr. Edwin Landseer, A. B. Smith", "lower")
    # written in capitals, a word read all in capitals is already what it would become
    assert not needs_measuring("TOTAL RM 12.50 IV.", "capitals")
    assert needs_measuring("Mr. KInNEY", "capitals")
    assert not needs_measuring("Mr. Kinney, A. B. Smith", "capitals")


@pytest.mark.parametrize("mode", ["capitals", "auto"])
@pytest.mark.parametrize(
    "text",
    ["TOTAL RM 12.50", "THE KING SAID: STRASSE", "Mr. Kinney", "A. B. SMITH & CO.", "STRAßE"]
    + ["B. N. SEMENOV, A. I. AMIROV", "THE OLD SHIP so us"],
)
def test_a_line_not_measured_is_never_changed(text, mode):
    """Skipping the measurement is exact: whatever the glyphs' heights, `recase_small_caps`
    would have returned the line as read."""
    assert not needs_measuring(text, mode)
    for ascent in (np.full(len(text), 20.0), np.linspace(5.0, 30.0, len(text))):
        ascent[0] = 30.0  # a full-height first capital sets the line's capital height
        assert recase_small_caps(text, ascent, mode) == text


def _ascents(runs):
    image, centres = render_runs(runs)
    return glyph_ascents(image.mean(axis=2), np.array(centres))


def test_auto_lowers_small_capitals_in_running_text_only():
    byline = _ascents([("Drawn by Mr. ", False), ("E", False), ("dwin", True)])
    assert recase_small_caps("Drawn by Mr. EDwIN", byline, "auto") == "Drawn by Mr. Edwin"
    # a heading (no word read in lower case): capitals, as `keep` writes it
    heading = _ascents(
        [("IV. ", False), ("T", False), ("he ", True), ("P", False), ("alace", True)]
    )
    assert recase_small_caps("IV. THE PAlACE", heading, "auto") == "IV. THE PALACE"
    assert recase_small_caps("IV. THE PAlACE", heading, "lower") == "IV. The Palace"


def test_auto_writes_a_word_with_no_full_capital_in_capitals():
    # a lead-in set all in small capitals: lowered it would lose its sentence capital
    ascent = _ascents([("he moped.", True), (" She sighed", False)])
    assert recase_small_caps("HE MOPED. She sighed", ascent, "auto") == "HE MOPED. She sighed"
    assert recase_small_caps("HE MOPED. She sighed", ascent, "lower") == "he moped. She sighed"


def test_running_text_needs_a_lower_case_word_small_capitals_cannot_pass_for():
    assert in_running_text("Drawn by Mr. EDWIN")
    assert not in_running_text("B. N. SEMENOV, A. I. AMIROV, V. M. KULIK")
    assert not in_running_text("THE OLD SHIP so us")  # s, o, u: small capitals look so


def test_lowers_words_by_mode_and_line():
    assert lowers_words("IV. THE PAlACE", "lower")
    assert lowers_words("Drawn by Mr. EDWIN", "auto")
    assert not lowers_words("IV. THE PAlACE", "auto")  # a heading
    assert not lowers_words("Drawn by Mr. EDWIN", "capitals")


@pytest.mark.parametrize("mode", ["auto", "lower", "capitals"])
def test_a_running_flag_passed_in_decides_as_the_line_would(mode):
    """The recognizer works out `lowers_words` once and hands it to both calls; passed
    in, it gives what each call works out alone, and it is what they act on."""
    byline = _ascents([("Drawn by Mr. ", False), ("E", False), ("dwin", True)])
    text = "Drawn by Mr. EDwIN"
    running = lowers_words(text, mode)
    assert needs_measuring(text, mode, running) == needs_measuring(text, mode)
    assert recase_small_caps(text, byline, mode, running) == recase_small_caps(text, byline, mode)
    # the flag is used, not recomputed: claimed the other way, the word goes the other way
    flipped = recase_small_caps(text, byline, mode, not running)
    assert flipped != recase_small_caps(text, byline, mode)


def test_auto_measures_only_lines_it_could_change():
    assert needs_measuring("copied by Mr. EDWIN LANDSEER", "auto")  # running text
    assert not needs_measuring("TOTAL RM 12.50 IV.", "auto")  # a receipt line
    assert needs_measuring("IV. THE PAlACE", "auto")  # mixed case made whole


def test_a_broken_capital_is_measured_whole_not_by_its_piece():
    """A scan broke the foot off the last N of "CNN" (UW-III line uw3_1583_010065); the
    CTC column fell nearer the foot's centre than the letter's, the foot's x-height ascent
    was taken for the N's, and the word was lowered to "Cnn" as small capitals."""
    text = "than the CNN rule"
    image, centres = render_runs([(text, False)])
    n = text.rindex("N")
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink_mask(image.mean(axis=2)))
    left, top, _, height, _ = min(stats[1:], key=lambda s: abs(s[0] + s[2] / 2 - centres[n]))
    bottom = top + height
    image[bottom - 9 : bottom - 7, left : left + 8] = 255  # cut the left stem above its foot
    columns = np.array(centres)
    columns[n] = left + 4  # the CTC step over the foot
    gray = image.mean(axis=2)
    _, _, broken, _ = cv2.connectedComponentsWithStats(ink_mask(gray))
    assert any(s[0] == left and s[1] >= bottom - 7 for s in broken[1:])  # the foot is apart
    ascent = glyph_ascents(gray, columns)
    assert ascent[n] == pytest.approx(ascent[text.index("C")], abs=1.5)
    assert recase_small_caps(text, ascent, "auto") == text


def _stats(boxes):
    """connectedComponentsWithStats rows (left, top, width, height, area) for boxes."""
    return np.array([(x, y, w, h, w * h) for x, y, w, h in boxes], dtype=np.int32)


def test_only_pieces_within_a_taller_glyphs_columns_are_dropped():
    body, foot, accent = (10, 5, 24, 33), (10, 28, 7, 12), (14, 0, 8, 6)
    beside = (36, 17, 12, 22)  # the next glyph, shorter, overlapping the body's columns
    kept = whole_glyphs(_stats([body, foot, accent, beside]))
    assert [tuple(row[:4]) for row in kept] == [body, beside]
    # glyphs of one height never drop each other, even with the same columns
    assert len(whole_glyphs(_stats([(0, 0, 10, 20), (0, 22, 10, 20)]))) == 2


def test_pieces_are_found_in_blocks_as_in_one_comparison():
    rng = np.random.default_rng(7)
    n = 3000  # a hostile crop's worth of blobs: more than one block
    boxes = np.column_stack(
        [rng.integers(0, 3000, n), np.zeros(n), rng.integers(1, 40, n), rng.integers(6, 48, n)]
    ).astype(int)
    stats = _stats([tuple(b) for b in boxes])
    left, right, height = boxes[:, 0], boxes[:, 0] + boxes[:, 2], boxes[:, 3]
    piece = ((left[:, None] >= left) & (right[:, None] <= right) & (height[:, None] < height)).any(
        axis=1
    )
    assert 0 < piece.sum() < n
    assert np.array_equal(whole_glyphs(stats), stats[~piece])


def test_ink_is_the_smaller_class_light_text_on_dark_too():
    image, _ = render_runs([("Ink", False)])
    gray = image.mean(axis=2)
    assert ink_mask(gray).mean() < 0.5
    assert np.array_equal(ink_mask(255 - gray), ink_mask(gray))
    assert not ink_mask(np.full((48, 40), 128.0)).any()


def test_baseline_follows_a_tilt_and_ignores_descenders_and_the_next_line():
    centre = np.arange(10, 400, 20, dtype=float)
    bottom = 30 + 0.02 * centre  # a line tilted by 8 px over its length
    bottom[[3, 9]] += 9  # descenders (p, g)
    bottom[5] = 48  # a blob cut by the crop's lower edge: the line below
    fitted = _baseline(centre, bottom, height=48)
    clean = [n for n in range(len(centre)) if n not in (3, 5, 9)]
    assert np.allclose(fitted[clean], 30 + 0.02 * centre[clean], atol=0.5)


def test_recognizer_writes_small_capitals_in_capitals_or_lowered_when_asked(tmp_path):
    image, _ = render_runs(
        [("Drawn by Mr. ", False), ("E", False), ("dwin ", True), ("L", False), ("andseer", True)]
    )
    options = EngineOptions(precision="fp32")
    kept = load(options.with_(small_caps="keep"), tmp_path).recognizer.recognize([image])[0].text
    lowered = load(options.with_(small_caps="lower"), tmp_path).recognizer.recognize([image])[0]
    auto = load(options, tmp_path).recognizer.recognize([image])[0]  # the default
    assert "Mr. EDWIN LANDSEER" in kept, kept
    assert lowered.text.lower() == kept.lower()  # only the case changed
    assert "Edwin Landseer" in lowered.text, lowered.text
    assert auto.text == lowered.text  # a name in running text


def test_small_caps_option_is_checked_and_keyed(tmp_path):
    with pytest.raises(ModelError, match="small caps must be one of auto, keep, lower"):
        load_engine(EngineOptions(small_caps="upper"), tmp_path)
    with pytest.raises(ModelError, match="needs the ppocr engine"):
        load_engine(EngineOptions(engine="trocr-onnx", small_caps="lower"), tmp_path)
    assert model_key("ppocr", None, "auto") == model_key("ppocr", None, "auto", "keep")
    assert model_key("ppocr", None, "auto", "lower") == "ppocr:default:auto:small-caps-lower"


def test_a_worker_refuses_a_job_asking_for_the_other_small_caps_setting(tmp_path, sqlite_url):
    from ocrq.config import InputLimits
    from ocrq.storage import FAILED, NewJob, Store
    from worker.pipeline import process_job

    store = Store(sqlite_url)
    wanted = EngineOptions(precision="fp32", small_caps="lower")
    batch = store.create_batch([], [], wanted.as_dict())
    key = model_key("ppocr", None, "fp32", "lower")
    (job_id,) = store.add_jobs(batch, [NewJob("/a.png", "a" * 64, 1)], wanted.as_dict(), key)
    runs = EngineOptions(precision="fp32")
    outcome = process_job(store, load(runs, tmp_path), runs, InputLimits(), job_id, "w")
    job = store.get_job(job_id)
    assert job["status"] == FAILED and outcome.error == job["error"]
    assert "small caps lower" in job["error"] and "small caps auto" in job["error"]
