"""`ocrq serve` through a real uvicorn process on a free loopback port and a real HTTP
client (httpx): the embedded local pool, and once the Celery path with a real Redis and a
real worker. Pages are rendered here (tests/fixtures_text.py), never copied from anywhere.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from PIL import Image

from ocrq.scoring import cer
from tests.fixtures_pdf import png_bytes, scan_pdf, text_pdf
from tests.fixtures_text import render_page
from tests.helpers import REPO, Worker, free_port, sqlite_file_url, wait_for

pytestmark = pytest.mark.integration

TOKEN = "test-token-" + uuid.uuid4().hex[:8]


class Served:
    """`python -m server` (the `ocrq serve` command) in a session of its own, on a free
    loopback port; `stop()` sends SIGTERM (a graceful shutdown) and kills what is left."""

    def __init__(
        self,
        folder: Path,
        *args: str,
        token: str | None = TOKEN,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_url = sqlite_file_url(folder / "results.db")
        self.spool = folder / "spool"
        self.token = token
        self.log = folder / "serve.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OCRQ_DB_URL": self.db_url}
        full_env.pop("OCRQ_API_TOKEN", None)
        if token:
            full_env["OCRQ_API_TOKEN"] = token
        full_env.update(env or {})
        cmd = [sys.executable, "-m", "server", "--port", str(self.port)]
        cmd += ["--spool", str(self.spool), *args]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=full_env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_ready()

    def client(self, token: str | None = "default", timeout: float = 120) -> httpx.Client:
        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def wait_ready(self, timeout: float = 180) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.text()}")
            try:
                answer = httpx.get(f"{self.url}/health", timeout=2)
            except httpx.HTTPError:
                return False
            return answer.status_code == 200 and answer.json().get("workers_ready", 1) > 0

        wait_for(ready, timeout, "the server to answer /health", 0.2, detail=self.text)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(40)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # pool children left by a failed stop
        self.proc.wait(10)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def page_png(lines: list[str], height: int = 36) -> bytes:
    return png_bytes(render_page(lines, height=height), dpi=300)


def unique_lines(n: int = 3) -> list[str]:
    """Lines no other test renders: each test's pages are new to the dedupe."""
    tag = uuid.uuid4().hex[:6].upper()
    words = ["Invoice", "Receipt", "Parcel", "Ledger", "Harbour", "Meadow", "Copper"]
    return [f"{words[i % len(words)]} {tag} line {i + 1} total {17 * (i + 3)}.50" for i in range(n)]


def wait_document(client: httpx.Client, doc_id: int, timeout: float = 180) -> dict:
    def finished() -> dict | None:
        answer = client.get(f"/documents/{doc_id}")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body if body["status"] != "open" else None

    return wait_for(finished, timeout, f"document {doc_id} to finish", 0.2)


def close_enough(got: str, want: list[str], limit: float = 0.05) -> None:
    error = cer(got, "\n".join(want))
    assert error <= limit, f"CER {error:.3f}:\n{got}\n--- want ---\n" + "\n".join(want)


# ---------------------------------------------------------------------------------- embedded


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> Path:
    """The folder the server may read `paths` under (OCRQ_INPUT_ROOTS)."""
    return tmp_path_factory.mktemp("roots")


@pytest.fixture(scope="module")
def served(tmp_path_factory, roots):
    """One embedded server for the module: a token, a 3 MB request limit, at most 2
    /infer held open, at most 5 pages a file, one pinned worker."""
    env = {
        "OCRQ_MAX_UPLOAD_BYTES": str(3 * 1024 * 1024),
        "OCRQ_MAX_WAITING": "2",
        "OCRQ_MAX_PAGES": "5",
        "OCRQ_INPUT_ROOTS": str(roots),
    }
    with Served(tmp_path_factory.mktemp("serve"), "--local", "-w", "1", env=env) as server:
        yield server


