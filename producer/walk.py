"""The producer's directory walker: sorted, files only, no symlink loops, problems reported.

`walk(roots, patterns)` yields a `WalkEntry` per matching file. Entries the producer cannot
use are yielded too, with `problem` (a stable kind) and `reason` (short text), so the
producer can count them: broken symlinks, symlink loops, unreadable files and directories,
FIFOs/devices, and files reached twice (through a symlink or hardlink).

Order is deterministic: depth first, names sorted by their bytes within each directory.
Patterns are shell globs matched on the path relative to the root, '/'-separated:
- without '/' (`*.jpg`) the pattern matches the file name, at any depth when recursive;
- with '/' (`scans/*.png`, `**/*.tif`) it matches the whole relative path, where `*`, `?`
  and `[...]` stay within one component and `**` spans any number (including none).
Several patterns are a union; no patterns matches every file. Matching is case-insensitive
by default since scanners write `.JPG` as often as `.jpg`.
Hidden entries (names starting with '.': `.git/`, `.thumbnails/`, macOS `._scan.jpg`
AppleDouble files) are skipped silently as a shell glob would, unless `include_hidden`.
Symlinked directories are followed once: each real directory (device, inode) is walked at
most once, so a link back to an ancestor is reported as a loop instead of recursing.
A root that is a file is yielded as is, whatever the patterns (the user named it).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ocrq.errors import UsageError
from ocrq.inputs import display_path, file_kind_reason

# Stable problem kinds, for counting in the producer's summary.
BROKEN_SYMLINK = "broken-symlink"
SYMLINK_LOOP = "symlink-loop"
UNREADABLE = "unreadable"  # permission denied or I/O error, file or directory
NOT_REGULAR = "not-regular"  # FIFO, socket, device
DUPLICATE = "duplicate"  # the same real file/directory was already walked


@dataclass(frozen=True)
class WalkEntry:
    path: Path  # root / rel, as found: symlinks are not resolved
    root: Path
    rel: str  # relative to root, '/'-separated; the file name when the root is a file
    problem: str | None = None  # None for a readable regular file, else one of the kinds
    reason: str = ""  # short human reason when problem is set
    size: int = -1  # bytes, for usable files

    @property
    def ok(self) -> bool:
        return self.problem is None


def _translate_segment(seg: str) -> str:
    """One path component of a glob to a regex that never crosses '/'."""
    out: list[str] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < len(seg) and seg[j] in "!^":
                j += 1
            if j < len(seg) and seg[j] == "]":
                j += 1
            while j < len(seg) and seg[j] != "]":
                j += 1
            if j >= len(seg):
                out.append(re.escape(c))  # unterminated class: a literal '['
            else:
                body = seg[i + 1 : j]
                neg = body[:1] in ("!", "^")
                if neg:
                    body = body[1:]
                body = body.replace("\\", "\\\\")
                out.append(f"[^/{body}]" if neg else f"[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def compile_pattern(pattern: str, case_sensitive: bool = False) -> Callable[[str], bool]:
    """A predicate on '/'-separated relative paths for one glob (see module doc)."""
    pat = pattern.strip()
    while pat.startswith("./"):
        pat = pat[2:]
    if not pat:
        raise UsageError(f"empty pattern: {pattern!r}")
    flags = 0 if case_sensitive else re.IGNORECASE
    if "/" not in pat:
        rx = re.compile(_translate_segment(pat), flags)
        return lambda rel: rx.fullmatch(rel.rsplit("/", 1)[-1]) is not None
    segs = [s for s in pat.strip("/").split("/") if s]
    parts: list[str] = []
    for k, seg in enumerate(segs):
        last = k == len(segs) - 1
        if seg == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
        else:
            parts.append(_translate_segment(seg) + ("" if last else "/"))
    rx = re.compile("".join(parts), flags)
    return lambda rel: rx.fullmatch(rel) is not None


def _matcher(patterns: Sequence[str], case_sensitive: bool) -> Callable[[str], bool]:
    if isinstance(patterns, str):
        patterns = [patterns]
    preds = [compile_pattern(p, case_sensitive) for p in patterns]
    if not preds:
        return lambda rel: True
    return lambda rel: any(p(rel) for p in preds)


def _errno_reason(exc: OSError) -> tuple[str, str]:
    if exc.errno == errno.ELOOP:
        return SYMLINK_LOOP, "symlink loop"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return UNREADABLE, "permission denied"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return BROKEN_SYMLINK, "vanished during the walk"
    return UNREADABLE, f"I/O error: {exc.strerror or exc}"


def _scan(path: Path) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: os.fsencode(e.name))


class _Walker:
    def __init__(self, recursive: bool, match: Callable[[str], bool], include_hidden: bool) -> None:
        self.recursive = recursive
        self.match = match
        self.include_hidden = include_hidden
        self.dirs_seen: dict[tuple[int, int], Path] = {}
        self.files_seen: dict[tuple[int, int], Path] = {}

    def _file(self, root: Path, path: Path, rel: str, st: os.stat_result) -> WalkEntry:
        if not stat.S_ISREG(st.st_mode):
            return WalkEntry(path, root, rel, NOT_REGULAR, file_kind_reason(st.st_mode))
        key = (st.st_dev, st.st_ino)
        first = self.files_seen.get(key)
        if first is not None:
            return WalkEntry(path, root, rel, DUPLICATE, f"same file as {display_path(first)}")
        self.files_seen[key] = path
        # access() rather than open(): the walker must never block or read; as root it is
        # always True, and the hashing step then meets the real error if any.
        if not os.access(path, os.R_OK):
            return WalkEntry(path, root, rel, UNREADABLE, "permission denied")
        return WalkEntry(path, root, rel, size=st.st_size)

    def walk_root(self, root: Path, st: os.stat_result) -> Iterator[WalkEntry]:
        if not stat.S_ISDIR(st.st_mode):
            yield self._file(root, root, root.name, st)
            return
        key = (st.st_dev, st.st_ino)
        if key in self.dirs_seen:
            first = display_path(self.dirs_seen[key])
            yield WalkEntry(root, root, "", DUPLICATE, f"directory already walked as {first}")
            return
        self.dirs_seen[key] = root
        try:
            listing = _scan(root)
        except OSError as exc:
            kind, why = _errno_reason(exc)
            yield WalkEntry(root, root, "", kind, f"unreadable directory: {why}")
            return
        # Explicit stack (no recursion limit on deep trees): (dir path, rel prefix, key, iter).
        stack = [(root, "", key, iter(listing))]
        on_stack = {key}
        while stack:
            dpath, prefix, dkey, it = stack[-1]
            entry = next(it, None)
            if entry is None:
                stack.pop()
                on_stack.discard(dkey)
                continue
            if entry.name.startswith(".") and not self.include_hidden:
                continue
            path = dpath / entry.name
            rel = prefix + entry.name
            try:
                if entry.is_symlink():
                    try:
                        est = os.stat(path)
                    except OSError as exc:
                        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                            kind, why = BROKEN_SYMLINK, "broken symlink"
                        else:
                            kind, why = _errno_reason(exc)
                        if self.match(rel):
                            yield WalkEntry(path, root, rel, kind, why)
                        continue
                else:
                    est = entry.stat(follow_symlinks=False)
            except OSError as exc:
                kind, why = _errno_reason(exc)
                if self.match(rel):
                    yield WalkEntry(path, root, rel, kind, why)
                continue
            if stat.S_ISDIR(est.st_mode):
                if not self.recursive:
                    continue
                ekey = (est.st_dev, est.st_ino)
                if ekey in on_stack:
                    yield WalkEntry(
                        path, root, rel, SYMLINK_LOOP, "symlink loop (links to a parent)"
                    )
                    continue
                if ekey in self.dirs_seen:
                    first = display_path(self.dirs_seen[ekey])
                    yield WalkEntry(
                        path, root, rel, DUPLICATE, f"directory already walked as {first}"
                    )
                    continue
                self.dirs_seen[ekey] = path
                try:
                    sub = _scan(path)
                except OSError as exc:
                    kind, why = _errno_reason(exc)
                    yield WalkEntry(path, root, rel, kind, f"unreadable directory: {why}")
                    continue
                stack.append((path, rel + "/", ekey, iter(sub)))
                on_stack.add(ekey)
                continue
            if self.match(rel):
                yield self._file(root, path, rel, est)


def walk(
    roots: Sequence[Path | str],
    patterns: Sequence[str] = (),
    recursive: bool = True,
    *,
    case_sensitive: bool = False,
    include_hidden: bool = False,
) -> Iterator[WalkEntry]:
    """Matching files under `roots` (in the given order), problems included (`entry.ok`).

    Raises `UsageError` at once (before any entry) when a root does not exist or a pattern
    is empty; everything met during the walk is reported as an entry, never raised.
    """
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    match = _matcher(patterns, case_sensitive)
    checked: list[tuple[Path, os.stat_result | OSError]] = []
    for r in roots:
        root = Path(r)
        try:
            checked.append((root, os.stat(root)))
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise UsageError(f"input path not found: {display_path(root)}") from None
            checked.append((root, exc))
    return _walk(checked, _Walker(recursive, match, include_hidden))


def _walk(
    checked: list[tuple[Path, os.stat_result | OSError]], walker: _Walker
) -> Iterator[WalkEntry]:
    for root, st in checked:
        if isinstance(st, OSError):
            kind, why = _errno_reason(st)
            yield WalkEntry(root, root, root.name, kind, why)
            continue
        yield from walker.walk_root(root, st)
