"""Layout and orientation through the worker's page loop (`ocrq run`'s real worker
processes): a two-column page reads column by column with its heading first, and a page
scanned sideways or upside down reads like the upright one, its rotation recorded and its
boxes on the page as scanned."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ocrq.scoring import cer_counts
from producer.cli import cli
from tests.fixtures_text import SAMPLE_LINES, render_page
from tests.test_layout import compose

pytestmark = pytest.mark.integration


def _run(tmp_path, folder, per: str) -> list[dict]:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    result = CliRunner().invoke(cli, ["run", str(folder), "-p", "*.png", "--db", db, "-w", "2"])
    assert result.exit_code == 0, result.output
    out = CliRunner().invoke(cli, ["export", "--db", db, "--format", "json", "--per", per])
    return json.loads(out.output)


def test_columns_and_turned_pages_through_the_worker(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    page, cols, _ = compose(2)
    Image.fromarray(page).save(folder / "columns.png")
    upright = render_page(SAMPLE_LINES[:5], height=36)
    for angle in (0, 90, 180, 270):
        Image.fromarray(np.rot90(upright, angle // 90)).save(folder / f"turned{angle}.png")

    pages = {r["path"].rsplit("/", 1)[-1]: r for r in _run(tmp_path, folder, "page")}
    expected = "\n".join(
        ["A Heading Across The Columns"]
        + [line for col in cols for para in col for line in para]
        + ["17"]
    )
    dist, n = cer_counts(pages["columns.png"]["text"], expected)
    assert dist / n < 0.03, pages["columns.png"]["text"]
    truth = "\n".join(SAMPLE_LINES[:5])
    for angle in (0, 90, 180, 270):
        record = pages[f"turned{angle}.png"]
        assert record["page_info"]["rotation"] == angle
        dist, n = cer_counts(record["text"], truth)
        assert dist / n < 0.02, (angle, record["text"])
        h, w = np.rot90(upright, angle // 90).shape[:2]
        for box in record["boxes"]:  # boxes on the page as scanned
            xs, ys = [p[0] for p in box["quad"]], [p[1] for p in box["quad"]]
            assert min(xs) >= 0 and max(xs) <= w and min(ys) >= 0 and max(ys) <= h

    regions = [r for r in _run(tmp_path, folder, "region") if r["path"].endswith("columns.png")]
    blocks = {r["block"] for r in regions}
    assert len(blocks) >= 4  # heading, two columns, page number