def test_infer_reads_a_rendered_page(served):
    lines = unique_lines(4)
    with served.client() as client:
        answer = client.post("/infer", files={"file": ("page.png", page_png(lines), "image/png")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "done" and body["page_count"] == 1 and not body["duplicate"]
    close_enough(body["text"], lines)
    page = body["pages"][0]
    assert len(page["lines"]) == len(lines)
    first = page["lines"][0]
    x0, y0, x1, y1 = first["box"]
    assert 0 <= x0 < x1 <= page["width"] and 0 <= y0 < y1 <= page["height"]
    assert 0.5 < first["confidence"] <= 1.0
    words = first["words"]
    assert [w["text"] for w in words] == first["text"].split()
    assert all(x0 - 2 <= w["box"][0] < w["box"][2] <= x1 + 2 for w in words)
    assert body["provenance"]["engine"] == "ppocr"
    assert page["worker"] and page["timings"]["total"] > 0


def test_token_is_required(served):
    with served.client(token=None) as anonymous, served.client(token="wrong") as wrong:
        for client in (anonymous, wrong):
            denied = client.post("/infer", files={"file": ("a.png", b"x", "image/png")})
            assert denied.status_code == 401
            assert denied.headers["www-authenticate"].startswith("Bearer")
            for path in ("/status", "/metrics", "/documents/1", "/jobs/1"):
                assert client.get(path).status_code == 401, path
        # open to anyone: liveness, the status page's shell, the API's description
        assert anonymous.get("/health").json()["status"] == "ok"
        page = anonymous.get("/")
        assert page.status_code == 200 and "ocrq status" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "/infer" in anonymous.get("/openapi.json").json()["paths"]
        # the API docs, with their script, style and icon from this server (no CDN)
        html = anonymous.get("/docs")
        assert html.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert len(assets) == 3 and all(a.startswith("/static/docs/") for a in assets), assets
        for asset in assets:
            got = anonymous.get(asset)
            assert got.status_code == 200 and len(got.content) > 1000, asset


def test_upload_over_the_size_or_page_limit_is_413(served):
    big = os.urandom(4 * 1024 * 1024)
    with served.client() as client:
        answer = client.post("/infer", files={"file": ("big.png", big, "image/png")})
        assert answer.status_code == 413, answer.text
        # counted at upload: 6 pages, over OCRQ_MAX_PAGES=5
        pdf = text_pdf([[f"page {i}"] for i in range(6)])
        answer = client.post(
            "/batch_infer", files=[("files", ("long.pdf", pdf, "application/pdf"))]
        )
        assert answer.status_code == 413, answer.text
        assert "page limit" in answer.json()["detail"]
        assert client.get("/health").status_code == 200  # and the server goes on


def test_same_bytes_same_options_are_not_run_again(served):
    lines = unique_lines(2)
    data = page_png(lines)
    with served.client() as client:
        first = client.post("/infer", files={"file": ("one.png", data, "image/png")}).json()
        started = time.perf_counter()
        second = client.post("/infer", files={"file": ("two.png", data, "image/png")}).json()
        seconds = time.perf_counter() - started
        assert first["status"] == second["status"] == "done"
        assert not first["duplicate"] and second["duplicate"]
        assert second["id"] != first["id"]  # a document of its own...
        assert second["pages"][0]["duplicate_of"] == first["pages"][0]["job_id"]  # ...not run
        assert second["text"] == first["text"]
        job = client.get(f"/jobs/{second['pages'][0]['job_id']}").json()
        assert job["status"] == "duplicate" and job["result_status"] == "done"
        assert seconds < 5
        # other options are other results: force runs it again
        forced = client.post(
            "/infer", params={"force": "true"}, files={"file": ("3.png", data, "image/png")}
        ).json()
        assert not forced["duplicate"] and forced["pages"][0]["duplicate_of"] is None


def test_batch_infer_jobs_and_searchable_pdf_export(served, roots, tmp_path):
    one, two, three = unique_lines(3), unique_lines(3), unique_lines(3)
    pdf = scan_pdf([render_page(two, height=40), render_page(three, height=40)])
    files = [
        ("files", ("first.png", page_png(one), "image/png")),
        ("files", ("scan.pdf", pdf, "application/pdf")),
    ]
    with served.client() as client:
        answer = client.post("/batch_infer", files=files)
        assert answer.status_code == 202, answer.text
        batch = answer.json()
        assert [d["pages"] for d in batch["documents"]] == [1, 2]
        assert batch["queued_pages"] == 3
        docs = {d["name"]: wait_document(client, d["id"]) for d in batch["documents"]}
        assert docs["scan.pdf"]["status"] == "done" and docs["scan.pdf"]["pages_done"] == 2

        exported = client.get(f"/documents/{docs['scan.pdf']['id']}/export?format=pdf")
        assert exported.status_code == 200
        assert exported.headers["content-type"] == "application/pdf"
        assert "attachment" in exported.headers["content-disposition"]
        out = tmp_path / "scan.pdf"
        out.write_bytes(exported.content)
        text = subprocess.run(
            ["pdftotext", "-layout", str(out), "-"], capture_output=True, text=True, check=True
        ).stdout
        pages = text.split("\f")
        close_enough(pages[0], two, 0.1)
        close_enough(pages[1], three, 0.1)
        txt = client.get(f"/documents/{docs['first.png']['id']}/export", params={"format": "txt"})
        close_enough(txt.text, one)
        for fmt, marker in (("hocr", "ocrx_word"), ("alto", "<String")):
            got = client.get(f"/documents/{docs['first.png']['id']}/export?format={fmt}")
            assert got.status_code == 200 and marker in got.text

        # POST /jobs: uploads, or paths under the input roots (walked as `ocrq submit` does)
        folder = roots / "letters"
        folder.mkdir()
        four = unique_lines(2)
        Image.open(io.BytesIO(page_png(four))).save(folder / "letter.png")
        answer = client.post("/jobs", data={"paths": [str(folder)]})
        assert answer.status_code == 202, answer.text
        doc = answer.json()["documents"][0]
        assert doc["name"] == "letter.png"
        assert wait_document(client, doc["id"])["status"] == "done"
        body = client.get(f"/documents/{doc['id']}/export?format=json").json()
        close_enough(body["text"], four)
        outside = client.post("/jobs", data={"paths": ["/etc"]})
        assert outside.status_code == 403
        uploaded = client.post("/jobs", files=[("files", ("x.png", page_png(one), "image/png"))])
        assert uploaded.status_code == 202 and uploaded.json()["documents"][0]["duplicate"]


def test_timeout_answers_202_with_the_document_url(served):
    lines = unique_lines(3)
    with served.client() as client:
        answer = client.post(
            "/infer",
            params={"timeout": 0},
            files={"file": ("later.png", page_png(lines), "image/png")},
        )
        assert answer.status_code == 202, answer.text
        url = answer.headers["location"]
        assert url == answer.json()["url"] == f"/documents/{answer.json()['id']}"
        done = wait_document(client, answer.json()["id"])
        assert done["status"] == "done"
        close_enough(client.get(f"{url}/export?format=txt").text, lines)


def test_a_bad_file_fails_with_its_reason(served):
    with served.client() as client:
        answer = client.post(
            "/infer", files={"file": ("notes.pdf", b"just some text\n" * 20, "application/pdf")}
        )
    assert answer.status_code == 422
    page = answer.json()["pages"][0]
    assert page["status"] == "failed" and "not a readable PDF" in page["error"]


def test_overload_answers_429_with_retry_after(served):
    """Two /infer may wait at once: of six sent together, the ones past two are told to
    come back later instead of piling up, and the two finish."""
    pages = [page_png(unique_lines(12), height=32) for _ in range(6)]

    def send(data: bytes) -> httpx.Response:
        with served.client() as client:
            return client.post("/infer", files={"file": ("p.png", data, "image/png")})

    with cf.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, pages))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(429) >= 3 and 200 in codes and set(codes) <= {200, 429}, codes
    for answer in answers:
        if answer.status_code == 429:
            assert 1 <= int(answer.headers["retry-after"]) <= 60
    with served.client() as client:
        metrics = client.get("/metrics").text
    assert 'ocrq_rejected_requests_total{reason="overload"}' in metrics


