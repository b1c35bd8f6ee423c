"""Uploads: spooled to a directory the workers read, never run, never served back.

Each upload is streamed to `SPOOL/tmp` while it is hashed, kept once per content as
`SPOOL/blobs/ab/<sha256>` (read-only), and hard-linked as the document's own file
`SPOOL/docs/<day>/<uuid>/<name>`: every upload is a document of its own (its own job
rows), and the same bytes twice cost the disk once. `<name>` is the client's file name
reduced to `[A-Za-z0-9._-]`, with a suffix from the content (a PDF is `.pdf` whatever it
was called): the exporters go by the suffix, the workers by the content.

Page counts are taken in a separate process (pdfium opens a PDF to count its pages; a
PDF that crashes it takes that process down, not the server).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import multiprocessing as mp
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from ocrq.config import InputLimits
from ocrq.documents import count_pages
from ocrq.errors import BadImage, InputRejected
from ocrq.images import magic_format

CHUNK = 1024 * 1024
SUFFIXES = {
    "PDF": ".pdf",
    "JPEG": ".jpg",
    "PNG": ".png",
    "TIFF": ".tif",
    "BMP": ".bmp",
    "GIF": ".gif",
    "WEBP": ".webp",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
COUNT_TIMEOUT = 30.0  # s to count a file's pages before it is left to the worker


class UploadRejected(Exception):
    """An upload refused at the door: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Spooled:
    path: str  # absolute: what the job rows name and the workers read
    name: str  # the stored name, for people
    sha256: str
    size: int
    pages: int
    note: str | None = None  # why the pages could not be counted (the worker will say)


def safe_name(client_name: str | None, head: bytes) -> str:
    """A file name safe on any disk and in any shell: the client's name reduced to
    `[A-Za-z0-9._-]` (at most 80 characters, no leading dot), with the content's suffix."""
    base = os.path.basename((client_name or "").replace("\\", "/"))
    stem, suffix = os.path.splitext(base)
    if "%PDF-" in head[:1024].decode("latin-1"):
        fmt: str | None = "PDF"
    else:
        fmt = magic_format(head)
    if fmt in SUFFIXES:
        suffix = SUFFIXES[fmt]
    suffix = _UNSAFE.sub("", suffix)[:10].lower()
    stem = _UNSAFE.sub("_", stem).strip("._")[:80] or "upload"
    return stem + (suffix if suffix.startswith(".") and len(suffix) > 1 else ".bin")


class Spool:
    def __init__(self, root: Path, limits: InputLimits) -> None:
        self.root = Path(os.path.realpath(root))
        for sub in ("tmp", "blobs", "docs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # the workers' limits for these files: the spool is their input root
        self.limits = replace(limits, input_roots=(str(self.root),), roots_from="the upload spool")
        self._counter: cf.ProcessPoolExecutor | None = None
        self._counter_lock = threading.Lock()
        # held while an upload is linked to its blob, and while the sweep removes files
        # (server/retention.py): a blob no document links to yet is not taken away
        self.lock = threading.Lock()

    def close(self) -> None:
        with self._counter_lock:
            if self._counter is not None:
                self._counter.shutdown(wait=True, cancel_futures=True)
                self._counter = None

    def store(self, source: BinaryIO, client_name: str | None, max_bytes: int) -> Spooled:
        """Copy `source` into the spool, hashing it; refuses (413) more than `max_bytes`
        or more pages than the limit, and (400) an empty file."""
        tmp = self.root / "tmp" / uuid.uuid4().hex
        digest = hashlib.sha256()
        size = 0
        head = b""
        try:
            with open(tmp, "xb") as out:
                while True:
                    chunk = source.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadRejected(
                            413, f"file is over the file-size limit of {max_bytes} bytes"
                        )
                    if len(head) < 1024:
                        head += chunk[: 1024 - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise UploadRejected(400, "empty file")
            name = safe_name(client_name, head)
            folder = self.root / "docs" / time.strftime("%Y-%m-%d") / uuid.uuid4().hex
            path = folder / name
            with self.lock:
                blob = self._keep(tmp, digest.hexdigest())
                folder.mkdir(parents=True)
                os.link(blob, path)
        finally:
            tmp.unlink(missing_ok=True)
        pages, note = self.count(str(path))
        return Spooled(str(path), name, digest.hexdigest(), size, pages, note)

    def _keep(self, tmp: Path, sha: str) -> Path:
        blob = self.root / "blobs" / sha[:2] / sha
        if blob.exists():
            return blob
        blob.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        with contextlib.suppress(FileExistsError):  # two uploads of the same bytes raced
            os.link(tmp, blob)
        return blob

    # ---- page counts, in a process of their own -------------------------------------------

    def count(self, path: str) -> tuple[int, str | None]:
        """The file's pages; 1 when they cannot be counted (the worker fails its job with
        the reason). Over the page or size limit: `UploadRejected` 413."""
        with self._counter_lock:
            if self._counter is None:
                self._counter = cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
            counter = self._counter
        future = counter.submit(_count, path, self.limits)
        try:
            kind, value = future.result(timeout=COUNT_TIMEOUT)
        except (cf.process.BrokenProcessPool, cf.TimeoutError) as exc:
            self._discard(counter)
            return 1, f"pages not counted ({type(exc).__name__})"
        if kind == "rejected":
            shutil.rmtree(Path(path).parent, ignore_errors=True)
            raise UploadRejected(413, str(value))
        if kind == "bad":
            return 1, str(value)
        return int(value), None

    def _discard(self, counter: cf.ProcessPoolExecutor) -> None:
        with self._counter_lock:
            if self._counter is counter:
                self._counter = None
        for process in list(getattr(counter, "_processes", {}).values()):
            process.kill()
        counter.shutdown(wait=False, cancel_futures=True)


def _count(path: str, limits: InputLimits) -> tuple[str, int | str]:
    try:
        return "ok", count_pages(path, limits)
    except InputRejected as exc:
        return "rejected", str(exc)
    except BadImage as exc:
        return "bad", str(exc)
