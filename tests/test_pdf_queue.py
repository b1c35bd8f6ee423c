"""Documents through the queue: `ocrq submit` of a folder of PDFs, a multi-page TIFF and a
photo, read by a real Celery worker (one job per page), then exported as searchable PDFs
and text and read back with poppler's pdftotext. Bad PDFs fail their own job with a
reason, the document's other pages and the other files are read, and a re-submit after
an interruption runs only the pages not done."""

from __future__ import annotations

import io
import json
import subprocess

import pikepdf
import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import update

from ocrq.queue import queue_name
from ocrq.scoring import cer_counts
from ocrq.storage import Job, Store
from producer.cli import cli
from tests.fixtures_pdf import _pdf_bytes, combine, scan_image, scan_pdf, text_pdf
from tests.helpers import Worker, wait_until_finished

pytestmark = pytest.mark.integration

SCANNED = [["Invoice 2024-118", "Total 1,234.50 EUR"], ["The quick brown fox", "jumps over"]]
BORN_DIGITAL = ["Typed in a word processor", "and saved as PDF"]


def _folder(tmp_path):
    scans = tmp_path / "scans"
    (scans / "letters").mkdir(parents=True)
    (scans / "letters" / "two.pdf").write_bytes(scan_pdf([scan_image(p) for p in SCANNED]))
    mixed = combine(text_pdf([BORN_DIGITAL]), scan_pdf([scan_image(SCANNED[1])]))
    (scans / "mixed.pdf").write_bytes(mixed)
    frames = [Image.fromarray(scan_image(p)) for p in SCANNED]
    frames[0].save(scans / "pages.tif", save_all=True, append_images=frames[1:])
    locked = pikepdf.open(io.BytesIO(text_pdf([["Secret"]])))
    (scans / "locked.pdf").write_bytes(
        _pdf_bytes(locked, encryption=pikepdf.Encryption(user="pw", owner="o", R=6))
    )
    (scans / "cut.pdf").write_bytes((scans / "letters" / "two.pdf").read_bytes()[:2000])
    (scans / "notes.pdf").write_text("meeting notes, not a PDF\n")
    return scans


def _ok(dist_n: tuple[int, int]) -> bool:
    dist, n = dist_n
    return dist / n < 0.05


