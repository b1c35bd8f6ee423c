"""What came out of a fault-injection run, read from the results database alone: every
job final exactly once, none lost, no duplicated region rows (`audit`), and the report
row each fault test prints. The services and processes these tests run come from
`tests/helpers.py`, the page files from `tests/fixtures_text.py`.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ocrq.storage import DONE, FAILED, Store
from tests.helpers import FINAL

# Small knobs for tests: a dead worker's messages come back within VISIBILITY +
# RESTORE_INTERVAL seconds (the defaults are 600 s / 10 s, see worker/config.py).
FAST_RECOVERY = {
    "OCRQ_VISIBILITY_TIMEOUT": "8",
    "OCRQ_RESTORE_INTERVAL": "1",
    # A broker outage can eat a message kombu had just popped (BRPOP) but not yet
    # recorded as unacked; the workers' lost-message check is what brings it back.
    "OCRQ_RECONCILE_INTERVAL": "3",
    "OCRQ_RECONCILE_GRACE": "5",
}


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def running_jobs(db_url: str) -> list[dict]:
    store = Store(db_url, create=False)
    try:
        return [j for j in store.iter_jobs() if j["status"] == "running"]
    finally:
        store.dispose()


@dataclass
class Audit:
    """What came out of a run, from the results database alone."""

    submitted: int
    status: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    lost: list[int] = field(default_factory=list)  # submitted but not final
    duplicated: int = 0  # region rows beyond the first per (job, page, idx)
    attempts: dict[int, int] = field(default_factory=dict)
    workers: set[str] = field(default_factory=set)
    regions: dict[int, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.status[DONE]

    @property
    def failed(self) -> int:
        return self.status[FAILED]

    def row(self, fault: str) -> str:
        reasons = "; ".join(f"{k} x{v}" for k, v in sorted(self.reasons.items())) or "-"
        return (
            f"| {fault} | {self.submitted} | {self.done} | {self.failed} ({reasons}) | "
            f"{len(self.lost)} | {self.duplicated} |"
        )


def audit(db_url: str, job_ids: Iterable[int]) -> Audit:
    from sqlalchemy import func, select

    from ocrq.storage import RegionRow

    wanted = set(job_ids)
    result = Audit(submitted=len(wanted))
    store = Store(db_url, create=False)
    try:
        for job in store.iter_jobs():
            if job["id"] not in wanted:
                continue
            result.status[job["status"]] += 1
            result.attempts[job["id"]] = job["attempts"]
            if job["worker"]:
                result.workers.add(job["worker"])
            if job["status"] == FAILED:
                result.reasons[_reason_kind(job["error"] or "")] += 1
            if job["status"] not in FINAL:
                result.lost.append(job["id"])
        with store.read() as conn:
            dup_rows = conn.execute(
                select(RegionRow.job_id, RegionRow.page, RegionRow.idx, func.count())
                .group_by(RegionRow.job_id, RegionRow.page, RegionRow.idx)
                .having(func.count() > 1)
            ).all()
            result.duplicated = sum(row[3] - 1 for row in dup_rows if row[0] in wanted)
            per_job = conn.execute(
                select(RegionRow.job_id, func.count()).group_by(RegionRow.job_id)
            ).all()
            result.regions = {j: n for j, n in per_job if j in wanted}
    finally:
        store.dispose()
    missing = wanted - set(result.attempts)
    result.lost.extend(sorted(missing))
    return result


def _reason_kind(error: str) -> str:
    """The reason without its per-file details, for the summary table."""
    return error.split(":")[0][:60]


def print_row(fault: str, result: Audit) -> None:
    # Shown with `pytest -s` (and collected in docs/faults.md): the report table row.
    print("\nFAULT-TABLE " + result.row(fault))


def job_texts(db_url: str) -> dict[str, str]:
    """{path: the file's recognized text (its done pages in page order, regions in reading
    order, space-joined)}."""
    store = Store(db_url, create=False)
    try:
        jobs = sorted((j for j in store.iter_jobs() if j["status"] == DONE), key=_page_order)
        regions = store.regions_for([j["id"] for j in jobs])
        texts: dict[str, list[str]] = {}
        for j in jobs:
            texts.setdefault(j["path"], []).extend(r["text"] for r in regions[j["id"]])
        return {path: " ".join(parts) for path, parts in texts.items()}
    finally:
        store.dispose()


def _page_order(job: dict) -> tuple[str, int]:
    return job["path"], job["page"]


def max_cer(db_url: str, truth: dict[str, str]) -> float:
    """The worst page CER: a lost line or a duplicated region shows up here as well."""
    from ocrq.scoring import cer

    texts = job_texts(db_url)
    return max(cer(texts.get(path, ""), ref.replace("\n", " ")) for path, ref in truth.items())
