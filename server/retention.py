"""How long uploads stay in the spool.

An upload's file is what the workers read, and what its searchable PDF export is drawn
over (the original PDF's pages, or the image embedded as it is); the other exports (JSON,
text, hOCR, ALTO) come from the results database alone. So a document's file is kept:

- while any of its pages is queued or running: never removed then;
- after its last page finished (done or failed), for `keep_seconds` (OCRQ_SPOOL_KEEP_HOURS);
- and, while the spool's files take more than `max_bytes` (OCRQ_SPOOL_MAX_BYTES), finished
  documents' files go before that, oldest finished first.

A blob (`blobs/ab/<sha256>`, one per content) goes with the last document linked to it.
What nothing names (a folder whose jobs were never recorded, a stray temporary file) goes
after `ORPHAN_GRACE` seconds. When the files of open documents alone are over the bound,
`Sweep.over` says so and the server refuses new uploads (503) until they finish.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import case, func, select

from ocrq.storage import DONE, DUPLICATE, FAILED, Job, Store

ORPHAN_GRACE = 600.0  # s: a spooled file with no job row yet is still being recorded
FINAL = (DONE, FAILED, DUPLICATE)
CHUNK = 500  # paths per database query


@dataclass(frozen=True)
class SpooledDocument:
    folder: Path  # docs/<day>/<uuid>: the document's own folder
    path: Path  # the file in it, as its jobs name it
    blob: Path  # the content it is a link to
    size: int
    finished_at: float | None  # None: open (or no job names it)
    recorded: bool  # a job names it


@dataclass
class Sweep:
    removed: int = 0  # documents' files removed
    freed: int = 0  # bytes given back (blobs no document links to any more)
    kept: int = 0  # documents' files left
    total: int = 0  # bytes of the blobs left
    over: bool = False  # still over max_bytes: only open documents' files are left


def sweep(
    root: Path,
    store: Store,
    keep_seconds: float,
    max_bytes: int,
    lock: contextlib.AbstractContextManager | None = None,
    now: float | None = None,
) -> Sweep:
    """Remove what the rule above lets go from the spool at `root`. `lock` is held while
    files are removed (the spool holds it while it links a new upload to its blob)."""
    now = time.time() if now is None else now
    lock = lock or contextlib.nullcontext()
    blobs = _blobs(root)
    docs = list(_documents(root, store, blobs))
    result = Sweep(total=sum(size for _, size in blobs.values()))
    finished = sorted(
        (d for d in docs if d.finished_at is not None), key=lambda d: d.finished_at or 0.0
    )
    for doc in finished:
        expired = now - (doc.finished_at or now) > keep_seconds
        if not expired and result.total <= max_bytes:
            break
        with lock:
            freed = _remove(doc)
        result.removed += 1
        result.freed += freed
        result.total -= freed
    for doc in docs:
        if not doc.recorded and now - _mtime(doc.folder) > ORPHAN_GRACE:
            with lock:
                result.freed += _remove(doc)
            result.removed += 1
    with lock:
        _remove_empty_folders(root, now)
        result.freed += _remove_orphan_blobs(root, now) + _remove_stale_tmp(root, now)
    result.total = sum(size for _, size in _blobs(root).values())
    result.kept = len(docs) - result.removed
    result.over = result.total > max_bytes
    return result


# ---- what is there ---------------------------------------------------------------------


def _documents(
    root: Path, store: Store, blobs: dict[int, tuple[Path, int]]
) -> Iterator[SpooledDocument]:
    files = list(_doc_files(root))
    for start in range(0, len(files), CHUNK):
        chunk = files[start : start + CHUNK]
        states = _states(store, [str(path) for path in chunk])
        for path in chunk:
            state = states.get(str(path))
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            yield SpooledDocument(
                folder=path.parent,
                path=path,
                blob=blobs.get(stat.st_ino, (path, 0))[0],
                size=stat.st_size,
                finished_at=state,
                recorded=str(path) in states,
            )


def _doc_files(root: Path) -> Iterator[Path]:
    """docs/<day>/<uuid>/<name>: one file per folder."""
    for folder in sorted((root / "docs").glob("*/*")):
        names = list(folder.iterdir()) if folder.is_dir() else []
        if names:
            yield names[0]


def _states(store: Store, paths: Sequence[str]) -> dict[str, float | None]:
    """Per path some job names: when its last page finished, None while one is open."""
    open_count = func.sum(case((Job.status.in_(FINAL), 0), else_=1))
    last = func.max(func.coalesce(Job.finished_at, Job.created_at))
    with store.read() as conn:
        rows = conn.execute(
            select(Job.path, open_count, last).where(Job.path.in_(paths)).group_by(Job.path)
        ).all()
    return {path: (None if n_open else float(at)) for path, n_open, at in rows}


def _blobs(root: Path) -> dict[int, tuple[Path, int]]:
    """Each blob by its inode (the documents' files are links to them), with its size."""
    found = {}
    for blob in (root / "blobs").glob("*/*"):
        try:
            stat = blob.stat()
        except FileNotFoundError:
            continue
        found[stat.st_ino] = (blob, stat.st_size)
    return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


# ---- removing ----------------------------------------------------------------------------


def _remove(doc: SpooledDocument) -> int:
    """Remove the document's folder; its blob too when no other document links to it.
    Returns the bytes given back."""
    shutil.rmtree(doc.folder, ignore_errors=True)
    if doc.blob == doc.path:
        return doc.size
    return _remove_if_unlinked(doc.blob)


def _remove_if_unlinked(blob: Path) -> int:
    try:
        stat = blob.stat()
    except FileNotFoundError:
        return 0
    if stat.st_nlink > 1:
        return 0
    blob.unlink(missing_ok=True)
    return stat.st_size


def _remove_empty_folders(root: Path, now: float) -> None:
    """Document folders left empty, and day folders with nothing left in them."""
    for folder in (root / "docs").glob("*/*"):
        if folder.is_dir() and not any(folder.iterdir()) and now - _mtime(folder) > ORPHAN_GRACE:
            folder.rmdir()
    today = time.strftime("%Y-%m-%d")
    for day in (root / "docs").glob("*"):
        if day.is_dir() and day.name != today and not any(day.iterdir()):
            day.rmdir()


def _remove_orphan_blobs(root: Path, now: float) -> int:
    freed = 0
    for blob in (root / "blobs").glob("*/*"):
        if now - _mtime(blob) > ORPHAN_GRACE:
            freed += _remove_if_unlinked(blob)
    return freed


def _remove_stale_tmp(root: Path, now: float) -> int:
    freed = 0
    for tmp in (root / "tmp").glob("*"):
        if now - _mtime(tmp) > ORPHAN_GRACE:
            with contextlib.suppress(FileNotFoundError):
                freed += tmp.stat().st_size
                tmp.unlink()
    return freed
