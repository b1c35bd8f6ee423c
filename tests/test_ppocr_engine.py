"""The real engine (PP-OCRv6 ONNX from the rapidocr wheel, real onnxruntime) on rendered
text. Bounds: clean DejaVu text at 40-48 px is the easy case for this recognizer; on the
real UW-III line scans the same engine measures 0.60 % CER (scripts/eval_engine.py), so
2 % per line / 3 % per page leaves room for one or two confusions (e.g. 0/O, l/1) without
letting a broken pipeline (wrong order, lost lines, bad crops: >> 10 %) pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.page import page_regions, read_page
from models.ppocr.engine import load, load_detector, load_recognizer
from models.ppocr.recognizer import RecognizerConfig
from ocrq.config import EngineOptions
from ocrq.errors import ModelError
from ocrq.results import page_text
from ocrq.scoring import cer
from tests.fixtures_text import SAMPLE_LINES, render_line, render_page


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return load(
        EngineOptions(batch_size=4, precision="fp32"), tmp_path_factory.mktemp("models"), threads=1
    )


def test_provenance_names_files_hashes_precision(engine):
    prov = engine.provenance
    assert engine.name == "ppocr" and prov["precision"] == "fp32"
    assert prov["models"]["det"]["file"] == "PP-OCRv6_det_small.onnx"
    assert prov["models"]["rec"]["file"] == "PP-OCRv6_rec_small.onnx"
    assert all(len(m["sha256"]) == 64 for m in prov["models"].values())


def test_recognizer_alone_reads_lines_in_input_order(engine):
    crops = [render_line(t, height=h) for t, h in zip(SAMPLE_LINES, (32, 48, 40, 64), strict=True)]
    lines = engine.recognizer.recognize(crops)
    assert len(lines) == len(crops)
    for line, ref in zip(lines, SAMPLE_LINES, strict=True):
        assert cer(line.text, ref) <= 0.02, (line.text, ref)
        assert 0.5 < line.confidence <= 1.0


def test_the_fast_variant_reads_at_32_rows_with_wider_crops(tmp_path):
    fast = load(EngineOptions(batch_size=4, precision="fp32", model="fast"), tmp_path, threads=1)
    config = fast.provenance["recognizer"]
    assert (config["height"], config["width_scale"]) == (32, 1.2)
    assert fast.provenance["models"]["rec"]["file"] == "PP-OCRv6_rec_small.onnx"
    crops = [render_line(t, height=h) for t, h in zip(SAMPLE_LINES, (32, 48, 40, 64), strict=True)]
    for line, ref in zip(fast.recognizer.recognize(crops), SAMPLE_LINES, strict=True):
        assert cer(line.text, ref) <= 0.03, (line.text, ref)
    with pytest.raises(ModelError, match="'fast'"):
        load(EngineOptions(model="faster"), tmp_path)


def test_detector_alone_finds_one_box_per_line():
    detector = load_detector(Path("."), threads=1)
    regions = detector.detect(render_page(SAMPLE_LINES))
    assert len(regions) == len(SAMPLE_LINES)
    ys = sorted(r.bbox[1] for r in regions)
    assert all(b - a > 30 for a, b in zip(ys, ys[1:], strict=False))


def test_read_page_in_reading_order(engine):
    pairs = read_page(engine, render_page(SAMPLE_LINES, height=36))
    text = page_text(page_regions(0, pairs))
    assert cer(text, "\n".join(SAMPLE_LINES)) <= 0.03, text
    assert [r.bbox[1] for r, _ in pairs] == sorted(r.bbox[1] for r, _ in pairs)
    assert all(0 < t.confidence <= 1 for _, t in pairs)


def test_a_gray_page_reads_exactly_as_its_rgb_copy(engine):
    """A gray or bilevel scan stays one channel from decoding to the crops; the detector
    broadcasts it to the network's three, so boxes and text are those of its RGB copy."""
    from models.base import PageBuffer

    rgb = render_page(SAMPLE_LINES, height=36)
    gray = np.ascontiguousarray(rgb[:, :, 0])
    assert (np.repeat(gray[:, :, None], 3, axis=2) == rgb).all()  # the fixture is gray
    want = read_page(engine, rgb)
    assert read_page(engine, gray) == want
    assert read_page(engine, PageBuffer(gray.copy())) == want  # as a worker hands it over
    line = render_line("Batch OCR with pinned workers", height=40)  # padded as a strip
    assert read_page(engine, np.ascontiguousarray(line[:, :, 0])) == read_page(engine, line)


def test_read_page_on_a_single_line_image(engine):
    text = page_text(
        page_regions(0, read_page(engine, render_line("Batch OCR with pinned workers", height=40)))
    )
    assert cer(text, "Batch OCR with pinned workers") <= 0.04, text


def test_blank_page_reads_nothing(engine):
    assert read_page(engine, np.full((200, 300, 3), 255, np.uint8)) == []


def test_load_recognizer_has_full_charset_when_asked():
    rec = load_recognizer(Path("."), threads=1, config=RecognizerConfig(charset="all"))
    assert len(rec.charset) == 18710 and rec.charset[0] == "" and rec.charset[-1] == " "


def test_tiny_image_read_whole_when_detector_finds_nothing(engine):
    from models.page import SMALL_IMAGE_SIDE

    image = render_line("7", height=30, margin=2)
    assert max(image.shape[:2]) <= SMALL_IMAGE_SIDE
    assert engine.detector.detect(image) == []  # the fallback is what reads it
    pairs = read_page(engine, image)
    assert [t.text for _, t in pairs] == ["7"]


def test_unknown_precision_is_a_model_error(tmp_path):
    from ocrq.errors import ModelError

    with pytest.raises(ModelError, match="precision"):
        load(EngineOptions(precision="fp8"), tmp_path, threads=1)


def test_page_text_joins_a_line_with_spaces_and_lines_with_newlines():
    from models.base import Region, TextLine

    def pair(x0, y0, x1, y1, text):
        return Region(((x0, y0), (x1, y0), (x1, y1), (x0, y1)), 0.9), TextLine(text, 0.9)

    pairs = [pair(0, 0, 50, 20, "exam-"), pair(60, 2, 120, 22, "next"), pair(0, 40, 50, 60, "ple")]
    assert page_text(page_regions(0, pairs)) == "exam- next\nple"


@pytest.mark.parametrize("engine_name", ["ppocr", "trocr-onnx", "trocr-mlx"])
def test_unknown_precision_is_refused_naming_the_choices(tmp_path, engine_name):
    """Every engine, not only the default: OCRQ_PRECISION bypasses the CLI's choices."""
    from models.registry import load_engine
    from ocrq.errors import ModelError

    options = EngineOptions(engine=engine_name, precision="bf16")
    with pytest.raises(ModelError, match="one of auto, fp32, int8, not 'bf16'"):
        load_engine(options, tmp_path)
    assert not any(tmp_path.iterdir())  # refused before building or loading anything