def test_documents_through_a_worker(tmp_path, redis_url, redis_client):
    scans = _folder(tmp_path)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    runner = CliRunner()
    submitted = runner.invoke(cli, ["submit", str(scans), "--db", db])
    assert submitted.exit_code == 0, submitted.output
    store = Store(db)
    jobs = list(store.iter_jobs())
    pages = {}
    for job in jobs:
        pages.setdefault(job["path"].rsplit("/", 1)[-1], []).append(job["page"])
    assert pages == {
        "cut.pdf": [0],
        "locked.pdf": [0],
        "mixed.pdf": [0, 1],
        "notes.pdf": [0],
        "pages.tif": [0, 1],
        "two.pdf": [0, 1],
    }
    with Worker(db, redis_url, tmp_path / "w.log", concurrency=2) as worker:
        wait_until_finished(db, len(jobs), timeout=300, worker=worker)

    by_name = {}
    for job in store.iter_jobs():
        by_name.setdefault(job["path"].rsplit("/", 1)[-1], {})[job["page"]] = job
    assert "encrypted: it needs its password" in by_name["locked.pdf"][0]["error"]
    assert "truncated" in by_name["cut.pdf"][0]["error"]
    assert "not a readable PDF" in by_name["notes.pdf"][0]["error"]
    for name in ("two.pdf", "pages.tif"):
        assert {p: j["status"] for p, j in by_name[name].items()} == {0: "done", 1: "done"}
    # the born-digital page keeps its own text; the scanned one is OCRed
    assert by_name["mixed.pdf"][0]["page_info"]["source"] == "pdf-text"
    assert by_name["mixed.pdf"][1]["page_info"]["source"] == "embedded"
    assert by_name["two.pdf"][0]["page_info"]["source"] == "embedded"
    assert by_name["pages.tif"][1]["page_info"]["source"] == "image"

    status = runner.invoke(cli, ["status", "--db", db])
    assert "documents: 6  done 3  partial 0  failed 3  open 0" in status.output, status.output

    out = tmp_path / "out"
    exported = runner.invoke(cli, ["export", "--db", db, "--format", "pdf", "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    assert "locked.pdf: page 1 missing: encrypted" in exported.output
    two = subprocess.run(
        ["pdftotext", str(out / "letters" / "two.pdf"), "-"], capture_output=True, text=True
    )
    assert _ok(cer_counts(two.stdout, "\n".join(SCANNED[0] + SCANNED[1])))
    mixed = subprocess.run(
        ["pdftotext", str(out / "mixed.pdf"), "-"], capture_output=True, text=True
    )
    assert _ok(cer_counts(mixed.stdout, "\n".join(BORN_DIGITAL + SCANNED[1])))
    assert (out / "pages.pdf").exists()  # a TIFF becomes a PDF of its frames

    records = json.loads(
        runner.invoke(cli, ["export", "--db", db, "--format", "json", "--per", "page"]).output
    )
    assert len(records) == len(jobs)

    # Interrupted: page 2 of two.pdf never ran. A re-submit runs that page alone.
    with store.write() as conn:
        conn.execute(
            update(Job)
            .where(Job.id == by_name["two.pdf"][1]["id"])
            .values(status="queued", enqueued_at=None)
        )
    redis_client.flushdb()
    again = runner.invoke(cli, ["submit", str(scans), "--db", db])
    assert "1 queued (1 resumed)" in again.output, again.output


def _locked_scan(tmp_path, password: str):
    scans = tmp_path / "locked"
    scans.mkdir()
    pdf = pikepdf.open(io.BytesIO(scan_pdf([scan_image(p) for p in SCANNED])))
    data = _pdf_bytes(pdf, encryption=pikepdf.Encryption(user=password, owner="o", R=6))
    (scans / "two.pdf").write_bytes(data)
    return scans


def _read_back(out, password: str) -> str:
    """The exported PDF is encrypted with the password that opened its source."""
    with pytest.raises(pikepdf.PasswordError):
        pikepdf.open(out)
    text = subprocess.run(
        ["pdftotext", "-upw", password, str(out), "-"], capture_output=True, text=True
    )
    return text.stdout


def test_encrypted_pdf_through_workers_with_a_password_file(tmp_path, redis_url, redis_client):
    """Producer and workers read OCRQ_PDF_PASSWORD_FILE; the password reaches no job row,
    no message and no log."""
    password = "c0rrect-horse"
    scans = _locked_scan(tmp_path, password)
    secrets = tmp_path / "pdf-passwords"
    secrets.write_text(f"not this one\n{password}\n")
    env = {"OCRQ_PDF_PASSWORD_FILE": str(secrets)}
    db_path = tmp_path / "r.db"
    db = f"sqlite:///{db_path}"
    runner = CliRunner()
    submitted = runner.invoke(cli, ["submit", str(scans), "--db", db], env=env)
    assert submitted.exit_code == 0, submitted.output
    queued = redis_client.lrange(queue_name("ppocr"), 0, -1)
    assert len(queued) == 2 and not any(password.encode() in m for m in queued)
    log = tmp_path / "w.log"
    with Worker(db, redis_url, log, concurrency=2, **env) as worker:
        wait_until_finished(db, 2, timeout=300, worker=worker)
    jobs = list(Store(db).iter_jobs())
    assert [(j["page"], j["status"]) for j in jobs] == [(0, "done"), (1, "done")], jobs
    assert password.encode() not in db_path.read_bytes()
    assert password not in log.read_text(errors="replace")

    out = tmp_path / "out"
    exported = runner.invoke(
        cli, ["export", "--db", db, "--format", "pdf", "-o", str(out)], env=env
    )
    assert exported.exit_code == 0, exported.output
    text = _read_back(out / "two.pdf", password)
    assert _ok(cer_counts(text, "\n".join(SCANNED[0] + SCANNED[1])))


def test_run_with_password(tmp_path):
    """`ocrq run --password` reads an encrypted PDF on the local pool; without it, the
    document fails with the reason and export names its missing pages."""
    scans = _locked_scan(tmp_path, "pw")
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'none.db'}"
    refused = runner.invoke(cli, ["run", str(scans), "--db", db, "-w", "1"])
    assert "encrypted: it needs its password" in refused.output, refused.output

    db = f"sqlite:///{tmp_path / 'r.db'}"
    out = tmp_path / "out"
    ran = runner.invoke(
        cli,
        [
            "run",
            str(scans),
            "--db",
            db,
            "-w",
            "1",
            "--password",
            "pw",
            "--format",
            "pdf",
            "-o",
            str(out),
        ],
    )
    assert ran.exit_code == 0, ran.output
    assert "2 done, 0 failed" in ran.output, ran.output
    assert _ok(cer_counts(_read_back(out / "two.pdf", "pw"), "\n".join(SCANNED[0] + SCANNED[1])))
    # decrypted and encrypted anew, the pages still render pixel for pixel as scanned
    assert _render(scans / "two.pdf", "pw") == _render(out / "two.pdf", "pw")


def _render(pdf, password: str) -> bytes:
    pixels = subprocess.run(
        ["pdftoppm", "-upw", password, "-r", "50", "-gray", str(pdf)],
        capture_output=True,
        check=True,
    ).stdout
    assert pixels.count(b"P5\n") == 2  # both pages, as PGM
    return pixels