def test_past_the_requests_in_flight_503_with_retry_after(served):
    """64 uploads that never finish sending hold the server's 64 request slots (4x
    OCRQ_MAX_WAITING, at least 64): the next request gets 503 with Retry-After from the
    server (not uvicorn's bare 503), and once they hang up it is served again."""
    head = (
        "POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n"
    ).encode()
    held = []
    try:
        for _ in range(64):
            sock = socket.create_connection(("127.0.0.1", served.port))
            sock.sendall(head)
            held.append(sock)
        with served.client() as client:
            answer = wait_for(
                lambda: (r := client.get("/status")).status_code == 503 and r,
                30,
                "the slots to fill",
                0.2,
            )
            assert 1 <= int(answer.headers["retry-after"]) <= 60
            assert "being served already" in answer.json()["detail"]
            assert client.get("/health").status_code == 200  # liveness is never refused
    finally:
        for sock in held:
            sock.close()
    with served.client() as client:
        wait_for(lambda: client.get("/status").status_code == 200, 30, "the slots to free")


def test_metrics_and_status(served):
    with served.client() as client:
        metrics = client.get("/metrics")
        status = client.get("/status").json()
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for name in (
        'ocrq_jobs{status="done"}',
        "ocrq_queue_depth",
        "ocrq_pages_per_second",
        'ocrq_http_request_duration_seconds_bucket{le="0.5",method="POST",route="/infer"}',
        "ocrq_infer_seconds_count",
        'ocrq_rejected_requests_total{reason="auth"}',
    ):
        assert name in text, name
    assert status["mode"] == "local" and status["jobs"]["done"] >= 1
    assert status["workers"][0]["name"] == "local-0"
    assert any("not a readable PDF" in f["reason"] for f in status["failures"])
    assert status["batches"][0]["document_list"]


