"""Walk and hash: the files a submit or run is about, with what could not be read."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from ocrq.config import InputLimits
from ocrq.documents import count_pages
from ocrq.errors import BadImage
from ocrq.hashing import sha256_file
from ocrq.images import PAGE_FILE_PATTERNS
from ocrq.inputs import display_path
from ocrq.storage import encode_path
from producer.submit import HashedFile
from producer.walk import walk

DEFAULT_PATTERNS = PAGE_FILE_PATTERNS


@dataclass(frozen=True)
class WalkRequest:
    """What a submit or run is about: files under `paths` matching `patterns`."""

    paths: tuple[Path, ...]
    patterns: tuple[str, ...] = ()  # empty: DEFAULT_PATTERNS
    recursive: bool = True
    include_hidden: bool = False
    force: bool = False  # run files again even when done (used when planning, not here)


@dataclass
class Collected:
    files: list[HashedFile] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    unmatched: Counter = field(default_factory=Counter)  # suffix -> files, when none matched


def collect(request: WalkRequest, limits: InputLimits | None = None) -> Collected:
    """The files `request` names, hashed, each with its page count (a PDF or multi-page
    TIFF becomes one job per page). A document whose pages cannot be counted (encrypted,
    truncated, not really a PDF) stays one page: its job fails with the reason."""
    found = Collected(patterns=tuple(request.patterns) or DEFAULT_PATTERNS)
    entries = []
    walked = walk(
        request.paths, found.patterns, request.recursive, include_hidden=request.include_hidden
    )
    for entry in walked:
        if entry.ok:
            entries.append(entry)
        else:
            found.unreadable.append((display_path(entry.path), entry.reason or entry.problem or ""))
    total = sum(max(e.size, 0) for e in entries)
    with click.progressbar(length=total, label="hash", file=sys.stderr) as bar:
        for entry in entries:
            try:
                digest = sha256_file(entry.path)
            except OSError as exc:
                found.unreadable.append((display_path(entry.path), exc.strerror or str(exc)))
                continue
            pages = _pages(entry.path, limits or InputLimits())
            found.files.append(
                HashedFile(encode_path(os.path.abspath(entry.path)), digest, entry.size, pages)
            )
            bar.update(max(entry.size, 0))
    if not found.files:
        found.unmatched = unmatched_kinds(request.paths, request.recursive)
    return found


def _pages(path: str, limits: InputLimits) -> int:
    try:
        return count_pages(path, limits)
    except BadImage:
        return 1  # read by a worker, which fails its one job with the reason


def unmatched_kinds(paths: Sequence[Path], recursive: bool, most: int = 10_000) -> Counter:
    """What the folders hold that no pattern matched, by suffix (at most `most` files
    looked at), for a submit that found nothing to read."""
    kinds: Counter = Counter()
    seen = 0
    for root in paths:
        for _folder, dirs, names in os.walk(root):
            if not recursive:
                dirs.clear()
            for name in names:
                kinds[os.path.splitext(name)[1].lower() or "(no suffix)"] += 1
                seen += 1
                if seen >= most:
                    return kinds
    return kinds


def report_unreadable(found: Collected, limit: int = 20) -> None:
    if not found.files:
        held = ", ".join(f"{n} {kind}" for kind, n in found.unmatched.most_common(8))
        click.echo(
            f"  no file matched {', '.join(found.patterns)}"
            + (
                f"; the folders hold {held} (not matched: give --pattern)"
                if held
                else "; the folders are empty"
            ),
            err=True,
        )
    for path, reason in found.unreadable[:limit]:
        click.echo(f"  skipped {path}: {reason}", err=True)
    if len(found.unreadable) > limit:
        click.echo(f"  ... and {len(found.unreadable) - limit} more", err=True)
