"""What each bench runner does to one image, inside a warm pinned worker process.

Every runner reads each image as users would run it: our page pipeline (`read_page`,
detection included, on line images too), RapidOCR's default pipeline (detection, angle
classifier, recognition), the Tesseract CLI with its default page segmentation. On line
sets each peer runs in its own one-line mode, as the targets we are measured against
were taken: Tesseract with `--psm 7`, RapidOCR with recognition only (`use_det=False,
use_cls=False`). Its full pipeline on the UW-III lines read 2.96 % CER at 1.1 s a line
(detection of a padded, upscaled strip); recognition with its angle classifier read
4.33 % (it turns whole lines upside down); recognition alone read 0.63 % at 0.073 s,
the issue's figures.

A runner is named on the command line (`ours-fp32`, `ours-int8`, `queue`, `rapidocr`,
`tesseract`, optionally `@N` for N processes). `make_reader(kind, args)` loads it once
(warm) and returns `read(path, line_image) -> Read`. The queue runner is not here: it
runs `ocrq run` as a whole (see `queue.py`).

Peers are optional: `unavailable(spec)` says why one cannot run ("not installed: ..."),
and the bench reports that instead of failing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.evalsets import Box
from ocrq.config import PRECISIONS

KINDS = ("ours", "queue", "rapidocr", "tesseract")
DEFAULT_RUNNERS = ("ours-fp32", "ours-int8", "queue", "rapidocr", "tesseract")


@dataclass(frozen=True)
class RunnerSpec:
    label: str  # as given on the command line, e.g. "ours-int8@1"
    kind: str  # ours | queue | rapidocr | tesseract
    precision: str = "auto"  # our engine's precision (ours, queue)
    processes: int = 2  # pinned processes (queue: workers)
    overrides: str = ""  # our engine's settings, "detector.max_side=1600;use_angle_cls=1"
    small_caps: str = "auto"  # our engine's EngineOptions.small_caps (ours, queue)
    model: str | None = None  # our engine's recognizer file, `[model=PATH]` (ours, queue)


@dataclass
class Read:
    text: str  # page text, lines separated by newlines, pages by a blank line
    boxes: list[Box] = field(default_factory=list)  # text lines/regions of the first page
    lines: int = 0  # text-line regions read (detector boxes; Tesseract's lines)


Reader = Callable[[Path, bool], Read]


def parse_runner(label: str, default_processes: int) -> RunnerSpec:
    """`ours-fp32`, `ours-int8`, `queue`, `queue-int8`, `rapidocr`, `tesseract` (`ours` and
    `queue` alone run the default precision, `auto`), each with
    an optional `@N` process count (default: --workers). Our in-process engine also takes
    settings in brackets, to compare variants: `ours-fp32[detector.max_side=1600]@1`;
    `[model=PATH]` (ours and queue) runs another recognizer file, as `ocrq run --model`."""
    import re

    from ocrq.errors import UsageError

    match = re.fullmatch(r"([^\[@]+)(?:\[([^\]]*)\])?(?:@([^@\]]*))?", label)
    if match is None:
        raise UsageError(f"runner {label!r}: expected NAME[settings]@N")
    name, overrides, count = match.group(1), match.group(2) or "", match.group(3) or ""
    try:
        processes = int(count) if count else default_processes
    except ValueError:
        raise UsageError(f"runner {label!r}: the count after @ must be a number") from None
    if processes < 1:
        raise UsageError(f"runner {label!r}: needs at least one process")
    kind, _, precision = name.partition("-")
    if kind not in KINDS or (kind in ("rapidocr", "tesseract") and precision):
        raise UsageError(
            f"unknown runner {label!r}; choose from ours-fp32, ours-int8, queue, queue-int8, "
            "rapidocr, tesseract (optionally @N processes)"
        )
    precision = precision or "auto"  # `ours`, `queue`: the default engine, as workers run it
    if precision not in PRECISIONS:
        raise UsageError(f"runner {label!r}: precision must be one of {', '.join(PRECISIONS)}")
    model, overrides = _model_setting(overrides)
    if model and kind not in ("ours", "queue"):
        raise UsageError(f"runner {label!r}: only ours-* and queue take [model=PATH]")
    if overrides and kind != "ours":
        raise UsageError(f"runner {label!r}: only ours-* takes [settings]")
    if overrides:
        ppocr_config(overrides)  # a typo fails now, not in every worker
    return RunnerSpec(label, kind, precision, processes, overrides, model=model)


def _model_setting(overrides: str) -> tuple[str | None, str]:
    """(`model=PATH` if among the settings, the other settings)."""
    model, rest = None, []
    for item in filter(None, (part.strip() for part in overrides.split(";"))):
        key, _, value = item.partition("=")
        if key.strip() == "model":
            model = value.strip()
        else:
            rest.append(item)
    return model, ";".join(rest)


def ppocr_config(overrides: str):
    """Our engine's `PPOCRConfig` with `part.field=value` (detector.*, recognizer.*) and
    top-level `field=value` settings applied, separated by ';'."""
    from dataclasses import fields, replace

    from models.ppocr.engine import PPOCRConfig
    from ocrq.errors import UsageError

    def cast(current, value: str):
        if isinstance(current, bool):
            return value.lower() in ("1", "true", "yes", "on")
        return type(current)(value)

    config = PPOCRConfig()
    for item in filter(None, (part.strip() for part in overrides.split(";"))):
        key, sep, value = item.partition("=")
        part, _, name = key.strip().rpartition(".")
        target = getattr(config, part, None) if part else config
        known = {f.name for f in fields(target)} if target is not None else set()
        if not sep or name not in known:
            raise UsageError(f"unknown engine setting {key.strip()!r} in [{overrides}]")
        try:
            changed = replace(target, **{name: cast(getattr(target, name), value.strip())})
        except ValueError:
            raise UsageError(f"bad value for {key.strip()!r}: {value.strip()!r}") from None
        config = replace(config, **{part: changed}) if part else changed
    return config


def unavailable(spec: RunnerSpec, tesseract_cmd: str = "tesseract") -> str | None:
    """Why this runner cannot run here (a peer not installed), or None when it can."""
    if spec.kind == "rapidocr":
        for module in ("rapidocr", "onnxruntime"):
            if importlib.util.find_spec(module) is None:
                return f"not installed ({module} package missing)"
    if spec.kind == "tesseract" and shutil.which(tesseract_cmd) is None:
        return f"not installed ({tesseract_cmd} not found)"
    return None


def make_reader(spec: RunnerSpec, models_dir: str, tesseract_cmd: str = "tesseract") -> Reader:
    """Load the runner once in this process (the warm state) and return its reader."""
    if spec.kind == "ours":
        return _ours(spec.precision, Path(models_dir), spec.overrides, spec.small_caps, spec.model)
    if spec.kind == "rapidocr":
        return _rapidocr()
    if spec.kind == "tesseract":
        return _tesseract(tesseract_cmd)
    raise ValueError(f"{spec.kind} runs as a whole, not item by item")


def _pages(path: Path) -> Iterator:
    from ocrq.config import InputLimits
    from ocrq.images import iter_pages

    return iter_pages(path, InputLimits())


def _ours(
    precision: str,
    models_dir: Path,
    overrides: str = "",
    small_caps: str = "auto",
    model: str | None = None,
) -> Reader:
    from models.registry import load_engine
    from ocrq.config import EngineOptions
    from ocrq.results import page_text
    from worker.pipeline import read_pages

    options = EngineOptions(engine="ppocr", precision=precision, small_caps=small_caps, model=model)
    if overrides:  # a variant of the engine's settings
        from models.ppocr.engine import load

        engine = load(options, models_dir, 1, ppocr_config(overrides))
    else:  # exactly what a worker loads
        engine = load_engine(options, models_dir, 1)

    def read(path: Path, line_image: bool) -> Read:
        regions = []
        for page in read_pages(engine, _pages(path)):  # the worker's page loop
            regions += page.regions
        # text-line regions count as lines, as RapidOCR's boxes and Tesseract's lines
        boxes = [(*r.bbox, r.text) for r in regions if r.page == 0]
        return Read(page_text(regions), boxes, len(regions))

    return read


def offline_rapidocr():  # type: ignore[no-untyped-def]
    """RapidOCR with the wheel's own model files named explicitly (it never downloads)
    and one ORT thread, as every runner here gets."""
    from rapidocr import RapidOCR

    from models.ppocr import resources as res

    return RapidOCR(
        params={
            "Det.model_path": str(res.model_path(res.DET_FILE)),
            "Rec.model_path": str(res.model_path(res.REC_FILE)),
            "Cls.model_path": str(res.model_path(res.CLS_FILE)),
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "Global.log_level": "error",
        }
    )


def _rapidocr() -> Reader:
    """RapidOCR's own pipeline (its defaults; recognition only on line images), with the
    wheel's model files named explicitly so it never tries to download, and one ORT
    thread per process."""
    import numpy as np

    from models.crops import as_rgb

    ocr = offline_rapidocr()

    def read(path: Path, line_image: bool) -> Read:
        texts, boxes, lines = [], [], 0
        for page_no, image in enumerate(_pages(path)):
            bgr = np.ascontiguousarray(as_rgb(image)[:, :, ::-1])  # RapidOCR takes BGR
            if line_image:
                texts.append(_rapidocr_line(ocr, bgr))
                lines += bool(texts[-1].strip())
                continue
            out = ocr(bgr, **PIPELINE)
            page_boxes = []
            if out.boxes is not None:
                for quad, text in zip(out.boxes, out.txts, strict=True):
                    xs, ys = quad[:, 0], quad[:, 1]
                    page_boxes.append(
                        (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()), text)
                    )
            # RapidOCR returns its boxes in its own reading order, one text line each
            texts.append("\n".join(b[4] for b in page_boxes))
            lines += sum(1 for b in page_boxes if b[4].strip())
            if page_no == 0:
                boxes = page_boxes
        return Read("\n\n".join(texts), boxes, lines)

    return read


# RapidOCR keeps a call's use_* flags for the calls after it, so each call names them all.
PIPELINE = {"use_det": True, "use_cls": True, "use_rec": True}  # its config.yaml defaults
LINE_MODE = {"use_det": False, "use_cls": False, "use_rec": True}


def _rapidocr_line(ocr, bgr) -> str:  # type: ignore[no-untyped-def]
    """RapidOCR's one-line mode: the image is the line (no detection, no angle classifier)."""
    out = ocr(bgr, **LINE_MODE)
    return " ".join(out.txts or ())


