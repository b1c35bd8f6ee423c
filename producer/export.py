"""Exporters: CSV, JSON (one valid array) and JSONL, streamed from the database.

Rows come from `Store.iter_jobs` in keyset-paginated chunks, so an export of a million
regions never holds them all in memory. A job recorded as a duplicate of another (same
bytes, same model) is exported with the original's text.
"""

from __future__ import annotations

import base64
import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import IO, Any

from ocrq.inputs import display_path
from ocrq.results import RegionResult, page_text, words_of
from ocrq.storage import Store, decode_path

FORMATS = ("csv", "json", "jsonl")
LEVELS = ("file", "page", "region", "word")

PAGE_FIELDS = [
    "job_id",
    "path",
    "path_bytes",
    "page",
    "sha256",
    "status",
    "error",
    "regions",
    "mean_confidence",
    "engine",
    "model",
    "precision",
    "seconds",
    "duplicate_of",
    "text",
]
FILE_FIELDS = [
    "job_id",
    "path",
    "path_bytes",
    "sha256",
    "status",
    "error",
    "pages",
    "pages_done",
    "regions",
    "mean_confidence",
    "engine",
    "model",
    "precision",
    "seconds",
    "text",
]
WORD_FIELDS = [
    "job_id",
    "path",
    "path_bytes",
    "page",
    "line",
    "idx",
    "word",
    "text",
    "confidence",
    "x0",
    "y0",
    "x1",
    "y1",
]
REGION_FIELDS = [
    "job_id",
    "path",
    "path_bytes",
    "page",
    "block",
    "paragraph",
    "line",
    "idx",
    "text",
    "confidence",
    "x0",
    "y0",
    "x1",
    "y1",
]


@dataclass(frozen=True)
class ExportOptions:
    fmt: str = "jsonl"
    level: str = "file"  # one record per file, per page, per region or per word
    batch_id: int | None = None
    dehyphenate: bool = False
    chunk: int = 200


def shown_path(stored: str) -> str:
    """The path as a person reads it: undecodable bytes of non-UTF-8 names as \\xNN."""
    return display_path(decode_path(stored))


def path_bytes(stored: str) -> str | None:
    """For a name that is not UTF-8, its exact bytes (base64), since `shown_path` writes
    the byte 0xff and a name really holding the four characters `\\xff` alike; None for
    every other path (the `path` field is then exact)."""
    raw = os.fsencode(decode_path(stored))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")
    return None


def iter_records(store: Store, opts: ExportOptions) -> Iterator[dict[str, Any]]:
    if opts.level == "file":
        for jobs in store.iter_documents(opts.batch_id):
            yield _file_record(jobs, list(_records(store, jobs, replace(opts, level="page"))))
        return
    buffer: list[dict] = []
    for job in store.iter_jobs(opts.batch_id, chunk=opts.chunk):
        buffer.append(job)
        if len(buffer) >= opts.chunk:
            yield from _records(store, buffer, opts)
            buffer = []
    if buffer:
        yield from _records(store, buffer, opts)


def _records(store: Store, jobs: list[dict], opts: ExportOptions) -> Iterator[dict[str, Any]]:
    source = {job["id"]: job["duplicate_of"] or job["id"] for job in jobs}
    regions = store.regions_for(sorted(set(source.values())))
    for job in jobs:
        found = regions.get(source[job["id"]], [])
        if opts.level == "word":
            yield from _word_records(job, found)
        elif opts.level == "region":
            for region in found:
                yield {
                    "job_id": job["id"],
                    "path": shown_path(job["path"]),
                    "path_bytes": path_bytes(job["path"]),
                    **{
                        k: region[k]
                        for k in ("page", "block", "paragraph", "line", "idx", "text", "confidence")
                    },
                    **{k: round(region[k], 1) for k in ("x0", "y0", "x1", "y1")},
                    "quad": region["quad"],
                }
        else:
            yield _page_record(job, found, opts)


def _word_records(job: dict, regions: list[dict]) -> Iterator[dict[str, Any]]:
    for region in regions:
        result = RegionResult.from_row(region)
        for number, word in enumerate(words_of(result)):
            yield {
                "job_id": job["id"],
                "path": shown_path(job["path"]),
                "path_bytes": path_bytes(job["path"]),
                "page": result.page,
                "line": result.line,
                "idx": result.idx,
                "word": number,
                "text": word.text,
                "confidence": round(word.confidence, 4),
                **dict(zip(("x0", "y0", "x1", "y1"), (round(v, 1) for v in word.box), strict=True)),
            }


