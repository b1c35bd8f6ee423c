"""Evaluation sets: folders of images with `NAME.gt.txt` beside each, and how to score them.

Scoring conventions follow ../shared/eval/README.md, so every figure compares:
- CER after collapsing whitespace runs and stripping the ends (`ocrq.scoring`);
- SROIE truth is upper case: scored case-insensitively;
- oldbooks truth has no end-of-line hyphens: the hypothesis is de-hyphenated first;
- a page with a `NAME.uzn` zone file (UNLV, composed columns) is scored only on text read
  inside its zones: zone by zone (`score_item`), and as a whole page in the engine's own
  reading order (`score_whole_page`), whose difference is what the reading order costs.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ocrq.errors import UsageError
from ocrq.scoring import cer_counts, dehyphenate

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".pbm")
IMAGE_SUFFIXES += (".pgm", ".ppm")
TRUTH_SUFFIX = ".gt.txt"
ZONES_SUFFIX = ".uzn"

# (x0, y0, x1, y1, text): one text line or region as an engine read it, in page pixels.
Box = tuple[float, float, float, float, str]
Zone = tuple[float, float, float, float]


@dataclass(frozen=True)
class Conventions:
    casefold: bool = False  # truth in one case (SROIE): compare case-insensitively
    dehyphenate: bool = False  # truth joins words split at line ends (oldbooks)
    line_images: bool = False  # every image is one text line (Tesseract --psm 7)


@dataclass(frozen=True)
class Item:
    name: str
    image: Path
    truth: Path
    zones: Path | None = None  # UNLV-style zone file: score only inside these

    def reference(self) -> str:
        return self.truth.read_text(encoding="utf-8")


@dataclass(frozen=True)
class EvalSet:
    name: str
    folder: Path
    items: tuple[Item, ...]
    conventions: Conventions


def truth_path(image: Path) -> Path:
    return image.with_name(image.stem + TRUTH_SUFFIX)


def _items_in(folder: Path) -> list[Item]:
    items = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        truth = truth_path(path)
        if not truth.is_file():
            continue  # an image without truth cannot be scored
        zones = path.with_name(path.stem + ZONES_SUFFIX)
        items.append(Item(path.stem, path, truth, zones if zones.is_file() else None))
    return items


def _looks_like_lines(images: Sequence[Path], sample: int = 8) -> bool:
    """Images that are short and wide are single text lines (read from headers only)."""
    from PIL import Image

    heights, aspects = [], []
    for path in images[:sample]:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except OSError:
            continue
        heights.append(h)
        aspects.append(w / max(h, 1))
    if not heights:
        return False
    return statistics.median(heights) <= 160 and statistics.median(aspects) >= 4


def conventions_for(name: str, items: Sequence[Item]) -> Conventions:
    """The README's per-set conventions, chosen by the set's folder name (and, for line
    sets, by the images' shape so a renamed copy still gets `--psm 7`)."""
    low = name.lower()
    return Conventions(
        casefold="sroie" in low,
        dehyphenate="oldbook" in low,
        line_images="line" in low or _looks_like_lines([i.image for i in items]),
    )


def _set_folders(root: Path) -> Iterable[Path]:
    yield root
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            yield path


def discover(folders: Sequence[Path], limit: int | None = None) -> list[EvalSet]:
    """Every folder (at any depth) holding images with truth beside them is one set.

    A set is named after its folder; when two share a name, by its path relative to the
    folder given. `limit` keeps the first N items (sorted by name) of each set.
    """
    found: list[tuple[str, Path, list[Item]]] = []
    for root in folders:
        root = Path(root)
        if not root.is_dir():
            raise UsageError(f"{root} is not a folder")
        before = len(found)
        for folder in _set_folders(root):
            items = _items_in(folder)
            if items:
                rel = folder.relative_to(root).as_posix()
                found.append((folder.name if rel != "." else root.name, folder, items))
        if len(found) == before:
            raise UsageError(f"no images with a NAME{TRUTH_SUFFIX} beside them under {root}")
    names = [n for n, _, _ in found]
    sets = []
    for name, folder, items in found:
        if names.count(name) > 1:
            name = f"{folder.parent.name}/{name}"
        if limit:
            items = items[:limit]
        sets.append(EvalSet(name, folder, tuple(items), conventions_for(name, items)))
    return sets


def read_zones(path: Path) -> list[Zone]:
    """UNLV `.uzn` zones: one `left top width height type` per line."""
    zones = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        try:
            x, y, w, h = (float(v) for v in parts[:4])
        except ValueError:
            continue
        zones.append((x, y, x + w, y + h))
    return zones


def _centre_in(box: Box, zone: Zone) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return zone[0] <= cx <= zone[2] and zone[1] <= cy <= zone[3]


def zone_text(boxes: Sequence[Box], zones: Sequence[Zone]) -> str:
    """Text read inside the zones, zone by zone in file order: a box belongs to the first
    zone holding its centre (so overlapping zones never count a box twice)."""
    taken: set[int] = set()
    parts = []
    for zone in zones:
        inside = []
        for i, box in enumerate(boxes):
            if i not in taken and _centre_in(box, zone):
                taken.add(i)
                inside.append(box[4])
        parts.append("\n".join(inside))
    return "\n".join(parts)


def whole_page_text(boxes: Sequence[Box], zones: Sequence[Zone]) -> str:
    """Text read inside any zone, in the engine's own reading order: what a reader of the
    whole page gets, with the truth's zones only keeping out what the truth leaves out
    (UNLV pages transcribe their zones only)."""
    return "\n".join(box[4] for box in boxes if any(_centre_in(box, z) for z in zones))


def _counts(item: Item, conventions: Conventions, hypothesis: str) -> tuple[int, int]:
    if conventions.dehyphenate:
        hypothesis = dehyphenate(hypothesis)
    return cer_counts(hypothesis, item.reference(), casefold=conventions.casefold)


def score_item(
    item: Item, conventions: Conventions, text: str, boxes: Sequence[Box]
) -> tuple[int, int]:
    """(edit distance, reference length) of one item under its set's conventions; a zoned
    page is scored zone by zone (each zone's text against the truth's, in the truth's
    order), so the engine's order between zones does not count."""
    hypothesis = zone_text(boxes, read_zones(item.zones)) if item.zones else text
    return _counts(item, conventions, hypothesis)


def score_whole_page(
    item: Item, conventions: Conventions, boxes: Sequence[Box]
) -> tuple[int, int] | None:
    """A zoned page scored as a whole page, in the engine's reading order (`None` for a
    page without zones: its one score is already the whole page's)."""
    if not item.zones:
        return None
    return _counts(item, conventions, whole_page_text(boxes, read_zones(item.zones)))
