"""One job, start to finish: job -> page images -> regions -> crops -> text -> rows.

The same function runs in a Celery worker child and in the embedded `ocrq run` pool,
always against the process's warm engine. Input faults (a bad image, a refused path)
fail their own job with a reason and are never retried; anything else propagates so
the caller can retry (a transient DB error) or let the broker redeliver.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from models.base import Engine, PageBuffer
from models.page import page_regions, read_page_layout
from ocrq.config import EngineOptions, InputLimits
from ocrq.documents import PDF_TEXT, PageSource, TextLayerLine
from ocrq.documents import read_page as read_document_page
from ocrq.errors import BadImage, TimeLimitInterrupt, UnknownJob
from ocrq.results import RegionResult
from ocrq.storage import Store, decode_path

OUTCOME_DONE, OUTCOME_FAILED, OUTCOME_SKIPPED = "done", "failed", "skipped"
# The message named a job this database does not hold (`UnknownJob`): nothing to write.
OUTCOME_UNKNOWN = "unknown"

log = logging.getLogger("ocrq.worker")


@dataclass(frozen=True)
class Outcome:
    job_id: int
    status: str  # done | failed | skipped (already finished: a redelivery)
    regions: int = 0
    pages: int = 0
    error: str | None = None


@dataclass(frozen=True)
class PageRead:
    """One page's regions in reading order, and the seconds it took to decode and read."""

    regions: list[RegionResult]
    load_seconds: float
    ocr_seconds: float
    angle: int = 0  # how far the scan was turned (it was read upright)


def read_pages(
    engine: Engine,
    pages: Iterable[np.ndarray],
    before_page: Callable[[int], object] | None = None,
) -> Iterator[PageRead]:
    """The one page loop, run by the Celery task, `ocrq run`'s pool and `ocrq bench`:
    pages are decoded and read one at a time (a long TIFF is never all in memory), each
    handed to the engine in a `PageBuffer` with no other reference kept, so the reader may
    narrow it and free the rest. `before_page(pixels)` runs after a page is decoded,
    before it is read (a worker's heap trim before a large page,
    `worker.heap.trim_before_large_page`). `BadImage` from a page that cannot be decoded
    propagates."""
    iterator = iter(pages)
    for page_no in itertools.count():
        started = time.perf_counter()
        image = next(iterator, None)
        loaded = time.perf_counter()
        if image is None:
            return
        if before_page is not None:
            before_page(image.shape[0] * image.shape[1])
        page = PageBuffer(image)
        del image  # the buffer holds the only reference: the reader may narrow it
        reading = read_page_layout(engine, page)
        del page
        regions = page_regions(page_no, reading.pairs, reading.layout)
        yield PageRead(regions, loaded - started, time.perf_counter() - loaded, reading.angle)


def read_job_page(
    engine: Engine,
    job: dict,
    limits: InputLimits,
    pdf_text: str,
    before_page: Callable[[int], object] | None = None,
) -> tuple[list[RegionResult], dict[str, float], dict]:
    """A job's one page of its file: its regions (OCR, or a born-digital PDF page's own
    text layer), seconds spent, and the page as read (`page_info`). The page's pixels are
    handed to the page loop with no other reference kept."""
    started = time.perf_counter()
    page_no = int(job.get("page") or 0)
    source = read_document_page(decode_path(job["path"]), page_no, limits, pdf_text)
    info = page_info(source)
    if source.pixels is None:
        regions = text_layer_regions(page_no, source.text_lines)
        return regions, {"load": time.perf_counter() - started, "ocr": 0.0}, info
    holder = [source.pixels]
    del source
    (page,) = read_pages(engine, _drain(holder), before_page)
    info["rotation"] = page.angle
    timings = {"load": time.perf_counter() - started - page.ocr_seconds, "ocr": page.ocr_seconds}
    return [replace(r, page=page_no) for r in page.regions], timings, info


