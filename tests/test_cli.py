"""The `ocrq` CLI through click's CliRunner: help everywhere, the embedded run, errors."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from ocrq.scoring import cer_counts
from producer.cli import cli
from tests.fixtures_text import write_pages


def _all_commands(group: click.Group, prefix=()):
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _all_commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [(), *_all_commands(cli)], ids=lambda p: " ".join(p) or "ocrq")
def test_help_on_every_command(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--help" in result.output


def test_expected_commands_exist():
    names = set(cli.commands)
    assert {"submit", "run", "status", "export", "retry", "models"} <= names


@pytest.mark.integration  # the local pool
def test_run_embedded_mode_end_to_end(tmp_path):
    truth = write_pages(tmp_path / "in", 4)
    first = tmp_path / "in" / "page_000.png"
    copy = tmp_path / "in" / "copy.png"
    copy.write_bytes(first.read_bytes())
    truth[str(copy.resolve())] = truth[str(first.resolve())]
    (tmp_path / "in" / "notes.txt").write_text("not matched by the pattern")
    db_url = f"sqlite:///{tmp_path / 'r.db'}"
    out = tmp_path / "r.json"
    runner = CliRunner()
    args = ["run", str(tmp_path / "in"), "-p", "*.png", "--db", db_url, "-w", "2", "-o", str(out)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "4 done" in result.output and "1 duplicates" in result.output
    records = json.loads(out.read_text())
    assert len(records) == 5
    for record in records:
        if record["status"] == "duplicate":
            continue
        dist, n = cer_counts(record["text"], truth[record["path"]])
        assert dist / n < 0.05, record["text"]
    done = [r for r in records if r["status"] == "done"]
    assert all(r["worker"] and r["attempts"] == 1 for r in done)
    assert all(r["provenance"]["engine_loads"] == 1 for r in done)

    # resume: a second run finds everything done and does no work
    again = runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "0 done" in again.output and "5 already done" in again.output


def test_submit_without_broker_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("OCRQ_BROKER_URL", "redis://127.0.0.1:1/0")
    write_pages(tmp_path / "in", 1)
    result = CliRunner().invoke(
        cli, ["submit", str(tmp_path / "in"), "--db", f"sqlite:///{tmp_path}/x.db"]
    )
    assert result.exit_code == 3
    assert "cannot reach the broker" in result.output and "ocrq run" in result.output
    assert "Traceback" not in result.output


def test_missing_input_path_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "nope")])
    assert result.exit_code == 2


@pytest.mark.integration
def test_status_shows_counts_and_queue_depth(tmp_path, redis_client):
    write_pages(tmp_path / "in", 2)
    db = f"sqlite:///{tmp_path}/q.db"
    runner = CliRunner()
    submitted = runner.invoke(cli, ["submit", str(tmp_path / "in"), "--db", db])
    assert submitted.exit_code == 0, submitted.output
    result = runner.invoke(cli, ["status", "--db", db])
    assert result.exit_code == 0, result.output
    assert "queued 2" in result.output and "ocrq.ppocr 2" in result.output


@pytest.mark.integration
def test_status_counts_queued_jobs_left_without_a_message(tmp_path, redis_client):
    """Jobs still queued whose message is gone (a worker on another database dropped
    them) are named, once they were published over 10 s ago; a fresh queue is not."""
    from sqlalchemy import update

    from ocrq.storage import Job, Store

    write_pages(tmp_path / "in", 3)
    db = f"sqlite:///{tmp_path}/q.db"
    runner = CliRunner()
    assert runner.invoke(cli, ["submit", str(tmp_path / "in"), "--db", db]).exit_code == 0
    redis_client.rpop("ocrq.ppocr")
    redis_client.rpop("ocrq.ppocr")
    fresh = runner.invoke(cli, ["status", "--db", db])
    assert "queued 3" in fresh.output and "no message in the broker" not in fresh.output
    with Store(db).write() as conn:
        conn.execute(update(Job).values(enqueued_at=Job.enqueued_at - 60))
    late = runner.invoke(cli, ["status", "--db", db])
    assert late.exit_code == 0, late.output
    assert "2 queued or running jobs have no message in the broker" in late.output
    assert "ocrq retry --lost" in late.output


def test_unreachable_database_exit_code(tmp_path):
    result = CliRunner().invoke(
        cli, ["status", "--db", "postgresql+psycopg://nobody:pw@127.0.0.1:1/none"]
    )
    assert result.exit_code == 4
    assert "cannot reach results database" in result.output and ":pw@" not in result.output


@pytest.mark.integration
def test_retry_lost_resends_only_vanished_messages(tmp_path, redis_client):
    write_pages(tmp_path / "in", 3)
    db = f"sqlite:///{tmp_path}/q.db"
    runner = CliRunner()
    assert runner.invoke(cli, ["submit", str(tmp_path / "in"), "--db", db]).exit_code == 0
    assert redis_client.llen("ocrq.ppocr") == 3
    redis_client.rpop("ocrq.ppocr")  # a message lost between the broker and a worker
    result = runner.invoke(cli, ["retry", "--lost", "--grace", "0", "--db", db])
    assert result.exit_code == 0, result.output
    assert "re-enqueued 1 ppocr jobs whose message was lost" in result.output
    assert redis_client.llen("ocrq.ppocr") == 3


def test_retry_needs_a_what(tmp_path):
    result = CliRunner().invoke(cli, ["retry", "--db", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 2 and "--failed" in result.output


@pytest.mark.integration  # the local pool
def test_run_with_a_missing_model_fails_fast_with_the_reason(tmp_path):
    write_pages(tmp_path / "in", 1)
    result = CliRunner().invoke(
        cli,
        ["run", str(tmp_path / "in"), "--engine", "trocr-onnx", "--model", "no-such-model"]
        + ["--db", f"sqlite:///{tmp_path}/x.db", "-w", "1"],
        env={"OCRQ_MODELS": str(tmp_path / "models")},
    )
    assert result.exit_code == 5, result.output
    assert "worker could not start" in result.output and "no-such-model" in result.output


@pytest.mark.parametrize(
    ("name", "fmt"), [("out.pdf", "pdf"), ("out.txt", "txt"), ("o.xml", "alto")]
)
def test_a_per_document_extension_on_one_output_file_is_refused_before_any_ocr(tmp_path, name, fmt):
    write_pages(tmp_path / "in", 1)
    db = tmp_path / "r.db"
    for args in (["run", str(tmp_path / "in")], ["export"]):
        result = CliRunner().invoke(
            cli, [*args, "--db", f"sqlite:///{db}", "-o", str(tmp_path / name)]
        )
        assert result.exit_code == 2, result.output
        assert f"--format {fmt}" in result.output and "one file per document" in result.output
        assert not (tmp_path / name).exists()  # no JSON lines written under a .pdf name
        if args[0] == "run":
            assert not db.exists()  # refused before the run opened the results or read a page
