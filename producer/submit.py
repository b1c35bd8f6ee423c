"""Submission: walk -> hash -> plan (dedupe, resume) -> job rows; the rows' ids are then
published by `ocrq.queue.Enqueuer`.

Dedupe: the same bytes with the same model key are done once. A second path with the
same content becomes a `duplicate` job pointing at the first (exported with its text).
Resume: re-running a submit only enqueues what is not done; a job whose row exists but
whose message was never published (an interrupted submit) is published now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy.engine import Connection

from ocrq.config import EngineOptions
from ocrq.storage import DONE, DUPLICATE, FAILED, QUEUED, NewJob, Store, options_key


@dataclass(frozen=True)
class HashedFile:
    path: str
    sha256: str
    size: int
    pages: int = 1  # a PDF's or multi-page TIFF's page count: one job per page


@dataclass
class Plan:
    new_jobs: list[NewJob] = field(default_factory=list)
    resend: list[int] = field(default_factory=list)  # existing ids never published
    done_already: int = 0
    in_flight: int = 0  # queued earlier and published: still in the broker
    failed_earlier: int = 0  # left alone; `ocrq retry --failed` re-enqueues them

    def merge(self, other: Plan) -> None:
        """Add `other`'s decisions (a later chunk of the same submit) to these."""
        self.new_jobs += other.new_jobs
        self.resend += other.resend
        self.done_already += other.done_already
        self.in_flight += other.in_flight
        self.failed_earlier += other.failed_earlier


def plan_and_record(
    store: Store,
    batch_id: int,
    files: Sequence[HashedFile],
    options: EngineOptions,
    force: bool,
    chunk: int = 1000,
) -> tuple[Plan, list[int]]:
    """Plan and record `files`, `chunk` files per transaction that one producer at a time
    holds (`Store.submitting`): a second `ocrq submit` of the same folder at the same time
    finds the first one's rows and counts those files as queued already, instead of
    recording them again. Returns the whole plan and the ids to publish."""
    plan, to_send = Plan(), []
    key = options_key(options)
    for start in range(0, len(files), chunk):
        with store.submitting() as conn:
            part = plan_jobs(store, files[start : start + chunk], key, force, conn)
            to_send += record_jobs(store, batch_id, part, options, conn)
        plan.merge(part)
    return plan, to_send


def plan_jobs(
    store: Store,
    files: Sequence[HashedFile],
    key: str,
    force: bool,
    conn: Connection | None = None,
) -> Plan:
    """Decide, per page of each file, whether it becomes a new job, a duplicate, a resend
    or nothing: dedupe and resume work per page, so an interrupted 300-page document
    re-runs only the pages not done."""
    plan = Plan()
    known = {} if force else store.known_jobs(key, (f.sha256 for f in files), conn)
    first_path: dict[tuple[str, int], str] = {}  # (sha256, page) -> first path this batch
    for f in files:
        for page in range(f.pages):
            existing = [j for j in known.get(f.sha256, []) if j["page"] == page]
            plan_page(plan, f, page, existing, first_path)
    return plan


def plan_page(
    plan: Plan,
    f: HashedFile,
    page: int,
    existing: list[dict],
    first_path: dict[tuple[str, int], str],
) -> None:
    same_path = [j for j in existing if j["path"] == f.path]
    if same_path:
        job = same_path[-1]
        if job["status"] in (DONE, DUPLICATE):
            plan.done_already += 1
        elif job["status"] == FAILED:
            plan.failed_earlier += 1
        elif job["status"] == QUEUED and job["enqueued_at"] is None:
            plan.resend.append(job["id"])
        else:
            plan.in_flight += 1
        return
    new = NewJob(f.path, f.sha256, f.size, page=page, doc_pages=f.pages)
    original = next((j for j in existing if j["status"] in (DONE, QUEUED, "running")), None)
    if original is not None:
        plan.new_jobs.append(replace(new, status=DUPLICATE, duplicate_of=original["id"]))
    elif (f.sha256, page) in first_path:
        # duplicate of a job created in this very batch: linked after insert
        plan.new_jobs.append(replace(new, status=DUPLICATE))
    else:
        first_path[(f.sha256, page)] = f.path
        plan.new_jobs.append(new)


def record_jobs(
    store: Store,
    batch_id: int,
    plan: Plan,
    options: EngineOptions,
    conn: Connection | None = None,
) -> list[int]:
    """Insert the plan's jobs; returns the ids of the ones to enqueue (new first, resends)."""
    key = options_key(options)
    originals = [j for j in plan.new_jobs if j.status == QUEUED or j.duplicate_of is not None]
    ids = store.add_jobs(batch_id, originals, options.as_dict(), key, conn) if originals else []
    first = {
        (j.sha256, j.page): i for j, i in zip(originals, ids, strict=True) if j.status == QUEUED
    }
    in_batch_dups = [
        replace(j, duplicate_of=first[(j.sha256, j.page)])
        for j in plan.new_jobs
        if j.status == DUPLICATE and j.duplicate_of is None
    ]
    if in_batch_dups:
        store.add_jobs(batch_id, in_batch_dups, options.as_dict(), key, conn)
    to_send = [i for j, i in zip(originals, ids, strict=True) if j.status == QUEUED]
    return to_send + plan.resend
