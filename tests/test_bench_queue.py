"""The bench's queue runner: `ocrq run` with pinned workers in a subprocess, results read
back from its export and scored like the other runners (slow: a whole `ocrq run`)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.evalsets import discover
from bench.queue import run_queue
from bench.report import summarize
from tests.fixtures_text import render_page, render_runs

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_queue_runner_reads_back_the_export_and_scores_it(tmp_path, monkeypatch):
    folder = tmp_path / "pages"
    folder.mkdir()
    texts = [["Invoice 2024-118", "Total due 1,234.50 EUR"], ["The quick brown fox"]]
    for i, lines in enumerate(texts):
        Image.fromarray(render_page(lines)).save(folder / f"p{i}.png")
        (folder / f"p{i}.gt.txt").write_text("\n".join(lines), encoding="utf-8")
    byline, _ = render_runs(
        [("By ", False), ("E", False), ("dwin ", True), ("L", False), ("ee", True)]
    )
    Image.fromarray(np.pad(byline, ((40, 40), (40, 40), (0, 0)), constant_values=255)).save(
        folder / "p2.png"
    )
    (folder / "p2.gt.txt").write_text("By Edwin Lee", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # relative paths, as `make bench` gives ../shared/eval
    (evalset,) = discover([folder.relative_to(tmp_path)])
    assert not evalset.items[0].image.is_absolute()
    images = [i.image for i in evalset.items]
    result = run_queue(images, 2, "fp32", tmp_path / "models", small_caps="lower")
    assert result.error is None
    assert [r.index for r in result.items] == [0, 1, 2]
    assert result.items[2].text.strip() == "By Edwin Lee"  # `ocrq run --small-caps lower`
    assert "quick brown fox" in result.items[1].text
    assert all(r.seconds > 0 and r.boxes and r.lines >= 1 for r in result.items)
    assert result.wall_seconds > 0 and result.total_seconds > result.wall_seconds
    assert result.peak_rss_mb and result.peak_rss_mb[0] > 20
    row = summarize("queue", evalset, 2, result, "fp32").row
    assert row.status == "ok" and row.cer < 0.1 and row.items_per_s > 0