def _file_record(jobs: list[dict], pages: list[dict[str, Any]]) -> dict[str, Any]:
    """One record per file: its pages' records joined (text with a blank line between
    pages), with the status of the whole (done, partial or failed) and each failed page's
    reason."""
    first = pages[0]
    finished = [p for p in pages if p["status"] in ("done", "duplicate")]
    statuses = {p["status"] for p in pages}
    if len(statuses) == 1:  # every page alike (a one-page file: its page's status)
        status = statuses.pop()
    elif statuses & {"queued", "running"}:
        status = "queued"
    else:
        status = "done" if len(finished) == len(pages) else "partial" if finished else "failed"
    confidences = [p["mean_confidence"] for p in finished if p["mean_confidence"] is not None]
    seconds = [p["seconds"] for p in pages if p["seconds"] is not None]
    errors = {p["page"]: p["error"] for p in pages if p["error"]}
    return {
        "job_id": first["job_id"],  # its first page's job
        "path": first["path"],
        "path_bytes": first["path_bytes"],
        "sha256": first["sha256"],
        "status": status,
        "error": "; ".join(f"page {n + 1}: {e}" for n, e in errors.items())
        if len(pages) > 1
        else first["error"],
        "duplicate_of": first["duplicate_of"],
        # a document's page count; results recorded before one job per page read a
        # multi-page file in one job, which counted its pages in `pages`
        "pages": max(max(j["doc_pages"] for j in jobs), sum(j["pages"] or 0 for j in jobs)),
        "pages_done": len(finished),
        "errors": errors or None,
        "regions": sum(p["regions"] for p in pages),
        "mean_confidence": round(sum(confidences) / len(confidences), 4) if confidences else None,
        "engine": first["engine"],
        "model": first["model"],
        "precision": first["precision"],
        "seconds": round(sum(seconds), 4) if seconds else None,
        "text": "\n\n".join(p["text"] for p in finished if p["text"]),
        "jobs": [p["job_id"] for p in pages],
        "worker": first["worker"],
        "attempts": max(p["attempts"] for p in pages),
        "options": first["options"],
        "provenance": first["provenance"],
        "boxes": [box for p in finished for box in p["boxes"]],
    }


def _page_record(job: dict, regions: list[dict], opts: ExportOptions) -> dict[str, Any]:
    confidences = [r["confidence"] for r in regions]
    options = job.get("options") or {}
    timings = job.get("timings") or {}
    return {
        "job_id": job["id"],
        "path": shown_path(job["path"]),
        "path_bytes": path_bytes(job["path"]),
        "page": job["page"],
        "sha256": job["sha256"],
        "status": job["status"],
        "error": job["error"],
        "regions": len(regions),
        "mean_confidence": round(sum(confidences) / len(confidences), 4) if confidences else None,
        "engine": job["engine"],
        "model": job["model"],
        "precision": options.get("precision"),
        "seconds": round(timings["total"], 4) if "total" in timings else None,
        "duplicate_of": job["duplicate_of"],
        "worker": job["worker"],
        "attempts": job["attempts"],
        "text": page_text(map(RegionResult.from_row, regions), join_hyphens=opts.dehyphenate),
        "options": options,
        "provenance": job.get("provenance"),
        "page_info": job.get("page_info"),
        "timings": timings,
        "boxes": [
            {k: r[k] for k in ("page", "idx", "text", "confidence", "quad")} for r in regions
        ],
    }


CSV_FIELDS = {
    "file": FILE_FIELDS,
    "page": PAGE_FIELDS,
    "region": REGION_FIELDS,
    "word": WORD_FIELDS,
}


def write_export(store: Store, out: IO[str], opts: ExportOptions) -> int:
    """Write every record to `out` in the chosen format; returns the record count."""
    records = iter_records(store, opts)
    if opts.fmt == "csv":
        return _write_csv(records, out, CSV_FIELDS[opts.level])
    if opts.fmt == "json":
        return _write_json_array(records, out)
    count = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


def _write_csv(records: Iterator[dict], out: IO[str], fields: list[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    count = 0
    for record in records:
        writer.writerow(record)
        count += 1
    return count


def _write_json_array(records: Iterator[dict], out: IO[str]) -> int:
    out.write("[")
    count = 0
    for record in records:
        out.write(",\n" if count else "\n")
        out.write(json.dumps(record, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
