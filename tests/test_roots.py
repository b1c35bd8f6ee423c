"""Safe by default: with no OCRQ_INPUT_ROOTS a worker reads only under the folders a job's
batch was submitted from, so a symlink in a submitted folder cannot lead it to
/etc/passwd or to an image elsewhere; OCRQ_INPUT_ROOTS widens it. Through `ocrq run`'s
real worker processes (the same job code as a Celery worker's)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from producer.cli import cli
from tests.fixtures_text import write_pages

pytestmark = pytest.mark.integration


def _run(tmp_path, folder, monkeypatch, roots: str | None) -> dict[str, dict]:
    if roots is None:
        monkeypatch.delenv("OCRQ_INPUT_ROOTS", raising=False)
    else:
        monkeypatch.setenv("OCRQ_INPUT_ROOTS", roots)
    out = tmp_path / f"out-{roots is None}.json"
    db = f"sqlite:///{tmp_path / f'r-{roots is None}.db'}"
    args = ["run", str(folder), "-p", "*.png", "--db", db, "-w", "1", "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(out.read_text())}


def test_a_symlink_out_of_the_submitted_folder_is_not_read(tmp_path, monkeypatch):
    folder = tmp_path / "scans"
    write_pages(folder, 1)
    elsewhere = tmp_path / "elsewhere"
    write_pages(elsewhere, 2)
    (folder / "passwd.png").symlink_to("/etc/passwd")
    (folder / "other.png").symlink_to(elsewhere / "page_001.png")

    records = _run(tmp_path, folder, monkeypatch, roots=None)
    assert records["page_000.png"]["status"] == "done"
    for name in ("passwd.png", "other.png"):
        assert records[name]["status"] == "failed", records[name]
        assert "outside the configured input roots" in records[name]["error"]
        assert "submitted from" in records[name]["error"]

    records = _run(tmp_path, folder, monkeypatch, roots=f"{folder}:{elsewhere}")
    assert records["other.png"]["status"] == "done"  # widened by the variable
    assert records["passwd.png"]["status"] == "failed"
