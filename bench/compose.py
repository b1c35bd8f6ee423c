"""Layout sets composed from page sets (issue #30): columns and turned pages.

- columns: two or three pages pasted side by side, each at its own resolution (nothing
  scaled; the shorter ones padded with white below), so a page's text sits in one column
  of the composite. Truth: the pages' truths one after the other; a `.uzn` zone file
  with one zone per column, so the bench scores the composite both per column (its zones,
  as the UNLV pages) and as a whole page in the engine's own reading order.
- turned: every page turned 90, 180 or 270 degrees counterclockwise, one set per angle;
  truth unchanged, so a set's CER compares with the upright set's in the same run.

Composites are written as PNG (bilevel pages stay bilevel, with their source's stated
resolution) into a folder the caller owns (a temp folder: never the repository, the eval
data's licences differ). Set folders are named `SET-2col`, `SET-3col`, `SET-rot90`...,
so the source's scoring conventions (chosen by name) carry over.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from bench.evalsets import TRUTH_SUFFIX, ZONES_SUFFIX, EvalSet, Item, Zone, discover
from ocrq.config import InputLimits
from ocrq.errors import UsageError
from ocrq.images import load_pages

KINDS = ("columns", "rotated")
COLUMN_COUNTS = (2, 3)
TURNS = (90, 180, 270)
WHITE = 255


def paste(pages: Sequence[np.ndarray]) -> np.ndarray:
    """Side by side at their own resolution, top-aligned, white below the shorter ones.
    Gray pages stay gray; with one colour page among them, all are pasted as colour."""
    colour = any(p.ndim == 3 for p in pages)
    pages = [_as_colour(p) if colour else p for p in pages]
    height = max(p.shape[0] for p in pages)
    shape = (height, sum(p.shape[1] for p in pages)) + ((3,) if colour else ())
    canvas = np.full(shape, WHITE, np.uint8)
    x = 0
    for page in pages:
        canvas[: page.shape[0], x : x + page.shape[1]] = page
        x += page.shape[1]
    return canvas


def _as_colour(page: np.ndarray) -> np.ndarray:
    """RGB of a gray or RGB(A) page (alpha dropped)."""
    return np.dstack([page] * 3) if page.ndim == 2 else page[..., :3]


def column_zones(pages: Sequence[np.ndarray]) -> list[Zone]:
    """One zone per pasted page, (x0, y0, x1, y1): its own width and height."""
    zones, x = [], 0
    for page in pages:
        zones.append((float(x), 0.0, float(x + page.shape[1]), float(page.shape[0])))
        x += page.shape[1]
    return zones


def column_groups(count: int, columns: int) -> list[tuple[int, ...]]:
    """Which pages go side by side: two-column composites take a book's spreads (0+1,
    2+3, ...), three-column ones start at every other page and wrap around, so each
    page is a left, middle and right column once or so over a set of ten."""
    if count < columns:
        return []
    if columns == 2:
        return [(i, i + 1) for i in range(0, count - 1, 2)]
    return [tuple((i + j) % count for j in range(columns)) for i in range(0, count, 2)]


def turn(page: np.ndarray, angle: int) -> np.ndarray:
    """The page turned `angle` degrees counterclockwise (a multiple of 90)."""
    return np.ascontiguousarray(np.rot90(page, angle // 90))


def write_zones(path: Path, zones: Sequence[Zone], kind: str = "Text") -> None:
    """UNLV `.uzn` lines: `left top width height type`."""
    lines = [f"{x0:.0f} {y0:.0f} {x1 - x0:.0f} {y1 - y0:.0f} {kind}" for x0, y0, x1, y1 in zones]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def save_page(image: np.ndarray, path: Path, dpi: tuple[float, float] | None) -> Path:
    """PNG, 1-bit when the page holds black and white only (as the bilevel book scans)."""

    picture = Image.fromarray(image)
    if image.ndim == 2 and np.isin(image, (0, WHITE)).all():
        picture = picture.convert("1")
    picture.save(path, dpi=dpi) if dpi else picture.save(path)
    return path


def composable(evalset: EvalSet) -> list[Item]:
    """The set's pages whose truth is the whole page: not line images, not zoned pages
    (a UNLV truth covers its zones only)."""
    if evalset.conventions.line_images:
        return []
    return [item for item in evalset.items if item.zones is None]


class PageCache:
    """A set's first pages, decoded once each, with their stated resolution."""

    def __init__(self) -> None:
        self.cache: dict[Path, tuple[np.ndarray, tuple[float, float] | None]] = {}

    def __call__(self, item: Item) -> tuple[np.ndarray, tuple[float, float] | None]:
        if item.image not in self.cache:
            with Image.open(item.image) as picture:
                dpi = picture.info.get("dpi")
            page = load_pages(item.image, InputLimits())[0]
            self.cache[item.image] = (page, tuple(float(d) for d in dpi) if dpi else None)
        return self.cache[item.image]