def _drain(holder: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Yield the arrays in `holder`, keeping no reference to them here."""
    while holder:
        yield holder.pop()


def page_info(source: PageSource) -> dict:
    """What the exporters need to place a page's text: its size in pixels, resolution,
    where its pixels (or text) came from, and a PDF page's size in points."""
    return {
        "width": source.width,
        "height": source.height,
        "dpi": source.dpi,
        "source": source.source,
        "size_pt": list(source.size_pt) if source.size_pt else None,
        "origin_pt": list(source.origin_pt),
    }


def text_layer_regions(page_no: int, lines: Sequence[TextLayerLine]) -> list[RegionResult]:
    """A born-digital page's text lines as result rows, in the order the PDF gives them
    (the layout step orders OCR'd regions; a text layer is in its author's order)."""
    regions = []
    for idx, line in enumerate(lines):
        x0, y0, x1, y1 = line.box
        quad = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        regions.append(RegionResult(page_no, idx, quad, line.text, 1.0, idx))
    return regions


BATCH_ROOTS = "the folders its batch was submitted from; OCRQ_INPUT_ROOTS widens them"


def job_limits(limits: InputLimits, job: dict) -> InputLimits:
    """The limits a job is read under. Without OCRQ_INPUT_ROOTS a worker reads only under
    the folders (or files) the job's batch was submitted from, so a symlink in a
    submitted folder cannot lead it elsewhere. Batches recorded before their roots were
    stored resolved (relative roots) keep the old rule: any path."""
    roots = tuple(job.get("batch_roots") or ())
    if limits.input_roots or not roots or not all(os.path.isabs(r) for r in roots):
        return limits
    return replace(limits, input_roots=roots, roots_from=BATCH_ROOTS)


def process_job(
    store: Store,
    engine: Engine,
    options: EngineOptions,
    limits: InputLimits,
    job_id: int,
    worker: str,
    max_attempts: int = 3,
    before_page: Callable[[int], object] | None = None,
) -> Outcome:
    try:
        job = store.start_job(job_id, worker)
    except UnknownJob as exc:
        # Acked and dropped: this worker can never run it, and a redelivery would only
        # come back here. The producer's `ocrq status` shows such jobs and `ocrq retry
        # --lost` sends them again once a worker reads the right database.
        log.error("%s", exc)
        return Outcome(job_id, OUTCOME_UNKNOWN, error=str(exc))
    if job is None:
        return Outcome(job_id, OUTCOME_SKIPPED)
    if job["attempts"] > max_attempts:
        # Each earlier attempt died without finishing (worker killed, out of memory,
        # hard time limit): a poison job must not take workers down forever.
        reason = f"gave up after {max_attempts} attempts: the worker was lost each time"
        store.fail_job(job_id, reason)
        return Outcome(job_id, OUTCOME_FAILED, error=reason)
    started = time.perf_counter()
    wanted = EngineOptions.from_dict(job["options"] or {})
    if (wanted.engine, wanted.model, wanted.precision, wanted.small_caps) != (
        options.engine,
        options.model,
        options.precision,
        options.small_caps,
    ):
        reason = (
            f"job wants engine {wanted.engine} model {wanted.model or 'default'} "
            f"({wanted.precision}, small caps {wanted.small_caps}); this worker runs "
            f"{options.engine} model {options.model or 'default'} ({options.precision}, "
            f"small caps {options.small_caps})"
        )
        store.fail_job(job_id, reason)
        return Outcome(job_id, OUTCOME_FAILED, error=reason)
    try:
        regions, timings, info = read_job_page(
            engine, job, job_limits(limits, job), wanted.pdf_text, before_page
        )
    except BadImage as exc:
        reason = str(exc)
        store.fail_job(job_id, reason, timings={"total": time.perf_counter() - started})
        return Outcome(job_id, OUTCOME_FAILED, error=reason)
    except TimeLimitInterrupt:
        raise  # the task fails the job with a "time limit" reason
    except Exception as exc:  # reading touches no database: the page is at fault
        # A page the engine cannot handle is this job's fault, not the worker's:
        # fail it with the reason instead of redelivering it forever.
        reason = f"recognition failed: {type(exc).__name__}: {exc}"[:500]
        store.fail_job(job_id, reason, timings={"total": time.perf_counter() - started})
        return Outcome(job_id, OUTCOME_FAILED, error=reason)
    timings = {**timings, "total": time.perf_counter() - started}
    store.finish_job(
        job_id,
        regions,
        pages=1,
        timings=timings,
        provenance=engine.provenance if info["source"] != PDF_TEXT else {"source": PDF_TEXT},
        options=replace(options, pdf_text=wanted.pdf_text).as_dict(),
        page_info=info,
    )
    return Outcome(job_id, OUTCOME_DONE, regions=len(regions), pages=1)
