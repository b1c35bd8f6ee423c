"""Measure the layout step (models/layout.py) and page orientation (models/orientation.py)
on the real book pages of $EVAL (default ../shared/eval), read by the real engine, inside
one process: today's order against the layout's on the same regions, and the cost of each
step. The bench measures the same composites as users run them: `ocrq bench FOLDER
--compose columns,rotated` (bench/compose.py makes both).

    python scripts/eval_layout.py [--precision fp32] [--json out.json]

(a) columns: two- and three-column pages composed by pasting oldbooks scans side by
    side, each at its own resolution (nothing scaled; the short ones padded with white).
    Truth: the pages' truths one after the other. Whole-page CER, oldbooks conventions
    (de-hyphenated, whitespace collapsed), of the same recognized regions in today's
    order (models.order), in the layout's, and page by page (each pasted page's own
    regions in today's order: the best any order can do with these regions).
(b) turned: every oldbooks page turned 90/180/270 (and 0, and skewed +-3 degrees, as
    controls): the angle found, CER after turning the page back (`upright`) and reading
    it again, against the upright page's CER and against reading the turned scan as is.
(c) cost: the layout step and the orientation check against the time to read a page.
(d) the eval sets' own pages: how many read in a different order with the layout, and
    their CER (bench scoring) in each order.

One core, one process, like scripts/eval_engine.py. Nothing is written into the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.compose import column_groups, paste, turn  # noqa: E402
from bench.evalsets import discover, score_item  # noqa: E402
from models.layout import layout  # noqa: E402
from models.order import group_lines  # noqa: E402
from models.orientation import detect_orientation, upright  # noqa: E402
from models.page import read_page  # noqa: E402
from models.registry import load_engine  # noqa: E402
from ocrq.config import EngineOptions, InputLimits, settings_from_env  # noqa: E402
from ocrq.images import load_pages  # noqa: E402
from ocrq.scoring import cer_counts, dehyphenate  # noqa: E402

# the evaluation data (not part of the project): $EVAL, as the Makefile names it
EVAL = Path(os.environ.get("EVAL", Path(__file__).resolve().parents[2] / "shared" / "eval"))
BOOKS = EVAL / "pages" / "oldbooks"


# -- glue: the engine's (region, text) pairs in today's order -> text in either order ----------


def text_in_order(pairs, order, line_of) -> str:
    """Regions in `order`; those on one visual line (same `line_of`) joined by a space."""
    lines, current = [], None
    for i in order:
        if current is not None and line_of[i] == current:
            lines[-1] += " " + pairs[i][1].text.strip()
        else:
            lines.append(pairs[i][1].text.strip())
        current = line_of[i]
    return "\n".join(lines)


def todays_text(pairs) -> str:
    """As a worker stores it today: read_page's order, group_lines' visual lines."""
    line_of = {
        i: n for n, members in enumerate(group_lines([r for r, _ in pairs])) for i in members
    }
    return text_in_order(pairs, range(len(pairs)), line_of)


def oracle_text(pairs, widths) -> str:
    """The order a reader who knows where the pasted pages meet would give: each page's
    regions (by their centre) in today's order, page after page: the best any order can
    do with these regions."""
    edges = np.cumsum(widths)[:-1]
    page_of = [int(np.searchsorted(edges, (r.bbox[0] + r.bbox[2]) / 2, "right")) for r, _ in pairs]
    texts = []
    for p in range(len(widths)):
        texts.append(todays_text([pair for pair, q in zip(pairs, page_of, strict=True) if q == p]))
    return "\n\n".join(texts)


def layout_text(pairs, shape) -> tuple[str, float]:
    t0 = time.perf_counter()
    result = layout([r for r, _ in pairs], shape)
    seconds = time.perf_counter() - t0
    return text_in_order(pairs, result.order, result.page_lines()), seconds


def score(hypothesis: str, truth: str) -> tuple[int, int]:
    return cer_counts(dehyphenate(hypothesis), truth)


# -- pages -----------------------------------------------------------------------------------


def book_pages() -> list[tuple[str, np.ndarray, str]]:
    out = []
    for path in sorted(BOOKS.glob("*.tif")):
        truth = path.with_name(path.stem + ".gt.txt").read_text(encoding="utf-8")
        out.append((path.stem, load_pages(path, InputLimits())[0], truth))
    return out


def skew(page: np.ndarray, degrees: float) -> np.ndarray:
    h, w = page.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(page, matrix, (w, h), borderValue=255)


class Totals:
    def __init__(self) -> None:
        self.rows: dict[str, list[float]] = {}

    def add(self, key: str, *values: float) -> None:
        acc = self.rows.setdefault(key, [0.0] * len(values))
        for i, v in enumerate(values):
            acc[i] += v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "int8", "auto"))
    ap.add_argument("--parts", default="a,b,c,d", help="which measurements (a,b,c,d)")
    ap.add_argument("--json", type=Path, help="write per-item results here")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    models_dir = settings_from_env().models_dir
    loaded = load_engine(EngineOptions(precision=args.precision), models_dir, threads=1)
    # read pages as they come (the page loop's own orientation step off): this script
    # turns them itself, to measure today's reading beside the turned one
    engine, classifier = replace(loaded, classifier=None), loaded.classifier
    books = book_pages()
    items: list[dict] = []
    read_seconds, layout_seconds, orient_seconds, orient_pages = [], [], [], []

    def read(image):
        t0 = time.perf_counter()
        pairs = read_page(engine, np.ascontiguousarray(image))
        read_seconds.append(time.perf_counter() - t0)
        return pairs

    if "a" in parts:
        cols = Totals()
        # the same composites as `ocrq bench --compose columns` (bench/compose.py)
        groups = [(b,) for b in books]  # single pages: must read the same
        groups += [tuple(books[i] for i in g) for k in (2, 3) for g in column_groups(len(books), k)]
        for group in groups:
            names = "+".join(g[0] for g in group)
            composite = paste([g[1] for g in group])
            truth = "\n\n".join(g[2] for g in group)
            pairs = read(composite)
            old = todays_text(pairs)
            new, seconds = layout_text(pairs, composite.shape[:2])
            layout_seconds.append(seconds)
            (d_old, n_ref), (d_new, _) = score(old, truth), score(new, truth)
            d_best = score(oracle_text(pairs, [g[1].shape[1] for g in group]), truth)[0]
            key = f"{len(group)} page(s) side by side"
            cols.add(key, d_old, d_new, d_best, n_ref, 1)
            items.append(
                {
                    "part": "a",
                    "pages": names,
                    "cer_today": d_old / n_ref,
                    "cer_layout": d_new / n_ref,
                    "cer_by_page": d_best / n_ref,
                }
            )
            print(
                f"(a) {names:20s} today {100 * d_old / n_ref:6.2f} %  layout "
                f"{100 * d_new / n_ref:6.2f} %  by page {100 * d_best / n_ref:6.2f} %",
                flush=True,
            )

    if "b" in parts:
        turned = Totals()
        for name, page, truth in books:
            cases = [(a, turn(page, a)) for a in (0, 90, 180, 270)]
            cases += [(f"skew{d:+d}", skew(page, d)) for d in (3, -3)]
            for label, scan in cases:
                scan = np.ascontiguousarray(scan)
                expect = label if isinstance(label, int) else 0
                t0 = time.perf_counter()
                regions = engine.detector.detect(scan)
                t1 = time.perf_counter()
                found = detect_orientation(scan, regions, classifier, engine.recognizer)
                t2 = time.perf_counter()
                orient_seconds.append(t2 - t1)
                orient_pages.append(t1 - t0)
                fixed = read(upright(scan, found.angle))
                d_fixed, n_ref = score(todays_text(fixed), truth)
                as_is = fixed if found.angle == 0 else read(scan)  # today: no turning
                d_as_is = score(todays_text(as_is), truth)[0]
                turned.add(str(label), found.angle == expect, d_fixed, d_as_is, n_ref, 1)
                items.append(
                    {
                        "part": "b",
                        "page": name,
                        "case": str(label),
                        "angle": found.angle,
                        "method": found.method,
                        "confidence": found.confidence,
                        "cer_fixed": d_fixed / n_ref,
                        "cer_as_is": d_as_is / n_ref,
                        "orientation_seconds": t2 - t1,
                    }
                )
                print(
                    f"(b) {name} {label!s:7s} found {found.angle:3d} by {found.method:10s} "
                    f"CER turned back {100 * d_fixed / n_ref:6.2f} %  as is {100 * d_as_is / n_ref:6.2f} %  "
                    f"check {1000 * (t2 - t1):.0f} ms",
                    flush=True,
                )

    if "d" in parts:
        changed = Totals()
        for folder in ("pages/oldbooks", "pages/sroie", "pages/tesseract_test"):
            for evalset in discover([EVAL / folder]):
                for item in evalset.items:
                    page = load_pages(item.image, InputLimits())[0]
                    pairs = read(page)
                    result = layout([r for r, _ in pairs], page.shape[:2])
                    moved = list(result.order) != list(range(len(pairs)))
                    texts = {}
                    for label, order in (("today", range(len(pairs))), ("layout", result.order)):
                        ordered = [pairs[i] for i in order]
                        boxes = [(*r.bbox, t.text) for r, t in ordered]
                        if label == "today":
                            texts[label] = todays_text(pairs)
                        else:
                            texts[label] = text_in_order(pairs, result.order, result.page_lines())
                        texts[label + "_boxes"] = boxes
                    d_old, n_ref = score_item(
                        item, evalset.conventions, texts["today"], texts["today_boxes"]
                    )
                    d_new, _ = score_item(
                        item, evalset.conventions, texts["layout"], texts["layout_boxes"]
                    )
                    changed.add(evalset.name, moved, d_old, d_new, n_ref, 1)
                    if moved:
                        print(
                            f"(d) {evalset.name}/{item.name}: order changed, CER {100 * d_old / n_ref:.2f} -> {100 * d_new / n_ref:.2f} %",
                            flush=True,
                        )

    print()
    if "a" in parts:
        print("(a) columns: whole-page CER of the same regions in today's order, the layout's,")
        print("    and each pasted page's own regions in today's order, page after page")
        print(
            f"{'composite':28s} {'pages':>5s} {'today %':>8s} {'layout %':>9s} {'by page %':>10s}"
        )
        for key, (d_old, d_new, d_best, n_ref, count) in cols.rows.items():
            print(
                f"{key:28s} {int(count):5d} {100 * d_old / n_ref:8.2f} {100 * d_new / n_ref:9.2f}"
                f" {100 * d_best / n_ref:10.2f}"
            )
    if "b" in parts:
        print("\n(b) turned pages: angle found, CER turned back and read vs read as scanned")
        print(f"{'turn':8s} {'pages':>5s} {'right':>5s} {'turned back %':>14s} {'as is %':>8s}")
        for key, (right, d_fixed, d_as_is, n_ref, count) in turned.rows.items():
            print(
                f"{key:8s} {int(count):5d} {int(right):5d} {100 * d_fixed / n_ref:14.2f} {100 * d_as_is / n_ref:8.2f}"
            )
    if "d" in parts:
        print("\n(d) eval sets: pages whose order the layout changes; CER (bench scoring)")
        print(f"{'set':16s} {'pages':>5s} {'changed':>7s} {'today %':>8s} {'layout %':>9s}")
        for key, (moved, d_old, d_new, n_ref, count) in changed.rows.items():
            print(
                f"{key:16s} {int(count):5d} {int(moved):7d} {100 * d_old / n_ref:8.2f} {100 * d_new / n_ref:9.2f}"
            )
    if "c" in parts and read_seconds:
        print("\n(c) cost per page (one core)")
        print(f"read_page (detect + recognize)   median {np.median(read_seconds):7.3f} s")
        if layout_seconds:
            print(
                f"layout step                      median {1000 * np.median(layout_seconds):7.2f} ms"
                f"  max {1000 * max(layout_seconds):.2f} ms"
            )
        if orient_seconds:
            print(
                f"orientation check (on its boxes) median {1000 * np.median(orient_seconds):7.1f} ms"
                f"  max {1000 * max(orient_seconds):.0f} ms; detection it reuses "
                f"median {np.median(orient_pages):.3f} s"
            )
    if args.json:
        args.json.write_text(json.dumps(items, indent=1))


if __name__ == "__main__":
    main()