def test_uploads_are_removed_once_their_keep_time_is_over(tmp_path):
    """OCRQ_SPOOL_KEEP_HOURS of about a second: once the document is done its file
    goes; its searchable PDF (drawn over that file) then answers 410, its text still 200."""
    env = {"OCRQ_SPOOL_KEEP_HOURS": "0.0003"}
    with Served(tmp_path, "--local", "-w", "1", env=env) as server, server.client() as client:
        lines = unique_lines(2)
        body = client.post("/infer", files={"file": ("kept.png", page_png(lines))}).json()
        assert body["status"] == "done"

        def spooled() -> list[Path]:
            return list((server.spool / "docs").glob("*/*/*"))

        wait_for(lambda: not spooled(), 60, "the upload to be removed", 0.2)
        assert not list((server.spool / "blobs").glob("*/*"))
        gone = client.get(f"/documents/{body['id']}/export?format=pdf")
        assert gone.status_code == 410 and "no longer" in gone.json()["detail"]
        close_enough(client.get(f"/documents/{body['id']}/export?format=txt").text, lines)
        assert client.get("/status").json()["spool"]["bytes"] == 0


# ------------------------------------------------------------------- start-up and the queue


def test_without_token_it_listens_on_loopback_only(tmp_path):
    """No token: 127.0.0.1 whatever --host says, and said at start. No broker answering
    and no --local: the jobs run in the local pool, also said."""
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    with Served(
        tmp_path, "--host", "0.0.0.0", "-w", "1", token=None, env={"OCRQ_BROKER_URL": dead_broker}
    ) as server:
        log = server.text()
        assert "no OCRQ_API_TOKEN: listening on 127.0.0.1 only, not 0.0.0.0" in log
        assert "cannot reach the broker" in log and "running the jobs locally" in log
        with server.client() as client:
            assert client.get("/health").json()["mode"] == "local"
            # no token: a name that is not loopback is refused (DNS rebinding)
            rebound = client.get("/status", headers={"Host": f"ocr.example:{server.port}"})
            assert rebound.status_code == 403
            assert client.get("/status", headers={"Host": "localhost"}).status_code == 200
            lines = unique_lines(2)
            body = client.post("/infer", files={"file": ("a.png", page_png(lines))}).json()
        close_enough(body["text"], lines)


def test_queue_mode_through_redis_and_a_celery_worker(tmp_path, redis_server):
    folder = tmp_path / "serve"
    server = Served(folder, "--queue", env={"OCRQ_BROKER_URL": redis_server.url})
    try:
        with Worker(server.db_url, redis_server.url, tmp_path / "worker.log", concurrency=1):
            lines = unique_lines(3)
            with server.client() as client:
                health = client.get("/health").json()
                assert health["mode"] == "queue" and health["queue"] == "ocrq.ppocr"
                answer = client.post("/infer", files={"file": ("q.png", page_png(lines))})
                assert answer.status_code == 200, answer.text + server.text()
                body = answer.json()
                close_enough(body["text"], lines)
                assert ":core" in body["pages"][0]["worker"]  # host:pid:core of the Celery child
                again = client.post("/infer", files={"file": ("q2.png", page_png(lines))}).json()
                assert again["duplicate"] and again["text"] == body["text"]
                status = client.get("/status").json()
                assert status["mode"] == "queue" and status["queue_depth"] == 0
                assert status["workers"] and status["workers"][0]["pages_recent"] >= 1
    finally:
        server.stop()
