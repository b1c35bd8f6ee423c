"""Fine-tuning tooling for the PP-OCR recognizer (models/tooling/ppocr): the shipped
graph run by torch matches onnxruntime, trained weights go back into the same graph, a
short real training run writes a file the engine runs at its own height (FP32 and INT8),
and the rendered lines are what the recognizer is trained on."""

from __future__ import annotations

import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from models.ppocr.engine import load, load_recognizer  # noqa: E402
from models.ppocr.recognizer import (  # noqa: E402
    HEIGHT_METADATA,
    WIDTH_SCALE_METADATA,
    RecognizerConfig,
    build_batch,
)
from models.ppocr.resources import REC_FILE, model_path  # noqa: E402
from models.tooling.ppocr import lines  # noqa: E402
from models.tooling.ppocr.finetune import (  # noqa: E402
    FinetuneOptions,
    distill_batches,
    distill_loss,
    narrowed_model,
    train,
)
from models.tooling.ppocr.onnx_module import OnnxModule, free_height  # noqa: E402
from ocrq.config import EngineOptions  # noqa: E402
from ocrq.errors import ModelError  # noqa: E402
from tests.fixtures_text import font_dir, render_line  # noqa: E402


@pytest.fixture(scope="module")
def shipped() -> onnx.ModelProto:
    return onnx.load(str(model_path(REC_FILE)))


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("height", [48, 32])
def test_torch_runs_the_shipped_graph_as_onnxruntime_does(shipped, height):
    crop = render_line("Parity 0123 of the graph, run twice.", height=40)
    cfg = RecognizerConfig(height=height)
    x = build_batch([crop], [int(crop.shape[1] * height / crop.shape[0])], cfg)
    with torch.no_grad():
        ours = OnnxModule(shipped)(torch.from_numpy(x)).numpy()
    theirs = _ort(free_height(shipped), x)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-4


def test_constants_stay_fixed_and_weights_train(shipped):
    module = OnnxModule(shipped)
    frozen = [p for p in module.parameters() if not p.requires_grad]
    assert frozen and all(p.numel() == 1 or p.dim() == 1 for p in frozen)
    assert sum(p.numel() for p in module.parameters() if p.requires_grad) > 5_000_000


def test_written_back_weights_are_what_onnxruntime_runs(shipped):
    narrowed, charset = narrowed_model(shipped)
    module = OnnxModule(narrowed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.mul_(1.01)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 160)).astype(np.float32)
    with torch.no_grad():
        ours = module(torch.from_numpy(x)).numpy()
    written = module.write_back(narrowed)
    assert np.abs(_ort(written, x) - ours).max() < 1e-4
    assert np.abs(_ort(narrowed, x) - ours).max() > 1e-3  # the change did reach the file
    # the narrowed head decodes the Latin classes only, blank first and space last
    assert charset[0] == "" and charset[-1] == " " and 300 < len(charset) < 400
    assert ours.shape[-1] == len(charset)


def test_rendered_lines_are_rgb_crops_of_their_text():
    fonts = lines.find_fonts([str(font_dir())])
    assert fonts
    stream = lines.stream(fonts, ["the quick brown fox"], ["jumps", "over"], seed=3)
    for _ in range(20):
        crop, text = next(stream)
        assert crop.dtype == np.uint8 and crop.ndim == 3 and crop.shape[2] == 3
        assert crop.shape[1] > crop.shape[0] >= 8 and text.strip() == text and text
    form = [lines.form_line(random.Random(k), ["apple"]) for k in range(40)]
    assert sum(any(c.isdigit() for c in f) for f in form) > 25


def test_prose_is_rewrapped_into_page_lines(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(
        ("It was a bright cold day in April, and the clocks were striking. " * 30) + "\n"
    )
    out = lines.prose_lines([book], min_len=20, max_len=40)
    assert len(out) > 20 and all(len(s) <= 40 for s in out)
    assert " ".join(out).split() == book.read_text().split()


def test_a_short_training_run_writes_a_recognizer_the_engine_runs_at_its_height(shipped, tmp_path):
    fonts = lines.find_fonts([str(font_dir())])
    stream = lines.stream(fonts, ["Fine tuning in a test, briefly."], ["total"], seed=1)
    held = [next(stream) for _ in range(4)]
    opts = FinetuneOptions(height=32, batch_size=4, minutes=0.05, warmup_steps=2, threads=1)
    out = tmp_path / "rec32.onnx"
    log: list[str] = []
    train(shipped, stream, [], held, opts, out, log=log.append)
    assert any("after" in m for m in log)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta[HEIGHT_METADATA] == "32"
    crop = render_line("Reading at 32 rows.", height=40)
    for precision in ("fp32", "int8"):
        rec = load_recognizer(tmp_path / "models", 1, precision, model=str(out))
        assert rec.config.height == 32
        assert len(rec.recognize([crop])) == 1
    engine = load(EngineOptions(precision="fp32", model=str(out)), tmp_path / "models")
    assert engine.provenance["recognizer"]["height"] == 32
    assert engine.provenance["models"]["rec"]["file"] == "rec32.onnx"


def test_distillation_matches_the_teachers_steps_and_compares_only_real_ones(shipped, tmp_path):
    logits = torch.randn(2, 5, 7)
    steps = torch.tensor([5, 3])
    assert float(distill_loss(logits, logits, steps)) == pytest.approx(0.0, abs=1e-6)
    other = logits.clone()
    other[1, 3:] += 10 * torch.randn(2, 7)  # padding steps of the second crop only
    assert float(distill_loss(other, logits, steps)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(torch.randn(2, 5, 7), logits, steps)) > 0.01
    fonts = lines.find_fonts([str(font_dir())])
    stream = lines.stream(fonts, ["Distilled from the 48 px reading."], ["total"], seed=2)
    opts = FinetuneOptions(batch_size=3, distill=True)
    x, x_teacher, steps = next(distill_batches(stream, [], opts))
    assert x.shape[2] == 32 and x_teacher.shape[2] == 48 and x.shape[3] == x_teacher.shape[3]
    student = OnnxModule(narrowed_model(shipped)[0], logits=True)
    with torch.no_grad():
        assert student(x).shape == student(x_teacher).shape  # step for step
    out = tmp_path / "kd32.onnx"
    short = FinetuneOptions(batch_size=2, minutes=0.03, warmup_steps=2, threads=1, distill=True)
    train(shipped, stream, [], [next(stream)], short, out, log=lambda m: None)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert (meta[HEIGHT_METADATA], meta[WIDTH_SCALE_METADATA]) == ("32", "1.275")


def test_a_model_that_is_not_an_onnx_file_is_refused(tmp_path):
    with pytest.raises(ModelError, match="PP-OCR recognizer .onnx"):
        load_recognizer(tmp_path, 1, "fp32", model=str(tmp_path / "missing.onnx"))
    (tmp_path / "notes.txt").write_text("no")
    with pytest.raises(ModelError):
        load(EngineOptions(model=str(tmp_path / "notes.txt")), tmp_path)


def test_the_cli_lists_the_command():
    from click.testing import CliRunner

    from models.cli import models_group

    result = CliRunner().invoke(models_group, ["finetune-ppocr", "--help"])
    assert result.exit_code == 0 and "--height" in result.output and "--scans" in result.output
