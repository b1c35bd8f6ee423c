"""`ocrq bench --pdf FOLDER...` (issue #29): PDF in, searchable PDF out, scored by the
text layer. The page sets given become scanned PDFs (`bench/pdfsets.py`), every PDF
runner OCRs them (`bench/pdfrunners.py`: OCRmyPDF with Tesseract, with RapidOCR, with
ocrq; ocrq's own queue), set by set, and one table compares them: text-layer CER read
with `pdftotext` plain and `-layout`, pages/s, peak RSS, and pages/s over OCRmyPDF with
Tesseract's and with RapidOCR's on the same set, in the same run.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from bench.evalsets import EvalSet
from bench.pdfrunners import RUNNERS, PdfRow, add_ratios, run_runner, score
from bench.pdfsets import build_sets
from ocrq.errors import UsageError

RAPIDOCR = "ocrmypdf-rapidocr"


def check_runners(names: Sequence[str]) -> tuple[str, ...]:
    """The PDF runners named with `-r` (all when none is), refusing unknown ones."""
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        raise UsageError(
            f"--pdf runs PDF runners: {', '.join(unknown)} is not one of {', '.join(RUNNERS)}"
        )
    return tuple(names) or RUNNERS


def add_rapidocr_ratios(rows: Sequence[PdfRow]) -> dict[tuple[str, str], float]:
    """pages/s of each row over OCRmyPDF+RapidOCR's on the same set, by (set, runner)."""
    base = {r.set: r.pages_per_s for r in rows if r.runner == RAPIDOCR and r.pages_per_s}
    return {
        (r.set, r.runner): r.pages_per_s / base[r.set]
        for r in rows
        if r.pages_per_s and base.get(r.set)
    }


def pdf_bench(
    evalsets: Sequence[EvalSet],
    runners: Sequence[str] = RUNNERS,
    *,
    workers: int = 2,
    rapidocr_python: str = sys.executable,
    progress: Callable[[PdfRow], None] | None = None,
) -> list[PdfRow]:
    """Build the PDF sets from `evalsets` in a temp folder, run every runner on every set
    (set by set, the runners one after another, so a set's figures are minutes apart on a
    shared machine) and score them."""
    rows: list[PdfRow] = []
    with tempfile.TemporaryDirectory(prefix="ocrq-pdfsets-") as tmp:
        root = Path(tmp)
        pdf_sets = build_sets(evalsets, root / "sets")
        if not pdf_sets:
            raise UsageError("--pdf: no page set with whole-page truth among the folders")
        for pdf_set in pdf_sets:
            for runner in runners:
                out_dir = root / "out" / pdf_set.name / runner
                run = run_runner(
                    runner,
                    pdf_set.folder,
                    out_dir,
                    workers=workers,
                    rapidocr_python=rapidocr_python,
                )
                rows.append(score(pdf_set, runner, run))
                if progress:
                    progress(rows[-1])
    add_ratios(rows)
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


HEAD = ("set", "runner", "pages", "CER %", "CER % -layout", "pages/s", "RSS MB", "tree MB")
HEAD += ("x tess", "x rapid")


def format_table(rows: Sequence[PdfRow]) -> str:
    """A Markdown table, one row per set and runner, a note per row that had failures."""
    rapid = add_rapidocr_ratios(rows)
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for r in rows:
        cells: tuple[str, ...] = (r.set, r.runner, str(r.pages))
        if r.status != "ok" and r.cer is None:
            cells += (r.status,) + ("",) * (len(HEAD) - 4)
        else:
            cells += (
                _fmt(None if r.cer is None else 100 * r.cer, ".2f"),
                _fmt(None if r.cer_layout is None else 100 * r.cer_layout, ".2f"),
                _fmt(r.pages_per_s, ".2f"),
                _fmt(r.peak_rss_mb, ".0f"),
                _fmt(r.tree_rss_mb, ".0f"),
                _fmt(r.vs_tesseract, ".2f"),
                _fmt(rapid.get((r.set, r.runner)), ".2f"),
            )
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"{r.set} / {r.runner}: {r.status}" for r in rows if r.status != "ok" and r.cer]
    return "\n".join(lines + notes)


def write_json(path: Path, rows: Sequence[PdfRow], meta: dict) -> None:
    rapid = add_rapidocr_ratios(rows)
    records = [{**asdict(r), "vs_rapidocr": rapid.get((r.set, r.runner))} for r in rows]
    data = {"meta": meta, "rows": records}
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
