"""Walk and hash: the files a submit or run is about, with what could not be read."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from ocrq.hashing import sha256_file
from ocrq.inputs import display_path
from ocrq.storage import encode_path
from producer.submit import HashedFile
from producer.walk import walk

DEFAULT_PATTERNS = (
    "*.jpg",
    "*.jpeg",
    "*.png",
    "*.tif",
    "*.tiff",
    "*.bmp",
    "*.webp",
    "*.gif",
    "*.pbm",
    "*.pgm",
    "*.ppm",
)


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


def collect(request: WalkRequest) -> Collected:
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
            found.files.append(
                HashedFile(encode_path(os.path.abspath(entry.path)), digest, entry.size)
            )
            bar.update(max(entry.size, 0))
    return found


def report_unreadable(found: Collected, limit: int = 20) -> None:
    for path, reason in found.unreadable[:limit]:
        click.echo(f"  skipped {path}: {reason}", err=True)
    if len(found.unreadable) > limit:
        click.echo(f"  ... and {len(found.unreadable) - limit} more", err=True)
