"""Which files a worker may read, decided from the path and `stat` alone.

`check_input_path` resolves symlinks and `..` (realpath) and refuses anything outside the
configured input roots *before* touching the file, so a task naming `/etc/passwd` fails
without the worker ever opening it. `read_input` then opens the checked file without
following a symlink swapped in meanwhile and verifies it is still the same regular file.

Paths may carry undecodable bytes (non-UTF-8 file names): Python represents them as
surrogate escapes in `str`, which survive JSON (`\\udcXX`) but not a UTF-8 database column;
`display_path` gives a lossless-looking printable form for messages and exports.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from ocrq.config import InputLimits
from ocrq.errors import BadImage, InputRejected

PathArg = str | os.PathLike[str] | bytes


def display_path(path: PathArg) -> str:
    """Printable text for a path; undecodable bytes show as `\\xNN` (for messages/exports)."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


@lru_cache(maxsize=16)
def _real_roots(roots: tuple[str, ...]) -> frozenset[str]:
    """`roots` resolved (realpath), once per distinct set of roots: a batch of files
    submitted one by one has a root per file, hundreds of them, checked for every job."""
    return frozenset(os.path.normpath(os.path.realpath(root)) for root in roots)


def is_under_roots(real: str, roots: tuple[str, ...]) -> bool:
    """True when the already-resolved path `real` is one of `roots` or inside one: one of
    its ancestors (or itself) is a root, a set look-up per path component."""
    wanted = _real_roots(tuple(roots))
    path = os.path.normpath(real)
    while True:
        if path in wanted:
            return True
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


def _stat_reason(raw: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        try:
            if stat.S_ISLNK(os.lstat(raw).st_mode):
                return "broken symlink"
        except OSError:
            pass
        return "file not found"
    if exc.errno == errno.EACCES or exc.errno == errno.EPERM:
        return "permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return f"cannot stat file: {exc.strerror or exc}"


def file_kind_reason(mode: int) -> str:
    """Why a path that is not a regular file cannot be read (walker and worker alike)."""
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "not a regular file (FIFO)"
    if stat.S_ISSOCK(mode):
        return "not a regular file (socket)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "not a regular file (device)"
    return "not a regular file"


def _checked(path: PathArg, limits: InputLimits) -> tuple[Path, os.stat_result]:
    try:
        raw = os.fsdecode(path)
    except TypeError as exc:
        raise InputRejected(f"not a path: {type(path).__name__}") from exc
    if not raw:
        raise InputRejected("empty path")
    if "\x00" in raw:
        raise InputRejected("path contains a NUL byte")
    # Non-strict realpath never raises; a symlink loop stays unresolved and fails at stat.
    real = os.path.realpath(raw)
    if limits.input_roots and not is_under_roots(real, tuple(limits.input_roots)):
        raise InputRejected(f"path is outside the configured input roots ({limits.roots_from})")
    try:
        st = os.stat(real)
    except OSError as exc:
        raise BadImage(_stat_reason(raw, exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise BadImage(file_kind_reason(st.st_mode))
    if st.st_size > limits.max_file_bytes:
        raise InputRejected(
            f"file is {st.st_size} bytes, over the file-size limit of {limits.max_file_bytes}"
        )
    if not os.access(real, os.R_OK):
        raise BadImage("permission denied")
    return Path(real), st


def check_input_path(path: PathArg, limits: InputLimits) -> Path:
    """The resolved path of a regular file the worker may read, else `BadImage`/`InputRejected`.

    Never opens the file: roots, type and size come from realpath and stat. Relative paths
    resolve against the current directory. Raises `InputRejected` (outside the roots, over the
    size limit, malformed path) or `BadImage` (missing, broken symlink, loop, directory, FIFO,
    permission denied).
    """
    return _checked(path, limits)[0]


@contextmanager
def open_input(path: PathArg, limits: InputLimits) -> Iterator[tuple[BinaryIO, int]]:
    """A checked input file, open for reading, and its size: for readers that take what
    they need of a large file (a PDF's page) instead of all of it.

    Opens with O_NOFOLLOW|O_NONBLOCK (a symlink or FIFO swapped in after the check can neither
    redirect nor block the read) and refuses a file that changed identity or grew past the
    size limit between the check and the open.
    """
    real, st = _checked(path, limits)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise BadImage(_stat_reason(str(real), exc)) from None
    with os.fdopen(fd, "rb") as fh:
        fst = os.fstat(fh.fileno())
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode):
            raise InputRejected("file changed between check and read")
        if fst.st_size > limits.max_file_bytes:
            raise InputRejected(f"file grew past the file-size limit of {limits.max_file_bytes}")
        yield fh, fst.st_size


def read_input(path: PathArg, limits: InputLimits) -> bytes:
    """The bytes of a checked input file (`open_input`), all of them."""
    with open_input(path, limits) as (fh, _size):
        try:
            data = fh.read(limits.max_file_bytes + 1)
        except OSError as exc:
            raise BadImage(f"read error: {exc.strerror or exc}") from None
    if len(data) > limits.max_file_bytes:
        raise InputRejected(f"file grew past the file-size limit of {limits.max_file_bytes}")
    return data