def _tesseract(cmd: str) -> Reader:
    """The Tesseract CLI on the file itself (it decodes the image), `eng`, one thread;
    `--psm 7` (one text line) for line images, its default page segmentation otherwise."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def read(path: Path, line_image: bool) -> Read:
        args = [cmd, str(path), "-", "-l", "eng"]
        if line_image:
            args += ["--psm", "7"]
        proc = subprocess.run(args + ["tsv"], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"tesseract exited {proc.returncode}: {proc.stderr.strip()[:200]}")
        return parse_tsv(proc.stdout)

    return read


def parse_tsv(tsv: str) -> Read:
    """Tesseract TSV words -> text lines (page, block, paragraph, line), with boxes."""
    lines: dict[tuple[int, ...], list[tuple[int, int, int, int, str]]] = {}
    for row in tsv.splitlines()[1:]:
        f = row.split("\t")
        if len(f) < 12 or f[0] != "5" or not f[11].strip():
            continue
        key = tuple(int(v) for v in f[1:5])
        x, y, w, h = (int(v) for v in f[6:10])
        lines.setdefault(key, []).append((x, y, x + w, y + h, f[11]))
    pages: dict[int, list[Box]] = {}
    for key, words in lines.items():
        box = (
            float(min(w[0] for w in words)),
            float(min(w[1] for w in words)),
            float(max(w[2] for w in words)),
            float(max(w[3] for w in words)),
            " ".join(w[4] for w in words),
        )
        pages.setdefault(key[0], []).append(box)
    ordered = [pages[p] for p in sorted(pages)]
    text = "\n\n".join("\n".join(b[4] for b in page) for page in ordered)
    return Read(text, ordered[0] if ordered else [], sum(len(p) for p in ordered))
