"""Results storage: SQLAlchemy 2.x tables for batches, jobs and regions.

SQLite by default (WAL, busy timeout, write transactions `BEGIN IMMEDIATE` so two
worker processes never deadlock upgrading a read lock); any SQLAlchemy URL works, and
PostgreSQL is the one for several machines.

Exactly-once results: a redelivered job replaces its region rows in the same
transaction that marks it done, so a job killed after writing and redelivered never
leaves duplicates.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    case,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

if TYPE_CHECKING:
    from ocrq.config import EngineOptions

from ocrq.config import redact_url
from ocrq.errors import DatabaseUnavailable, UnknownJob
from ocrq.results import RegionResult

QUEUED, RUNNING, DONE, FAILED, DUPLICATE = "queued", "running", "done", "failed", "duplicate"
STATUSES = (QUEUED, RUNNING, DONE, FAILED, DUPLICATE)

# PostgreSQL advisory lock key held by a producer while it plans and records jobs
# (`Store.submitting`); any 64-bit number no other application on the database uses.
SUBMIT_LOCK = 0x6F637271_5375626D  # "ocrq" "Subm"


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Facts about the database itself: its `identity`, written once when it is made."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    roots: Mapped[list] = mapped_column(JSON)  # real paths submitted (older batches: as given)
    patterns: Mapped[list] = mapped_column(JSON)
    options: Mapped[dict] = mapped_column(JSON)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer, default=0)
    # engine:model:precision[:small-caps-lower]; same bytes + same model_key = the same result
    model_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    engine: Mapped[str] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(Text, nullable=True)
    options: Mapped[dict] = mapped_column(JSON)  # EngineOptions actually used
    provenance: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    timings: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # seconds per stage
    pages: Mapped[int | None] = mapped_column(Integer, nullable=True)  # pages it read
    # A document of many pages (a PDF, a multi-page TIFF) is one job per page: `page` is
    # the job's page of the file (from 0), `doc_pages` how many the file has.
    page: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    doc_pages: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # the page as read: width, height (pixels), dpi, source (image | embedded |
    # rasterized | pdf-text), size_pt (a PDF page's size in points)
    page_info: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    enqueued_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_jobs_sha_model", "sha256", "model_key"),)


class RegionRow(Base):
    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    page: Mapped[int] = mapped_column(Integer)
    idx: Mapped[int] = mapped_column(Integer)  # reading order within the page
    line: Mapped[int] = mapped_column(Integer, default=0)  # visual line within the page
    quad: Mapped[list] = mapped_column(JSON)  # [[x, y] * 4], clockwise from top-left
    x0: Mapped[float] = mapped_column(Float)
    y0: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    block: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # layout block
    paragraph: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    words: Mapped[list | None] = mapped_column(JSON, nullable=True)  # RegionResult.words


@dataclass(frozen=True)
class NewJob:
    path: str
    sha256: str
    size: int
    status: str = QUEUED
    duplicate_of: int | None = None
    page: int = 0
    doc_pages: int = 1


# Columns added after the first release, with their SQL: `Store.create_tables` adds them
# to databases made before (create_all makes missing tables, never missing columns).
ADDED_COLUMNS = {
    "jobs": {
        "page": "INTEGER NOT NULL DEFAULT 0",
        "doc_pages": "INTEGER NOT NULL DEFAULT 1",
        "page_info": "JSON",
    },
    "regions": {
        "block": "INTEGER NOT NULL DEFAULT 0",
        "paragraph": "INTEGER NOT NULL DEFAULT 0",
        "words": "JSON",
    },
}


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own implicit BEGIN would defeat BEGIN IMMEDIATE below
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        # Readers (exports) take no write lock; writers take it up front so two
        # processes never both hold a read lock and deadlock upgrading it.
        if conn.get_execution_options().get("ocrq_read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def model_key(engine: str, model: str | None, precision: str, small_caps: str = "keep") -> str:
    """What makes two results of the same bytes differ. Small caps `keep`, the only
    setting before the option existed (and the default until `auto`), adds nothing, so
    keys recorded then still match the results they name."""
    key = f"{engine}:{model or 'default'}:{precision}"
    return key if small_caps == "keep" else f"{key}:small-caps-{small_caps}"


def options_key(options: EngineOptions) -> str:
    """`model_key` of the engine options a job is recorded with: the one place that says
    which of them make results differ. A `pdf_text` other than the default `auto` adds
    to it (it changes what a PDF page gives)."""
    key = model_key(options.engine, options.model, options.precision, options.small_caps)
    return key if options.pdf_text == "auto" else f"{key}:pdf-text-{options.pdf_text}"


class Store:
    """The results database. One per process; cheap to create, safe to share by forks
    only after `dispose()` (workers create theirs in `worker_process_init`)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 10}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine = create_engine(url, **kwargs)
        except Exception as exc:  # bad URL or missing driver
            raise DatabaseUnavailable(
                f"cannot open results database {redact_url(url)}: {exc}"
            ) from exc
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine)
        self._identity: str | None = None
        if create:
            self.create_tables()

    def create_tables(self) -> None:
        try:
            Base.metadata.create_all(self.engine)
            self._add_missing_columns()
        except OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot reach results database {redact_url(self.url)}: {exc.orig}"
            ) from exc

    def _add_missing_columns(self) -> None:
        """Bring a database made by an earlier ocrq up to the current columns."""
        found = inspect(self.engine)
        for table, columns in ADDED_COLUMNS.items():
            have = {c["name"] for c in found.get_columns(table)}
            for name, ddl in columns.items():
                if name not in have:
                    try:
                        with self.write() as conn:
                            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))
                    except (OperationalError, ProgrammingError):
                        # another process added it meanwhile: look again
                        if name not in {c["name"] for c in inspect(self.engine).get_columns(table)}:
                            raise

    @property
    def identity(self) -> str:
        """This database's identity: a uuid written once, the first time anyone asks
        (databases made before it existed get theirs then). Every queue message carries
        it, so a worker reading another database can tell the job is not its own."""
        if self._identity is None:
            self._identity = self._read_identity() or self._write_identity()
        return self._identity

    def _read_identity(self) -> str | None:
        with self.read() as conn:
            return conn.execute(select(Meta.value).where(Meta.key == "identity")).scalar()

    def _write_identity(self) -> str:
        try:
            with self.write() as conn:
                conn.execute(Meta.__table__.insert().values(key="identity", value=uuid.uuid4().hex))
        except IntegrityError:
            pass  # another process wrote it first: theirs stands
        identity = self._read_identity()
        assert identity is not None
        return identity

    def dispose(self) -> None:
        self.engine.dispose()

    def where(self) -> str:
        """Which database this is, safe to print: a SQLite file by its absolute path (a
        relative `sqlite:///results.db` is relative to each process's own folder), any
        other by its URL without the password."""
        if self.engine.dialect.name == "sqlite" and self.engine.url.database not in (
            None,
            "",
            ":memory:",
        ):
            return f"the SQLite file {os.path.abspath(self.engine.url.database)}"
        return redact_url(self.url)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def submitting(self) -> Iterator[Connection]:
        """A write transaction that one producer at a time holds: planning (which files are
        known) and recording (the new job rows) inside it cannot interleave with another
        producer's, so two `ocrq submit` of one folder record each file once. SQLite
        writers are serialized already (BEGIN IMMEDIATE); PostgreSQL takes a transaction
        advisory lock that only producers ask for (workers never wait on it)."""
        with self.write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SUBMIT_LOCK})
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(ocrq_read_only=True) as conn, conn.begin():
            yield conn

    # ---- producer side -------------------------------------------------------------

    def create_batch(self, roots: list[str], patterns: list[str], options: dict) -> int:
        with self.write() as conn:
            result = conn.execute(
                Batch.__table__.insert().values(
                    created_at=time.time(), roots=roots, patterns=patterns, options=options
                )
            )
            return int(result.inserted_primary_key[0])

    def add_jobs(
        self,
        batch_id: int,
        jobs: Sequence[NewJob],
        options: dict,
        key: str,
        conn: Connection | None = None,
    ) -> list[int]:
        """Insert job rows in one transaction (one multi-row INSERT ... RETURNING per
        few hundred rows), or in `conn`'s; returns their ids in input order."""
        if not jobs:
            return []
        now = time.time()
        rows = [
            {
                "batch_id": batch_id,
                "path": job.path,
                "sha256": job.sha256,
                "size": job.size,
                "model_key": key,
                "status": job.status,
                "duplicate_of": job.duplicate_of,
                "page": job.page,
                "doc_pages": job.doc_pages,
                "engine": options["engine"],
                "model": options.get("model"),
                "options": options,
                "created_at": now,
                "attempts": 0,
            }
            for job in jobs
        ]
        statement = Job.__table__.insert().returning(
            Job.__table__.c.id, sort_by_parameter_order=True
        )
        with self._within(conn) as tx:
            return [int(row[0]) for row in tx.execute(statement, rows)]

    @contextmanager
    def _within(self, conn: Connection | None, read: bool = False) -> Iterator[Connection]:
        """`conn` when the caller holds a transaction, else a new one of its own."""
        if conn is not None:
            yield conn
            return
        with self.read() if read else self.write() as own:
            yield own

    def known_jobs(
        self, key: str, sha256s: Iterable[str], conn: Connection | None = None
    ) -> dict[str, list[dict]]:
        """Existing jobs for these contents with this model, by sha256."""
        found: dict[str, list[dict]] = {}
        shas = list(set(sha256s))
        with self._within(conn, read=True) as tx:
            for start in range(0, len(shas), 500):
                chunk = shas[start : start + 500]
                rows = tx.execute(
                    select(Job.id, Job.path, Job.page, Job.sha256, Job.status, Job.enqueued_at)
                    .where(Job.model_key == key, Job.sha256.in_(chunk))
                    .order_by(Job.id)
                ).mappings()
                for row in rows:
                    found.setdefault(row["sha256"], []).append(dict(row))
        return found

    def claim_unsent(self, job_ids: Sequence[int]) -> list[int]:
        """Mark as published those of `job_ids` that no one has published yet, and return
        them: the ids this caller must now publish. Two producers racing over the same
        jobs each get their own share, so no job is published twice."""
        claimed: list[int] = []
        now = time.time()
        with self.write() as conn:
            for start in range(0, len(job_ids), 500):
                rows = conn.execute(
                    update(Job)
                    .where(Job.id.in_(job_ids[start : start + 500]), Job.enqueued_at.is_(None))
                    .values(enqueued_at=now)
                    .returning(Job.id)
                )
                claimed += [row[0] for row in rows]
        wanted = set(claimed)
        return [job_id for job_id in job_ids if job_id in wanted]

    def unclaim(self, job_ids: Sequence[int]) -> None:
        """Publishing `job_ids` failed: mark them unpublished again (a resumed submit or
        `ocrq retry --lost` sends them)."""
        self._set_enqueued(job_ids, None)

    def mark_enqueued(self, job_ids: Sequence[int]) -> None:
        self._set_enqueued(job_ids, time.time())

    def _set_enqueued(self, job_ids: Sequence[int], when: float | None) -> None:
        with self.write() as conn:
            for start in range(0, len(job_ids), 500):
                conn.execute(
                    update(Job)
                    .where(Job.id.in_(job_ids[start : start + 500]))
                    .values(enqueued_at=when)
                )

    def requeue_failed(self, batch_id: int | None = None, engine: str | None = None) -> list[int]:
        """Failed jobs back to queued (for `ocrq retry --failed`); returns their ids.
        With `engine`, only that engine's jobs: each engine has its own queue."""
        with self.write() as conn:
            query = select(Job.id).where(Job.status == FAILED)
            if batch_id is not None:
                query = query.where(Job.batch_id == batch_id)
            if engine is not None:
                query = query.where(Job.engine == engine)
            ids = [row[0] for row in conn.execute(query)]
            if ids:
                conn.execute(
                    update(Job)
                    .where(Job.id.in_(ids))
                    .values(status=QUEUED, error=None, enqueued_at=None)
                )
        return ids

    def pending_unsent(self) -> list[int]:
        """Queued jobs whose message was never published (an interrupted submit)."""
        with self.read() as conn:
            rows = conn.execute(
                select(Job.id).where(Job.status == QUEUED, Job.enqueued_at.is_(None))
            )
            return [row[0] for row in rows]

    # ---- worker side ---------------------------------------------------------------

    def get_job(self, job_id: int) -> dict | None:
        with self.read() as conn:
            row = conn.execute(select(Job.__table__).where(Job.id == job_id)).mappings().first()
            return dict(row) if row is not None else None

    def start_job(self, job_id: int, worker: str) -> dict | None:
        """Claim a job for a run; returns the job, or None when it is already finished
        (a redelivered message whose work was written before the worker died). Raises
        `UnknownJob` when there is no such job here: the message came from a producer
        recording jobs in another database."""
        with self.write() as conn:
            row = (
                conn.execute(
                    select(Job.__table__, Batch.roots.label("batch_roots"))
                    .join(Batch, Batch.id == Job.batch_id)
                    .where(Job.id == job_id)
                )
                .mappings()
                .first()
            )
            if row is None:
                raise UnknownJob(
                    f"job {job_id} is not in this worker's results database "
                    f"({self.where()}): the producer that queued it records jobs in "
                    "another one. Start workers with the producer's OCRQ_DB_URL, then "
                    "run `ocrq retry --lost` where you submitted to send its jobs again."
                )
            if row["status"] in (DONE, DUPLICATE):
                return None
            conn.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    status=RUNNING,
                    attempts=Job.attempts + 1,
                    started_at=time.time(),
                    worker=worker,
                )
            )
            job = dict(row)
            job["attempts"] += 1
            return job

    def finish_job(
        self,
        job_id: int,
        regions: Sequence[RegionResult],
        *,
        pages: int,
        timings: dict[str, float],
        provenance: dict,
        options: dict,
        page_info: dict | None = None,
    ) -> None:
        """Replace the job's regions and mark it done, in one transaction."""
        with self.write() as conn:
            conn.execute(delete(RegionRow).where(RegionRow.job_id == job_id))
            if regions:
                conn.execute(
                    RegionRow.__table__.insert(), [_region_row(job_id, r) for r in regions]
                )
            conn.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    status=DONE,
                    error=None,
                    pages=pages,
                    page_info=page_info,
                    timings=timings,
                    provenance=provenance,
                    options=options,
                    finished_at=time.time(),
                )
            )

    def fail_job(self, job_id: int, reason: str, *, timings: dict | None = None) -> None:
        with self.write() as conn:
            conn.execute(delete(RegionRow).where(RegionRow.job_id == job_id))
            conn.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    status=FAILED, error=reason[:2000], timings=timings, finished_at=time.time()
                )
            )

    # ---- status and export ---------------------------------------------------------

    def counts(self, batch_id: int | None = None) -> dict[str, int]:
        with self.read() as conn:
            query = select(Job.status, func.count()).group_by(Job.status)
            if batch_id is not None:
                query = query.where(Job.batch_id == batch_id)
            found = dict(conn.execute(query).all())
        return {status: int(found.get(status, 0)) for status in STATUSES}

    def document_counts(self, batch_id: int | None = None) -> dict[str, int]:
        """Documents (files) by state: `open` (a page still queued or running), `done`
        (every page read), `partial` (some pages failed), `failed` (every page failed)."""
        finished = case((Job.status.in_((DONE, DUPLICATE)), 1), else_=0)
        failed = case((Job.status == FAILED, 1), else_=0)
        per_doc = select(
            func.count().label("n"), func.sum(finished).label("ok"), func.sum(failed).label("bad")
        ).group_by(Job.batch_id, Job.path)
        if batch_id is not None:
            per_doc = per_doc.where(Job.batch_id == batch_id)
        doc = per_doc.subquery()
        closed = doc.c.ok + doc.c.bad == doc.c.n
        query = select(
            func.sum(case((~closed, 1), else_=0)),
            func.sum(case((closed & (doc.c.bad == 0), 1), else_=0)),
            func.sum(case((closed & (doc.c.bad > 0) & (doc.c.ok > 0), 1), else_=0)),
            func.sum(case((closed & (doc.c.ok == 0), 1), else_=0)),
        )
        with self.read() as conn:
            row = conn.execute(query).one()
        return {
            k: int(v or 0) for k, v in zip(("open", "done", "partial", "failed"), row, strict=True)
        }

    def pending_engines(self, batch_id: int | None = None) -> list[str]:
        """Engines with queued or running jobs (each has its own broker queue)."""
        with self.read() as conn:
            query = select(Job.engine).where(Job.status.in_((QUEUED, RUNNING))).distinct()
            if batch_id is not None:
                query = query.where(Job.batch_id == batch_id)
            return sorted(engine for (engine,) in conn.execute(query))

    def iter_jobs(self, batch_id: int | None = None, chunk: int = 500) -> Iterator[dict]:
        """Jobs in id order, streamed in keyset-paginated chunks (never all in memory)."""
        last = 0
        while True:
            with self.read() as conn:
                query = select(Job.__table__).where(Job.id > last).order_by(Job.id).limit(chunk)
                if batch_id is not None:
                    query = query.where(Job.batch_id == batch_id)
                rows = [dict(r) for r in conn.execute(query).mappings()]
            if not rows:
                return
            yield from rows
            last = rows[-1]["id"]

    def iter_documents(self, batch_id: int | None = None, chunk: int = 100) -> Iterator[list[dict]]:
        """Documents (a file of a batch: one job per page) in the order they were recorded,
        each as its jobs ordered by page, with its batch's `roots`; streamed `chunk`
        documents at a time."""
        last = 0
        while True:
            first = func.min(Job.id)
            query = select(Job.batch_id, Job.path, first).group_by(Job.batch_id, Job.path)
            if batch_id is not None:
                query = query.where(Job.batch_id == batch_id)
            with self.read() as conn:
                docs = conn.execute(query.having(first > last).order_by(first).limit(chunk)).all()
                if not docs:
                    return
                jobs = conn.execute(
                    select(Job.__table__, Batch.roots.label("batch_roots"))
                    .join(Batch, Batch.id == Job.batch_id)
                    .where(Job.path.in_({d[1] for d in docs}))
                    .where(Job.batch_id.in_({d[0] for d in docs}))
                    .order_by(Job.page, Job.id)
                ).mappings()
                by_doc: dict[tuple[int, str], list[dict]] = {(d[0], d[1]): [] for d in docs}
                for job in jobs:
                    pages = by_doc.get((job["batch_id"], job["path"]))
                    if pages is not None:
                        pages.append(dict(job))
            yield from by_doc.values()
            last = docs[-1][2]

    def regions_for(self, job_ids: Sequence[int]) -> dict[int, list[dict]]:
        if not job_ids:
            return {}
        out: dict[int, list[dict]] = {job_id: [] for job_id in job_ids}
        with self.read() as conn:
            rows = conn.execute(
                select(RegionRow.__table__)
                .where(RegionRow.job_id.in_(list(job_ids)))
                .order_by(RegionRow.job_id, RegionRow.page, RegionRow.idx)
            ).mappings()
            for row in rows:
                out[row["job_id"]].append(dict(row))
        return out


def _region_row(job_id: int, region: RegionResult) -> dict:
    x0, y0, x1, y1 = region.bbox
    return {
        "job_id": job_id,
        "page": region.page,
        "idx": region.idx,
        "line": region.line,
        "quad": [[round(float(x), 1), round(float(y), 1)] for x, y in region.quad],
        "x0": x0,
        "y0": y0,
        "x1": x1,
        "y1": y1,
        "text": region.text,
        "confidence": float(region.confidence),
        "block": region.block,
        "paragraph": region.paragraph,
        "words": [list(w) for w in region.words] if region.words else None,
    }


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


_B64_PREFIX = "fsb64:"


def encode_path(path: str) -> str:
    """A file path as storable text. Names that are not valid UTF-8 (surrogate-escaped
    by the OS layer) cannot go into a TEXT column, so they are stored as base64 of the
    raw bytes; every other path is stored as is, readable."""
    import base64

    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return _B64_PREFIX + base64.b64encode(os.fsencode(path)).decode("ascii")


def decode_path(stored: str) -> str:
    import base64

    if stored.startswith(_B64_PREFIX):
        return os.fsdecode(base64.b64decode(stored[len(_B64_PREFIX) :]))
    return stored
