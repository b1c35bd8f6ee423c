"""The server's work, apart from HTTP: take files (uploads or paths under the input roots),
record them as `ocrq submit` does (one batch, one job per page, the same dedupe), hand
the new jobs to the backend, and wait for documents to finish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import func, select

from ocrq.config import EngineOptions, Settings
from ocrq.inputs import is_under_roots
from ocrq.storage import Job, Store, options_key
from producer.collect import WalkRequest, collect
from producer.submit import HashedFile, plan_and_record
from server import records
from server.backends import LocalBackend, QueueBackend
from server.retention import Sweep, sweep
from server.uploads import Spool, UploadRejected

log = logging.getLogger("ocrq.serve")
WAIT_POLL = {"local": 0.5, "queue": 0.2}  # s between looks at waited-for jobs (local: kicked)


class Refused(Exception):
    """A request the server will not take now: `status` (400, 403, 404, 413, 429, 503)
    and, for 429/503, when to try again."""

    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class Upload:
    """One file of a request: a readable binary stream and the name the client gave."""

    stream: BinaryIO
    name: str | None


@dataclass
class Accepted:
    batch_id: int
    documents: list[dict] = field(default_factory=list)  # id, name, pages, jobs, duplicate
    queued: int = 0  # page jobs sent to workers
    duplicates: int = 0
    done_already: int = 0


@dataclass
class ServeConfig:
    settings: Settings
    workers: int
    spool_dir: Path
    token: str | None
    max_upload_bytes: int
    max_waiting: int
    max_backlog: int
    spool_keep_seconds: float = 24 * 3600.0  # an upload's file after its document finished
    spool_max_bytes: int = 5 * 1024**3  # past this, finished documents' files go first
    infer_timeout: float = 600.0  # s /infer holds a connection without a `timeout`

    @property
    def max_in_flight(self) -> int:
        """Requests served at once (uploads streaming in, /infer waiting, reads); more get
        503 with Retry-After from the guard."""
        return max(64, 4 * self.max_waiting)

    @property
    def sweep_interval(self) -> float:
        """s between looks at the spool: often enough that a file outlives its keep time
        by at most a quarter of it (and a minute)."""
        return min(60.0, max(1.0, self.spool_keep_seconds / 4))


class Service:
    def __init__(self, config: ServeConfig, backend: LocalBackend | QueueBackend) -> None:
        self.config = config
        self.settings = config.settings
        self.backend = backend
        self.store = Store(self.settings.db_url)
        self.spool = Spool(config.spool_dir, self.settings.limits)
        self.waiters = Waiters(self.store, WAIT_POLL[backend.mode])
        self.started_at = time.time()
        self.infer_waiting = 0  # /infer requests held open (the guard counts them)
        self._rate = 0.0
        self._snapshot: tuple[float, dict] | None = None
        self.spool_state = Sweep()
        self._sweeper: asyncio.Task | None = None

    # ---- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.waiters.bind(asyncio.get_running_loop())
        self.backend.start(self.waiters.kick_threadsafe)
        self.waiters.task = asyncio.create_task(self.waiters.run())
        self._sweeper = asyncio.create_task(self._sweep_spool())

    async def stop(self) -> None:
        for task in (self.waiters.task, self._sweeper):
            if task is not None:
                task.cancel()
        await asyncio.to_thread(self.backend.stop)
        self.spool.close()
        self.store.dispose()

    async def _sweep_spool(self) -> None:
        """Uploads' files the retention rule lets go (server/retention.py), now and then."""
        while True:
            try:
                self.spool_state = await asyncio.to_thread(self.sweep_spool)
            except Exception as exc:  # noqa: BLE001 - a busy database: look again next round
                log.warning("spool sweep failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.config.sweep_interval)

    def sweep_spool(self) -> Sweep:
        return sweep(
            self.spool.root,
            self.store,
            self.config.spool_keep_seconds,
            self.config.spool_max_bytes,
            lock=self.spool.lock,
        )

    # ---- taking work ----------------------------------------------------------------------

    def options(self, pdf_text: str | None) -> EngineOptions:
        return self.settings.engine.with_(pdf_text=pdf_text)

    def check_capacity(self) -> None:
        problem = self.backend.problem()
        if problem:
            raise Refused(503, f"cannot run jobs now: {problem}", retry_after=10)
        pending = records.backlog(self.store)
        if pending >= self.config.max_backlog:
            raise Refused(
                503,
                f"{pending} pages are queued or running (limit {self.config.max_backlog})",
                retry_after=self.retry_after(pending),
            )

    def retry_after(self, pages: int) -> int:
        """Seconds until `pages` pages are likely done, 1 to 60."""
        rate = max(self._rate, 0.5)
        return int(min(60, max(1, math.ceil(pages / rate))))

    def accept_uploads(
        self, uploads: Sequence[Upload], pdf_text: str | None = None, force: bool = False
    ) -> Accepted:
        """Spool, record and send `uploads` as one batch."""
        if not uploads:
            raise Refused(400, "no file given")
        self.check_capacity()
        if self.spool_state.over:
            raise Refused(
                503,
                f"the upload spool holds {self.spool_state.total} bytes of documents still "
                f"open (limit {self.config.spool_max_bytes}, OCRQ_SPOOL_MAX_BYTES)",
                retry_after=self.retry_after(records.backlog(self.store)),
            )
        spooled = []
        try:
            for upload in uploads:
                spooled.append(
                    self.spool.store(
                        upload.stream, upload.name, self.settings.limits.max_file_bytes
                    )
                )
        except UploadRejected as exc:
            for kept in spooled:  # the files before the refused one: no job will name them
                shutil.rmtree(Path(kept.path).parent, ignore_errors=True)
            raise Refused(exc.status, exc.reason) from None
        files = [HashedFile(s.path, s.sha256, s.size, s.pages) for s in spooled]
        return self._record(files, [str(self.spool.root)], [], self.options(pdf_text), force)

    def accept_paths(
        self,
        paths: Sequence[str],
        patterns: Sequence[str] = (),
        pdf_text: str | None = None,
        force: bool = False,
    ) -> Accepted:
        """Walk `paths` (each under OCRQ_INPUT_ROOTS) as `ocrq submit` does, as one batch."""
        roots = tuple(self.settings.limits.input_roots)
        if not roots:
            raise Refused(
                403,
                "paths are taken only under the configured input roots: set OCRQ_INPUT_ROOTS "
                "for `ocrq serve` (upload the files otherwise)",
            )
        real = []
        for given in paths:
            path = os.path.realpath(given)
            if not is_under_roots(path, roots):
                raise Refused(403, f"{given}: outside the configured input roots")
            if not os.path.exists(path):
                raise Refused(404, f"{given}: no such file or folder")
            real.append(path)
        if not real:
            raise Refused(400, "no path given")
        self.check_capacity()
        walk = WalkRequest(tuple(Path(p) for p in real), tuple(patterns), force=force)
        found = collect(walk, replace(self.settings.limits, input_roots=()))
        if not found.files:
            raise Refused(
                400, f"no file matched {', '.join(found.patterns)} under {', '.join(paths)}"
            )
        return self._record(
            found.files, real, list(walk.patterns or found.patterns), self.options(pdf_text), force
        )

    def _record(
        self,
        files: list[HashedFile],
        roots: list[str],
        patterns: list[str],
        options: EngineOptions,
        force: bool,
    ) -> Accepted:
        store = self.store
        batch_id = store.create_batch(roots, patterns, options.as_dict())
        plan, to_send = plan_and_record(store, batch_id, files, options, force)
        if to_send:
            try:
                self.backend.send(store, to_send)
            except Exception as exc:  # the broker went away: these jobs would wait forever
                for job_id in to_send:
                    store.fail_job(job_id, f"not sent to the workers: {type(exc).__name__}")
                raise Refused(503, f"cannot send jobs: {exc}", retry_after=10) from exc
        accepted = Accepted(
            batch_id,
            queued=len(to_send),
            duplicates=sum(1 for j in plan.new_jobs if j.status == "duplicate"),
            done_already=plan.done_already,
        )
        accepted.documents = self._documents(batch_id, files, options_key(options))
        return accepted

    def _documents(self, batch_id: int, files: list[HashedFile], key: str) -> list[dict]:
        with self.store.read() as conn:
            rows = conn.execute(
                select(Job.path, Job.id, Job.status)
                .where(Job.batch_id == batch_id)
                .order_by(Job.id)
            ).all()
        by_path: dict[str, list[tuple[int, str]]] = {}
        for path, job_id, status in rows:
            by_path.setdefault(path, []).append((job_id, status))
        docs = []
        for f in files:
            jobs = by_path.get(f.path)
            if jobs is None:  # the same path was done before (a paths batch): that document
                doc_id = self._earlier_document(f.path, key)
                jobs = [(doc_id, "done")] if doc_id else []
            docs.append(
                {
                    "id": jobs[0][0] if jobs else None,
                    "name": records.display_name(f.path),
                    "pages": f.pages,
                    "jobs": [job_id for job_id, _ in jobs],
                    "duplicate": bool(jobs) and all(s == "duplicate" for _, s in jobs),
                    "url": f"/documents/{jobs[0][0]}" if jobs else None,
                }
            )
        return docs

    def _earlier_document(self, path: str, key: str) -> int | None:
        with self.store.read() as conn:
            return conn.execute(
                select(func.min(Job.id))
                .where(Job.path == path, Job.model_key == key)
                .group_by(Job.batch_id)
                .order_by(Job.batch_id.desc())
                .limit(1)
            ).scalar()

    # ---- reading back ----------------------------------------------------------------------

    def wait_ids(self, doc_id: int) -> set[int]:
        jobs = records.document_jobs(self.store, doc_id) or []
        return records.open_job_ids(self.store, jobs)

    def snapshot(self) -> dict:
        """The status page's data, computed at most once a second for every viewer."""
        now = time.monotonic()
        if self._snapshot is not None and now - self._snapshot[0] < 1.0:
            return self._snapshot[1]
        data = records.snapshot(self.store, uploads=str(self.spool.root))
        activity = records.worker_activity(self.store)
        self._rate = data["pages_per_second"]
        data["mode"] = self.backend.mode
        data["server"] = self.backend.describe()
        data["problem"] = self.backend.problem()
        data["queue_depth"] = self.backend.depth()
        data["infer_waiting"] = self.infer_waiting
        data["infer_limit"] = self.config.max_waiting
        data["workers"] = self.backend.worker_states(activity)
        spool = self.spool_state
        data["spool"] = {"bytes": spool.total, "documents": spool.kept, "over": spool.over}
        self._snapshot = (now, data)
        return data


class Waiters:
    """Requests waiting for jobs to finish. One task looks at the database for all of
    them, every `interval` seconds and whenever the local pool says something happened."""

    def __init__(self, store: Store, interval: float) -> None:
        self.store = store
        self.interval = interval
        self.task: asyncio.Task | None = None
        self._waits: list[tuple[set[int], asyncio.Future]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._kick = asyncio.Event()

    def kick_threadsafe(self) -> None:
        loop, kick = self._loop, self._kick
        if loop is not None and kick is not None and not loop.is_closed():
            loop.call_soon_threadsafe(kick.set)

    async def wait(self, job_ids: set[int], timeout: float) -> bool:
        """True once every one of `job_ids` is done or failed; False after `timeout` s."""
        if not job_ids:
            return True
        assert self._loop is not None and self._kick is not None
        future = self._loop.create_future()
        entry = (set(job_ids), future)
        self._waits.append(entry)
        self._kick.set()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._waits.remove(entry)

    async def run(self) -> None:
        assert self._kick is not None
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.interval)
            self._kick.clear()
            if not self._waits:
                continue
            wanted = set().union(*(ids for ids, _ in self._waits))
            try:
                final = await asyncio.to_thread(records.final_among, self.store, sorted(wanted))
            except Exception:  # noqa: BLE001 - a busy database: look again next round
                continue
            for ids, future in list(self._waits):
                ids -= final
                if not ids and not future.done():
                    future.set_result(True)
