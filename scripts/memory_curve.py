"""RSS of one warm worker process over many pages: does it stay flat?

    python scripts/memory_curve.py ../shared/eval/lines ../shared/eval/pages/sroie --pages 1000

Loads the engine once exactly as a worker child does (`worker.warm.init_process`), then
reads images from the folders round-robin (each folder in turn, cycling), printing the
process RSS every `--every` pages: its value between pages, the largest such value, and
the true high-water mark (`ru_maxrss`, which includes the moments inside a page, e.g.
the detector's activations on a large page, that sampling between pages never sees),
and how many times the heap was trimmed after a page or before a large one (`worker/heap.py`,
as a worker does).
"""

from __future__ import annotations

import itertools
import resource
import sys
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


@click.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--pages", default=1000, show_default=True)
@click.option("--every", default=50, show_default=True)
@click.option("--precision", default="auto", show_default=True)
def main(folders, pages, every, precision) -> None:
    sys.path.insert(0, str(REPO))
    import psutil

    from ocrq.config import EngineOptions, settings_from_env
    from ocrq.images import iter_pages
    from worker.heap import release_free_memory, trim_before_large_page
    from worker.pipeline import read_pages
    from worker.warm import init_process

    proc = psutil.Process()
    settings = settings_from_env()
    settings = type(settings)(**{**settings.__dict__, "db_url": "sqlite://"})
    settings = type(settings)(**{**settings.__dict__, "engine": EngineOptions(precision=precision)})
    state = init_process(0, settings)
    mb = lambda: proc.memory_info().rss / 2**20  # noqa: E731
    print(f"engine loaded: rss {mb():.0f} MB")
    per_folder = [
        sorted(p for p in Path(f).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) for f in folders
    ]
    stream = itertools.cycle(
        [p for group in itertools.zip_longest(*per_folder) for p in group if p is not None]
    )
    peak, started, trims = mb(), time.perf_counter(), 0

    def before_page(pixels: int) -> None:  # as a worker does before each large page
        nonlocal trims
        trims += trim_before_large_page(pixels)

    hwm = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731 (KiB)
    print(f"{'pages':>6} {'rss MB':>7} {'peak MB':>8} {'hwm MB':>7} {'trims':>6} {'s':>7}")
    for n in range(1, pages + 1):
        job_pages = iter_pages(next(stream), settings.limits)
        for _ in read_pages(state.engine, job_pages, before_page):
            pass  # the worker's own page loop
        # As a worker does after each job.
        trims += release_free_memory(release_caches=state.engine.release_memory)
        peak = max(peak, mb())
        if n % every == 0 or n == pages:
            print(
                f"{n:6d} {mb():7.0f} {peak:8.0f} {hwm():7.0f} {trims:6d} "
                f"{time.perf_counter() - started:7.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
