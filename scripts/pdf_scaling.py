"""A long PDF across the workers: wall time with 1 and 2 pinned workers (`ocrq run -w N`),
and the largest process's peak RSS for a 1-page and an N-page PDF of the same page.

    python scripts/pdf_scaling.py ../shared/eval/pages/oldbooks --pages 40 --long 200

Builds its PDFs (img2pdf, lossless) in a temporary folder from the images given, runs
`ocrq run` under /usr/bin/time (whose peak RSS is the largest of the process and the
workers it waited for), and prints the figures.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import img2pdf

IMAGES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def _pdf(images: list[Path], count: int, out: Path) -> Path:
    pages = [str(images[i % len(images)]) for i in range(count)]
    out.write_bytes(img2pdf.convert(pages))
    return out


def _run(pdf: Path, workers: int, tmp: Path) -> tuple[float, float, str]:
    db = f"sqlite:///{tmp / f'{pdf.stem}-{workers}-{time.monotonic_ns()}.db'}"
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "producer.cli", "run", str(pdf)]
    cmd += ["--db", db, "-w", str(workers)]
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    summary = next(line for line in out.stdout.splitlines() if line.startswith("batch"))
    return wall, int(rss.group(1)) / 1024 if rss else float("nan"), summary


@click.command()
@click.argument("folder", type=click.Path(exists=True, path_type=Path))
@click.option("--pages", default=40, show_default=True, help="Pages of the scaling PDF.")
@click.option("--long", "long_pages", default=200, show_default=True, help="Pages, RSS PDF.")
def main(folder: Path, pages: int, long_pages: int) -> None:
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGES)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        doc = _pdf(images, pages, tmp / "long.pdf")
        one, _, s1 = _run(doc, 1, tmp)
        two, _, s2 = _run(doc, 2, tmp)
        print(f"{pages}-page PDF: 1 worker {one:.1f} s, 2 workers {two:.1f} s: {two / one:.2f}x")
        print(f"  {s1}\n  {s2}")
        small = _pdf(images[:1], 1, tmp / "one.pdf")
        big = _pdf(images[:1], long_pages, tmp / "same.pdf")
        _, rss_one, _ = _run(small, 1, tmp)
        _, rss_big, s3 = _run(big, 1, tmp)
        print(
            f"peak RSS, largest process: 1-page PDF {rss_one:.0f} MB, {long_pages}-page PDF "
            f"{rss_big:.0f} MB ({rss_big / rss_one:.2f}x)\n  {s3}"
        )


if __name__ == "__main__":
    main()
