"""Exporters stream from a real SQLite file: valid JSON array, JSONL, CSV per page/region."""

from __future__ import annotations

import base64
import csv
import io
import json

from ocrq.results import RegionResult, page_text
from ocrq.storage import DUPLICATE, NewJob, Store, model_key
from producer.export import ExportOptions, write_export

OPTIONS = {"engine": "ppocr", "model": None, "precision": "fp32"}
QUAD = [[0, 0], [50, 0], [50, 10], [0, 10]]


def _store_with_results(url: str) -> Store:
    store = Store(url)
    key = model_key("ppocr", None, "fp32")
    batch = store.create_batch(["/d"], ["*.png"], OPTIONS)
    a, b = store.add_jobs(
        batch,
        [NewJob("/d/a.png", "a" * 64, 5), NewJob('/d/b,"quoted".png', "b" * 64, 5)],
        OPTIONS,
        key,
    )
    store.add_jobs(batch, [NewJob("/d/copy.png", "a" * 64, 5, DUPLICATE, a)], OPTIONS, key)
    store.start_job(a, "w")
    regions = [
        RegionResult(0, 0, QUAD, "Hello, world", 0.9),
        RegionResult(0, 1, QUAD, "exam-", 0.8, 1),
        RegionResult(1, 0, QUAD, 'ple "two"', 0.7),
    ]
    store.finish_job(
        a, regions, pages=2, timings={"total": 1.0}, provenance={"x": 1}, options=OPTIONS
    )
    store.start_job(b, "w")
    store.fail_job(b, "not an image (looks like HTML)")
    return store


def _export(store, **kw) -> str:
    out = io.StringIO()
    write_export(store, out, ExportOptions(**kw))
    return out.getvalue()


def test_json_is_one_valid_array(sqlite_url):
    store = _store_with_results(sqlite_url)
    data = json.loads(_export(store, fmt="json", chunk=2))
    assert [d["path"] for d in data] == ["/d/a.png", '/d/b,"quoted".png', "/d/copy.png"]
    assert data[0]["text"] == 'Hello, world\nexam-\n\nple "two"'
    assert data[0]["mean_confidence"] == 0.8 and data[0]["pages"] == 2
    assert data[1]["status"] == "failed" and data[1]["error"].startswith("not an image")
    # a duplicate is exported with the original's text
    assert data[2]["status"] == "duplicate" and data[2]["text"] == data[0]["text"]


def test_empty_json_export_is_valid(sqlite_url):
    assert json.loads(_export(Store(sqlite_url), fmt="json")) == []


def test_jsonl_one_object_per_line(sqlite_url):
    lines = _export(_store_with_results(sqlite_url), fmt="jsonl").splitlines()
    assert len(lines) == 3
    assert [json.loads(line)["job_id"] for line in lines] == [1, 2, 3]


def test_csv_per_region_and_per_page(sqlite_url):
    store = _store_with_results(sqlite_url)
    rows = list(csv.DictReader(io.StringIO(_export(store, fmt="csv", level="region"))))
    # 3 regions of job 1, and the same 3 again for its duplicate
    assert len(rows) == 6
    assert rows[0]["text"] == "Hello, world" and rows[0]["x1"] == "50.0"
    pages = list(csv.DictReader(io.StringIO(_export(store, fmt="csv", level="page"))))
    assert pages[1]["path"] == '/d/b,"quoted".png' and pages[1]["status"] == "failed"


def test_dehyphenate_option(sqlite_url):
    data = json.loads(_export(_store_with_results(sqlite_url), fmt="json", dehyphenate=True))
    assert "example" in data[0]["text"].replace("\n", "")


def test_page_text_joins_lines_and_separates_pages():
    regions = [
        RegionResult(0, 0, QUAD, "Milk", 0.9, line=0),
        RegionResult(0, 1, QUAD, "1.20 ", 0.9, line=0),
        RegionResult(0, 2, QUAD, "exam-", 0.9, line=1),
        RegionResult(0, 3, QUAD, "ple", 0.9, line=2),
        RegionResult(1, 0, QUAD, "c", 0.9, line=0),
    ]
    assert page_text(regions) == "Milk 1.20\nexam-\nple\n\nc"
    assert page_text(regions, join_hyphens=True) == "Milk 1.20\nexample\n\nc"


def test_region_rows_read_back_as_results():
    row = {"page": 2, "idx": 1, "line": 3, "quad": QUAD, "text": "t", "confidence": 0.5, "x0": 0}
    assert RegionResult.from_row(row) == RegionResult(2, 1, QUAD, "t", 0.5, line=3)


def test_non_utf8_paths_export_readable(sqlite_url):
    from ocrq.storage import encode_path

    store = Store(sqlite_url)
    batch = store.create_batch([], [], OPTIONS)
    raw = "/d/caf\udce9.png"
    store.add_jobs(
        batch, [NewJob(encode_path(raw), "e" * 64, 1)], OPTIONS, model_key("ppocr", None, "fp32")
    )
    (record,) = json.loads(_export(store, fmt="json"))
    assert record["path"] == "/d/caf\\xe9.png"
    assert base64.b64decode(record["path_bytes"]) == b"/d/caf\xe9.png"


def test_a_name_holding_backslash_x_is_told_apart_from_a_non_utf8_byte(sqlite_url):
    from ocrq.storage import encode_path

    store = Store(sqlite_url)
    batch = store.create_batch([], [], OPTIONS)
    names = ["/d/bad\udcff", "/d/bad\\xff"]  # the byte 0xff; the four characters \xff
    jobs = [NewJob(encode_path(n), f"{i}" * 64, 1) for i, n in enumerate(names)]
    store.add_jobs(batch, jobs, OPTIONS, model_key("ppocr", None, "fp32"))
    byte, text = json.loads(_export(store, fmt="json"))
    assert byte["path"] == text["path"] == "/d/bad\\xff"  # shown alike to a person...
    assert base64.b64decode(byte["path_bytes"]) == b"/d/bad\xff"  # ...told apart exactly
    assert text["path_bytes"] is None
