"""Write rendered two-column book pages, bilevel as a 300-dpi scan, with their truth.

    python scripts/make_column_pages.py /tmp/colpages --sizes 7,8,9,10,11,12,14 --gutters 1,2
    EVAL=/tmp python scripts/eval_engine.py --sets colpages --runners 'ours-int8,...'

For detector experiments that must not be tuned to `../shared/eval`: every page is
made here, so the print size (and so the text's height at the detector's probe scale)
and the gutter between columns are known and swept. A page is US letter at 300 dpi in a
serif face, two justified columns, blurred and thresholded as a scanner's
bilevel mode does; the truth is the first column's lines, then the second's.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

from PIL import Image, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures_text import font_dir, render_columns  # noqa: E402

PAGE = (2550, 3300)  # US letter at 300 dpi
MARGIN = 200
# Times' metrics where the system has Liberation; matplotlib's DejaVu Serif always.
FONTS = ("/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf", "DejaVuSerif.ttf")


def font_file(face: str) -> Path:
    return Path(face) if Path(face).is_absolute() else font_dir() / face


def vocabulary() -> list[str]:
    """English words from the standard library's own docstrings: any prose will do."""
    import argparse as a
    import collections
    import email
    import json
    import logging
    import pathlib
    import textwrap

    text = " ".join(
        m.__doc__ or "" for m in (a, collections, email, json, logging, pathlib, textwrap)
    )
    return [w for w in re.findall(r"[A-Za-z][a-z]+[,.;]?", text) if len(w) <= 9]


def wrap(words: list[str], font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines, line = [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if font.getlength(trial) > width and line:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def page(points: float, gutter_em: float, face: str, rng: random.Random, words: list[str]):
    px = round(points * 300 / 72)
    font = ImageFont.truetype(str(font_file(face)), px)
    gutter = round(gutter_em * px)
    col_w = (PAGE[0] - 2 * MARGIN - gutter) // 2
    rows = (PAGE[1] - 2 * MARGIN) // round(px * 1.25)
    columns = [wrap(rng.choices(words, k=rows * 20), font, col_w)[:rows] for _ in range(2)]
    image = render_columns(columns, px, gutter, font_file(face), (PAGE[1], PAGE[0]), MARGIN)
    return Image.fromarray(image).convert("1"), "\n".join(columns[0] + columns[1]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--sizes", default="7,8,9,10,11,12,14", help="print sizes, points")
    ap.add_argument("--gutters", default="1,2", help="column gaps, in ems of the print size")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng, words = random.Random(args.seed), vocabulary()
    for points in (float(s) for s in args.sizes.split(",")):
        for gutter in (float(g) for g in args.gutters.split(",")):
            for face in (f for f in FONTS if font_file(f).exists()):
                image, truth = page(points, gutter, face, rng, words)
                name = f"p{points:04.1f}_g{gutter:.1f}_{font_file(face).stem.split('-')[0]}"
                image.save(args.out / f"{name}.tif", compression="group4")
                (args.out / f"{name}.gt.txt").write_text(truth, encoding="utf-8")
                print(name)


if __name__ == "__main__":
    main()
