"""worker.heap: freed heap really goes back to the OS, and only when there is enough of
it to be worth the next job's page faults (measured in fresh processes, so this test
process's own heap does not blur the figures)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = str(Path(__file__).resolve().parent.parent)

# Many small blocks (below malloc's mmap threshold, so they live on the heap), every
# tenth kept alive so the freed space is fragmented and cannot shrink away by itself.
_PRELUDE = """
import json, sys
sys.path.insert(0, {repo!r})
from worker.heap import SLACK_MB, release_free_memory, rss_mb

def churn(mb):
    blocks = [bytearray(64 * 1024) for _ in range(int(mb * 16))]
    kept = blocks[::10]
    del blocks
    return kept
"""

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; trims glibc's heap"
)


def _run(body: str) -> dict:
    script = _PRELUDE.format(repo=REPO) + textwrap.dedent(body)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_forced_trim_returns_freed_heap_to_the_os():
    figures = _run(
        """
        kept = churn(250)
        freed = rss_mb()
        released = release_free_memory(force=True)
        print(json.dumps({"freed": freed, "trimmed": rss_mb(), "released": released}))
        """
    )
    assert figures["released"] is True
    # ~225 of the ~250 MB was freed; without the trim RSS keeps nearly all of it.
    assert figures["freed"] - figures["trimmed"] > 150, figures


def test_a_job_that_grew_the_process_little_is_not_trimmed_for():
    figures = _run(
        """
        release_free_memory(force=True)
        kept = churn(SLACK_MB / 4)
        small = release_free_memory()
        kept2 = churn(4 * SLACK_MB)
        large = release_free_memory()
        print(json.dumps({"small": small, "large": large}))
        """
    )
    assert figures == {"small": False, "large": True}


def test_a_long_job_is_trimmed_for_even_under_the_slack():
    """A job that took `TRIM_AFTER_SECONDS` or more (a large page) is followed by a trim
    even when it grew the process by less than the slack; a quick one is not."""
    figures = _run(
        """
        import time
        from worker.heap import TRIM_AFTER_SECONDS
        release_free_memory(force=True)
        kept = churn(SLACK_MB / 4)
        quick = release_free_memory()
        kept2 = churn(SLACK_MB / 4)
        time.sleep(TRIM_AFTER_SECONDS)
        before = rss_mb()
        slow = release_free_memory()
        print(json.dumps({"quick": quick, "slow": slow, "freed": before - rss_mb()}))
        """
    )
    assert (figures["quick"], figures["slow"]) == (False, True), figures
    assert figures["freed"] > 20, figures  # the two jobs freed about 85 MB between them


def test_rss_is_read_from_proc():
    from worker.heap import rss_mb

    assert 10 < rss_mb() < 100_000


def test_rss_without_proc_comes_from_psutil(monkeypatch):
    """Where there is no /proc (macOS), the slack rule still needs a real figure."""
    import builtins

    from worker import heap

    from_proc = heap.rss_mb()
    real_open = builtins.open

    def no_proc(path, *args, **kwargs):  # psutil itself reads /proc on Linux: spare it
        if str(path) == "/proc/self/statm":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    assert abs(heap.rss_mb() - from_proc) < 0.1 * from_proc


def test_the_detector_arena_is_emptied_after_a_job_and_reads_the_same_after():
    """The detector keeps ORT's arena between runs; after a job it must be handed back
    (a plain malloc_trim cannot reach it), and the next page reads alike."""
    figures = _run(
        """
        from pathlib import Path
        from models.ppocr.det_pre import DetectorConfig
        from models.ppocr.engine import load_detector
        from tests.fixtures_text import SAMPLE_LINES, render_page

        # The whole page, not a window around its text nor in bands: the arena must
        # hold a page.
        config = DetectorConfig(crop_margin=0, band_above=0)
        detector = load_detector(Path("."), threads=1, config=config)
        page = render_page(SAMPLE_LINES * 10, height=40, width=2200)
        release_free_memory(force=True)
        before = [r.quad for r in detector.detect(page)]
        after_page = rss_mb()
        release_free_memory()  # no caches released: the arena keeps its blocks
        heap_only = rss_mb()
        release_free_memory(release_caches=detector.release_memory)
        emptied = rss_mb()
        again = [r.quad for r in detector.detect(page)]
        print(json.dumps({"page": after_page, "heap_only": heap_only, "emptied": emptied,
                          "same": before == again, "n": len(before)}))
        """
    )
    assert figures["n"] == 40, figures
    assert figures["page"] - figures["heap_only"] < 100, figures  # the arena still holds it
    assert figures["heap_only"] - figures["emptied"] > 150, figures
    assert figures["same"], figures


def test_without_a_glibc_heap_the_loaded_size_is_still_taken(monkeypatch):
    """macOS has no malloc_trim: the load-time call must still record the loaded size, so
    the slack rule has a base; the caches (the detector's arena) are emptied after every
    job either way."""
    from worker import heap

    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)
    monkeypatch.setattr(heap, "_loaded", None)
    released: list[int] = []
    assert heap.release_free_memory(force=True) is False  # as warm.init_process calls it
    assert heap._loaded is not None
    assert heap.release_free_memory(release_caches=lambda: released.append(1)) is False
    assert released == [1]  # a job that grew the process little: caches only
    monkeypatch.setattr(heap, "_loaded", heap.rss_mb() - 2 * heap.SLACK_MB)
    assert heap.release_free_memory(release_caches=lambda: released.append(2)) is False
    assert released == [1, 2]  # over the slack: still nothing to trim, caches emptied


def test_the_heap_is_trimmed_before_a_large_page_only():
    """Free heap left by earlier small jobs goes back to the OS before a large page is
    read, and nothing happens before a small one."""
    got = _run(
        """
        from worker.heap import LARGE_PAGE_PIXELS, trim_before_large_page
        kept = churn(96)
        before = rss_mb()
        small = trim_before_large_page(LARGE_PAGE_PIXELS - 1)
        after_small = rss_mb()
        large = trim_before_large_page(LARGE_PAGE_PIXELS)
        print(json.dumps({"before": before, "after_small": after_small, "after_large": rss_mb(),
                          "small": small, "large": large}))
        """
    )
    assert got["small"] is False and got["large"] is True
    assert got["after_small"] > got["before"] - 10  # nothing given back before a small page
    assert got["after_large"] < got["before"] - 50  # most of the freed 86 MB given back