def _write_item(folder: Path, name: str, image: np.ndarray, truth: str, dpi) -> Path:  # type: ignore[no-untyped-def]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}{TRUTH_SUFFIX}").write_text(truth, encoding="utf-8")
    return save_page(image, folder / f"{name}.png", dpi)


def write_columns(items: Sequence[Item], columns: int, folder: Path, pages: PageCache) -> int:
    """The `columns`-column composites of `items` into `folder`; how many were written."""
    groups = column_groups(len(items), columns)
    for group in groups:
        members = [items[i] for i in group]
        images = [pages(item)[0] for item in members]
        name = "+".join(item.name for item in members)
        truth = "\n\n".join(item.reference().strip() for item in members)
        _write_item(folder, name, paste(images), truth, pages(members[0])[1])
        write_zones(folder / f"{name}{ZONES_SUFFIX}", column_zones(images))
    return len(groups)


def write_turned(items: Sequence[Item], angle: int, folder: Path, pages: PageCache) -> int:
    """Every page of `items` turned `angle` degrees into `folder`, truth unchanged."""
    for item in items:
        image, dpi = pages(item)
        _write_item(folder, f"{item.name}-rot{angle}", turn(image, angle), item.reference(), dpi)
    return len(items)


def compose_sets(sets: Sequence[EvalSet], kinds: Sequence[str], out_dir: Path) -> list[Path]:
    """Write the composed sets of `kinds` (columns, rotated) made from each of `sets` under
    `out_dir`, one folder per set; the folders written, in order."""
    folders: list[Path] = []
    for evalset in sets:
        items = composable(evalset)
        base = evalset.name.replace("/", "-")
        pages = PageCache()
        if "columns" in kinds:
            for columns in COLUMN_COUNTS:
                folder = out_dir / f"{base}-{columns}col"
                if write_columns(items, columns, folder, pages):
                    folders.append(folder)
        if "rotated" in kinds:
            for angle in TURNS:
                folder = out_dir / f"{base}-rot{angle}"
                if write_turned(items, angle, folder, pages):
                    folders.append(folder)
    return folders


def parse_kinds(values: Sequence[str]) -> tuple[str, ...]:
    """`--compose columns,rotated` (repeatable, comma-separated) as known kinds, in order."""

    kinds = [k.strip() for value in values for k in value.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise UsageError(f"--compose {', '.join(unknown)}: choose from {', '.join(KINDS)}")
    return tuple(dict.fromkeys(kinds))


def composed_sets(
    sets: Sequence[EvalSet], kinds: Sequence[str], names: Sequence[str], out_dir: Path
) -> list[EvalSet]:
    """The layout sets made from `sets` (those named in `names`, or every page set),
    written under `out_dir` and discovered as ordinary eval sets."""

    unknown = sorted(set(names) - {s.name for s in sets})
    if unknown:
        raise UsageError(f"--compose-from {', '.join(unknown)}: not among the sets given")
    sources = [s for s in sets if not names or s.name in names]
    folders = compose_sets(sources, kinds, out_dir)
    if not folders:
        raise UsageError("--compose: no page set with whole-page truth to compose from")
    return discover(folders)
