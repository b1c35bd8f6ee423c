"""PDF in, searchable PDF out: ocrq beside OCRmyPDF, each read back from its output's text
layer with `pdftotext`, page by page (`-f N -l N`).

Runners, each given a folder of PDFs and an output folder:

- `ocrmypdf-tesseract`: `ocrmypdf --jobs 2 -O0 --output-type pdf IN OUT`, file by file;
- `ocrmypdf-rapidocr`: the same with `--plugin ocrmypdf_rapidocr` (PyPI's
  ocrmypdf-rapidocr), under `--rapidocr-python` when it lives in another environment;
- `ocrmypdf-ocrq`: the same with `--plugin ocrmypdf_ocrq` (our engine in OCRmyPDF);
- `ocrq-queue`: `ocrq run FOLDER --db sqlite:///TMP/x.db -w 2`, then
  `ocrq export --format pdf -o OUT --db ...`.

Figures are for the whole commands as a user runs them, start to finish: process starts,
model loads, rasterizing, OCR and writing the PDFs (for the queue: the run and the
export). Parallelism comes from `--jobs 2` / `-w 2`, one thread per page: Tesseract runs
with `OMP_THREAD_LIMIT=1`, ours with one ONNX Runtime thread (the RapidOCR plugin keeps
its own defaults). Peak RSS is that of the largest single process
(`getrusage(RUSAGE_CHILDREN)` of a small parent that waits for the commands); `tree MB`
is the largest sum over the commands' whole process tree, sampled every 50 ms.

`ocrq bench --pdf FOLDER...` runs them (`bench/pdfbench.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.pdfsets import PdfSet, score_pages
from bench.queue import RUSAGE_WRAPPER

REPO = Path(__file__).resolve().parents[1]
RUNNERS = ("ocrmypdf-tesseract", "ocrmypdf-rapidocr", "ocrmypdf-ocrq", "ocrq-queue")
BASELINE = "ocrmypdf-tesseract"
OCRMYPDF_ARGS = ("--jobs", "2", "-O0", "--output-type", "pdf")
PLUGINS = {"ocrmypdf-rapidocr": "ocrmypdf_rapidocr", "ocrmypdf-ocrq": "ocrmypdf_ocrq"}


@dataclass
class PdfRun:
    """What a runner made of one folder of PDFs."""

    texts: dict[str, list[str]] = field(default_factory=dict)  # PDF name -> each page's text
    layout_texts: dict[str, list[str]] = field(default_factory=dict)  # the same, `-layout`
    wall_seconds: float = 0.0
    peak_rss_mb: float | None = None  # largest single process
    tree_rss_mb: float | None = None  # largest sampled sum over the process tree
    failed: list[str] = field(default_factory=list)  # "NAME: why", per PDF
    error: str | None = None  # the runner could not run at all


@dataclass
class PdfRow:
    set: str
    runner: str
    pages: int
    status: str = "ok"
    cer: float | None = None  # summed edits / summed reference characters
    cer_layout: float | None = None  # the same, text read with `pdftotext -layout`
    pages_per_s: float | None = None
    peak_rss_mb: float | None = None
    tree_rss_mb: float | None = None
    wall_s: float | None = None
    vs_tesseract: float | None = None  # pages/s over OCRmyPDF+Tesseract's on the set
    failed: list[str] = field(default_factory=list)


def _env(precision: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["OCRQ_PRECISION"] = precision  # our engine, in OCRmyPDF and in the queue
    # OCRmyPDF gives Tesseract min(3, jobs // pages) OpenMP threads: 2 on a one-page PDF,
    # which on a busy 2-core machine spin-waits (a book page: 70 s instead of 2.5 s,
    # measured). One thread per page, as every other runner here has.
    env["OMP_THREAD_LIMIT"] = "1"
    return env


def unavailable(runner: str, rapidocr_python: str = sys.executable) -> str | None:
    """Why `runner` cannot run here, or None."""
    for tool in ("pdftotext", "pdfinfo"):
        if shutil.which(tool) is None:
            return f"not installed ({tool}: apt install poppler-utils)"
    if runner == "ocrq-queue":
        return None
    python = rapidocr_python if runner == "ocrmypdf-rapidocr" else sys.executable
    module = PLUGINS.get(runner, "ocrmypdf")
    probe = subprocess.run(
        [python, "-c", f"import ocrmypdf, {module}"],
        capture_output=True,
        text=True,
        env=_env("auto"),
    )
    if probe.returncode != 0:
        return f"not installed ({module} not importable by {python})"
    if runner == BASELINE and shutil.which("tesseract") is None:
        return "not installed (tesseract: apt install tesseract-ocr)"
    return None


def _commands(
    runner: str, folder: Path, out_dir: Path, work: Path, workers: int, rapidocr_python: str
) -> list[list[str]]:
    pdfs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".pdf")
    if runner == "ocrq-queue":
        db = f"sqlite:///{work / 'x.db'}"
        ocrq = [sys.executable, "-m", "producer.cli"]
        return [
            [*ocrq, "run", str(folder), "--pattern", "*.pdf", "--db", db, "-w", str(workers)],
            [*ocrq, "export", "--format", "pdf", "-o", str(out_dir), "--db", db],
        ]
    python = rapidocr_python if runner == "ocrmypdf-rapidocr" else sys.executable
    plugin = ["--plugin", PLUGINS[runner]] if runner in PLUGINS else []
    return [
        [python, "-m", "ocrmypdf", *plugin, *OCRMYPDF_ARGS, str(pdf), str(out_dir / pdf.name)]
        for pdf in pdfs
    ]


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total
    except psutil.Error:
        return 0


def _measure(commands: Sequence[list[str]], env: dict, cwd: Path, timeout: float) -> PdfRun:
    """Run `commands` one after another; wall time, peak RSS, and each failure's tail."""
    run = PdfRun()
    peak_single = peak_tree = 0
    started = time.perf_counter()
    for cmd in commands:
        rss_file = cwd / "peak_rss"
        proc = subprocess.Popen(
            [sys.executable, "-c", RUSAGE_WRAPPER, str(rss_file), *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,  # its own process group: a timeout ends all of it
        )
        done = threading.Event()

        def sample(pid: int = proc.pid, done: threading.Event = done) -> None:
            nonlocal peak_tree
            while not done.wait(0.05):
                peak_tree = max(peak_tree, _tree_rss(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate()
            stderr = f"timed out after {timeout:.0f} s"
        done.set()
        sampler.join()
        if rss_file.is_file():
            peak_single = max(peak_single, int(rss_file.read_text() or 0))
            rss_file.unlink()
        if proc.returncode != 0:
            tail = " | ".join((stderr or "").strip().splitlines()[-2:])[:300]
            run.failed.append(f"{Path(cmd[-1]).name}: exit {proc.returncode}: {tail}")
    run.wall_seconds = time.perf_counter() - started
    run.peak_rss_mb = peak_single * 1024 / 1e6 if peak_single else None
    run.tree_rss_mb = peak_tree / 1e6 if peak_tree else None
    return run


def page_count(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    for line in info.stdout.splitlines():
        if line.startswith("Pages:"):
            return int(line.split()[1])
    return 0


def text_layer(pdf: Path, layout: bool = False) -> list[str]:
    """Each page's text as `pdftotext` reads the PDF's text layer, page by page: in its
    default reading order (blocks it finds, one after another), or with `-layout` (the
    physical layout kept, line by line across the page)."""
    pages = []
    mode = ["-layout"] if layout else []
    for n in range(1, page_count(pdf) + 1):
        out = subprocess.run(
            ["pdftotext", *mode, "-f", str(n), "-l", str(n), str(pdf), "-"],
            capture_output=True,
            text=True,
            check=True,
        )
        pages.append(out.stdout)
    return pages


def run_runner(
    runner: str,
    folder: Path,
    out_dir: Path,
    *,
    workers: int = 2,
    precision: str = "auto",
    rapidocr_python: str = sys.executable,
    timeout: float = 3600.0,
) -> PdfRun:
    """OCR every PDF in `folder` with `runner` into `out_dir`; each output's page texts."""
    why = unavailable(runner, rapidocr_python)
    if why:
        return PdfRun(error=why)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ocrq-pdfbench-") as tmp:
        work = Path(tmp)
        commands = _commands(runner, folder, out_dir, work, workers, rapidocr_python)
        run = _measure(commands, _env(precision), work, timeout)
    for pdf in sorted(folder.glob("*.pdf")):
        target = out_dir / pdf.name
        if target.is_file():
            run.texts[pdf.name] = text_layer(target)
            run.layout_texts[pdf.name] = text_layer(target, layout=True)
        elif not any(f.startswith(pdf.name) for f in run.failed):
            run.failed.append(f"{pdf.name}: no output PDF")
    return run


def score(pdf_set: PdfSet, runner: str, run: PdfRun) -> PdfRow:
    row = PdfRow(pdf_set.name, runner, pdf_set.pages)
    if run.error:
        row.status = run.error
        return row
    dist, ref, missing = score_pages(pdf_set, run.texts)
    row.cer = dist / max(ref, 1)
    dist_layout, _, _ = score_pages(pdf_set, run.layout_texts)
    row.cer_layout = dist_layout / max(ref, 1)
    row.wall_s = run.wall_seconds
    row.pages_per_s = pdf_set.pages / run.wall_seconds if run.wall_seconds else None
    row.peak_rss_mb, row.tree_rss_mb = run.peak_rss_mb, run.tree_rss_mb
    row.failed = run.failed
    if run.failed or missing:
        row.status = f"{len(run.failed)} failed, {missing} pages missing"
    return row


def add_ratios(rows: Sequence[PdfRow]) -> None:
    base = {r.set: r.pages_per_s for r in rows if r.runner == BASELINE and r.pages_per_s}
    for row in rows:
        if row.pages_per_s and base.get(row.set):
            row.vs_tesseract = row.pages_per_s / base[row.set]
