"""What the server reads back from the results database: documents (the jobs of one file
in one batch, one per page) as JSON, page jobs, and the status page's snapshot.

A document's id is the id of its first job (its page 1): `GET /documents/{id}` finds the
document's batch and path through it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, func, select

from ocrq.results import PageResult, page_text, words_of
from ocrq.storage import DONE, DUPLICATE, FAILED, QUEUED, RUNNING, Batch, Job, Store, decode_path
from producer.export_documents import document_pages

FINAL = (DONE, FAILED, DUPLICATE)
RECENT_JOBS = 50_000  # the status page looks at the last this many job ids for rates
RATE_WINDOW = 60.0  # s: pages/s is over the jobs finished in this window


def display_name(path: str) -> str:
    return os.path.basename(decode_path(path)) or path


# ---- documents ---------------------------------------------------------------------------


def document_jobs(store: Store, doc_id: int) -> list[dict] | None:
    """The jobs of the document `doc_id` names (any of its jobs' ids does), page order,
    with their batch's roots; None when there is no such job."""
    with store.read() as conn:
        row = conn.execute(select(Job.batch_id, Job.path).where(Job.id == doc_id)).first()
        if row is None:
            return None
        jobs = conn.execute(
            select(Job.__table__, Batch.roots.label("batch_roots"))
            .join(Batch, Batch.id == Job.batch_id)
            .where(Job.batch_id == row[0], Job.path == row[1])
            .order_by(Job.page, Job.id)
        ).mappings()
        return [dict(job) for job in jobs]


def originals(store: Store, jobs: Sequence[dict]) -> dict[int, dict]:
    """The jobs that `jobs`' duplicates stand for, by id."""
    wanted = {j["duplicate_of"] for j in jobs if j["status"] == DUPLICATE and j["duplicate_of"]}
    if not wanted:
        return {}
    with store.read() as conn:
        rows = conn.execute(select(Job.__table__).where(Job.id.in_(wanted))).mappings()
        return {row["id"]: dict(row) for row in rows}


def effective(job: dict, found: dict[int, dict]) -> dict:
    """The job whose outcome stands for `job`: its original when it is a duplicate."""
    if job["status"] == DUPLICATE and job["duplicate_of"] in found:
        return found[job["duplicate_of"]]
    return job


def document_state(statuses: Sequence[str]) -> str:
    """open (a page queued or running), done, failed (every page) or partial."""
    if any(s not in FINAL for s in statuses):
        return "open"
    failed = sum(1 for s in statuses if s == FAILED)
    if failed == 0:
        return "done"
    return "failed" if failed == len(statuses) else "partial"


def document_status(store: Store, jobs: Sequence[dict]) -> dict[str, Any]:
    """A document's state and its pages' states (no text): GET /documents/{id}."""
    found = originals(store, jobs)
    pages = []
    for job in jobs:
        own = effective(job, found)
        pages.append(
            {
                "page": job["page"] + 1,
                "job_id": job["id"],
                "status": own["status"],
                "duplicate_of": job["duplicate_of"],
                "error": own["error"],
            }
        )
    statuses = [p["status"] for p in pages]
    first = jobs[0]
    return {
        "id": first["id"],
        "batch_id": first["batch_id"],
        "name": display_name(first["path"]),
        "status": document_state(statuses),
        "page_count": len(jobs),
        "pages_done": sum(1 for s in statuses if s in (DONE, DUPLICATE)),
        "pages_failed": sum(1 for s in statuses if s == FAILED),
        "duplicate": all(j["status"] == DUPLICATE for j in jobs),
        "pages": pages,
        "links": _links(first["id"]),
    }


def _links(doc_id: int) -> dict[str, str]:
    return {
        "self": f"/documents/{doc_id}",
        "export": f"/documents/{doc_id}/export?format=json",
        "pdf": f"/documents/{doc_id}/export?format=pdf",
    }


def open_job_ids(store: Store, jobs: Sequence[dict]) -> set[int]:
    """What a caller waiting for the document waits on: its unfinished jobs, and the
    unfinished originals of its duplicates."""
    found = originals(store, jobs)
    return {
        effective(job, found)["id"]
        for job in jobs
        if effective(job, found)["status"] not in (DONE, FAILED)
    }


def document_json(store: Store, jobs: Sequence[dict]) -> dict[str, Any]:
    """The whole document: its status, text, and per page the lines with their boxes,
    words and confidences, the page's size and provenance."""
    out = document_status(store, jobs)
    found = originals(store, jobs)
    read, _missing = document_pages(store, jobs)
    by_page = {page.page: page for page in read}
    pages = []
    texts = []
    for job, summary in zip(jobs, out["pages"], strict=True):
        own = effective(job, found)
        page = by_page.get(job["page"]) if own["status"] == DONE else None
        entry = {
            **summary,
            "width": page.width if page else None,
            "height": page.height if page else None,
            "dpi": page.dpi if page else None,
            "source": (own.get("page_info") or {}).get("source"),
            "text": page_text(page.regions) if page else "",
            "lines": _lines(page) if page else [],
            "provenance": own.get("provenance"),
            "timings": own.get("timings"),
            "worker": own.get("worker"),
        }
        texts.append(entry["text"])
        pages.append(entry)
    out["pages"] = pages
    out["text"] = "\n\n".join(texts)
    out["provenance"] = next((p["provenance"] for p in pages if p["provenance"]), None)
    return out


def _lines(page: PageResult) -> list[dict[str, Any]]:
    lines = []
    for region in page.regions:
        xs = [float(p[0]) for p in region.quad]
        ys = [float(p[1]) for p in region.quad]
        lines.append(
            {
                "text": region.text,
                "confidence": round(float(region.confidence), 4),
                "box": [min(xs), min(ys), max(xs), max(ys)],
                "quad": [[float(x), float(y)] for x, y in region.quad],
                "line": region.line,
                "block": region.block,
                "paragraph": region.paragraph,
                "words": [
                    {
                        "text": word.text,
                        "box": [round(float(v), 1) for v in word.box],
                        "confidence": round(float(word.confidence), 4),
                    }
                    for word in words_of(region)
                ],
            }
        )
    return lines


def job_json(store: Store, job_id: int) -> dict[str, Any] | None:
    job = store.get_job(job_id)
    if job is None:
        return None
    with store.read() as conn:
        doc_id = conn.execute(
            select(func.min(Job.id)).where(Job.batch_id == job["batch_id"], Job.path == job["path"])
        ).scalar()
    own = effective(job, originals(store, [job]))
    return {
        "id": job["id"],
        "document_id": doc_id,
        "batch_id": job["batch_id"],
        "name": display_name(job["path"]),
        "page": job["page"] + 1,
        "status": job["status"],
        "result_status": own["status"],
        "duplicate_of": job["duplicate_of"],
        "error": own["error"],
        "attempts": job["attempts"],
        "worker": own["worker"],
        "timings": own["timings"],
        "provenance": own["provenance"],
        "created_at": job["created_at"],
        "started_at": own["started_at"],
        "finished_at": own["finished_at"],
        "links": {"document": f"/documents/{doc_id}"},
    }


def final_among(store: Store, job_ids: Sequence[int]) -> set[int]:
    """Those of `job_ids` that are finished (done or failed)."""
    found: set[int] = set()
    ids = list(job_ids)
    with store.read() as conn:
        for start in range(0, len(ids), 500):
            rows = conn.execute(
                select(Job.id).where(
                    Job.id.in_(ids[start : start + 500]), Job.status.in_((DONE, FAILED))
                )
            )
            found.update(row[0] for row in rows)
    return found


# ---- the status page ----------------------------------------------------------------------


def backlog(store: Store) -> int:
    """Pages queued or running, in the whole database."""
    with store.read() as conn:
        return int(
            conn.execute(select(func.count()).where(Job.status.in_((QUEUED, RUNNING)))).scalar()
            or 0
        )


def pages_per_second(store: Store, now: float | None = None) -> float:
    """Pages finished over the last minute, per second of the time they took (from the
    first one's start to the last one's end)."""
    now = time.time() if now is None else now
    with store.read() as conn:
        recent = (conn.execute(select(func.max(Job.id))).scalar() or 0) - RECENT_JOBS
        row = conn.execute(
            select(func.count(), func.min(Job.started_at), func.max(Job.finished_at)).where(
                Job.id > recent,
                Job.status.in_((DONE, FAILED)),
                Job.finished_at > now - RATE_WINDOW,
            )
        ).one()
    count, first, last = row
    if not count or first is None or last is None:
        return 0.0
    return count / max(last - first, 1e-3)


def snapshot(
    store: Store,
    uploads: str | None = None,
    batches: int = 8,
    documents: int = 40,
    failures: int = 20,
) -> dict:
    """The status page's data: recent batches with their documents' progress, recent
    failures with their reasons, jobs by status and the pages/s of the last minute.
    A batch whose root is `uploads` (the server's spool) is shown as "uploads"."""
    now = time.time()
    with store.read() as conn:
        counts = dict(conn.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        batch_rows = conn.execute(
            select(Batch.id, Batch.created_at, Batch.roots).order_by(Batch.id.desc()).limit(batches)
        ).all()
        ids = [b[0] for b in batch_rows]
        ok = case((Job.status.in_((DONE, DUPLICATE)), 1), else_=0)
        bad = case((Job.status == FAILED, 1), else_=0)
        run = case((Job.status == RUNNING, 1), else_=0)
        per_batch = {
            row[0]: row[1:]
            for row in conn.execute(
                select(
                    Job.batch_id,
                    func.count(),
                    func.sum(ok),
                    func.sum(bad),
                    func.count(func.distinct(Job.path)),
                    func.min(Job.started_at),
                    func.max(Job.finished_at),
                )
                .where(Job.batch_id.in_(ids))
                .group_by(Job.batch_id)
            ).all()
        }
        docs_by_batch: dict[int, list[dict]] = {i: [] for i in ids}
        for batch_id in ids:
            rows = conn.execute(
                select(
                    func.min(Job.id),
                    Job.path,
                    func.count(),
                    func.sum(ok),
                    func.sum(bad),
                    func.sum(run),
                )
                .where(Job.batch_id == batch_id)
                .group_by(Job.path)
                .order_by(func.min(Job.id).desc())
                .limit(documents)
            ).all()
            for doc_id, path, n, n_ok, n_bad, n_run in rows:
                n_ok, n_bad, n_run = int(n_ok or 0), int(n_bad or 0), int(n_run or 0)
                state = document_state(
                    [DONE] * n_ok + [FAILED] * n_bad + [QUEUED] * (n - n_ok - n_bad)
                )
                docs_by_batch[batch_id].append(
                    {
                        "id": doc_id,
                        "name": display_name(path),
                        "pages": n,
                        "done": n_ok,
                        "failed": n_bad,
                        "running": n_run,
                        "status": state,
                    }
                )
        failed_rows = conn.execute(
            select(Job.id, Job.batch_id, Job.path, Job.page, Job.error, Job.finished_at)
            .where(Job.status == FAILED)
            .order_by(Job.finished_at.desc())
            .limit(failures)
        ).all()
    out_batches = []
    for batch_id, created_at, roots in batch_rows:
        n, n_ok, n_bad, n_docs, first, last = per_batch.get(batch_id, (0, 0, 0, 0, None, None))
        n_ok, n_bad = int(n_ok or 0), int(n_bad or 0)
        span = (last - first) if first and last else 0.0
        out_batches.append(
            {
                "id": batch_id,
                "created_at": created_at,
                "source": _source(roots or [], uploads),
                "pages": n,
                "done": n_ok,
                "failed": n_bad,
                "documents": n_docs,
                "pages_per_second": round((n_ok + n_bad) / span, 3) if span > 0 else None,
                "document_list": docs_by_batch[batch_id],
            }
        )
    return {
        "time": now,
        "jobs": {s: int(counts.get(s, 0)) for s in (QUEUED, RUNNING, DONE, FAILED, DUPLICATE)},
        "pages_per_second": round(pages_per_second(store, now), 3),
        "batches": out_batches,
        "failures": [
            {
                "job_id": job_id,
                "batch_id": batch_id,
                "name": display_name(path),
                "page": page + 1,
                "reason": error or "",
                "finished_at": finished_at,
            }
            for job_id, batch_id, path, page, error, finished_at in failed_rows
        ],
    }


def _source(roots: list[str], uploads: str | None) -> str:
    if uploads is not None and roots == [uploads]:
        return "uploads"
    shown = ", ".join(os.path.basename(r.rstrip(os.sep)) or r for r in roots[:3])
    return shown + (f" and {len(roots) - 3} more" if len(roots) > 3 else "")


def worker_activity(store: Store, window: float = 300.0) -> dict[str, dict]:
    """Per worker id (host:pid:coreN): its running job, and pages it finished in the
    last `window` seconds with when it last finished one."""
    now = time.time()
    out: dict[str, dict] = {}
    with store.read() as conn:
        recent = (conn.execute(select(func.max(Job.id))).scalar() or 0) - RECENT_JOBS
        for worker, n, last in conn.execute(
            select(Job.worker, func.count(), func.max(Job.finished_at))
            .where(
                Job.id > recent,
                Job.worker.is_not(None),
                Job.status.in_((DONE, FAILED)),
                Job.finished_at > now - window,
            )
            .group_by(Job.worker)
        ).all():
            out[worker] = {"worker": worker, "pages_recent": n, "last_finished": last, "job": None}
        for worker, job_id, path, page, started in conn.execute(
            select(Job.worker, Job.id, Job.path, Job.page, Job.started_at).where(
                Job.id > recent, Job.status == RUNNING, Job.worker.is_not(None)
            )
        ).all():
            entry = out.setdefault(
                worker, {"worker": worker, "pages_recent": 0, "last_finished": None, "job": None}
            )
            entry["job"] = {
                "id": job_id,
                "name": display_name(path),
                "page": page + 1,
                "seconds": round(now - started, 1) if started else None,
            }
    return out
