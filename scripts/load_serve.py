"""Load on `ocrq serve` (and, beside it, on `rapidocr_api`): the 15 SROIE receipts sent by
1, 4 and 16 concurrent clients; pages/s, p50/p95 latency, CER of the returned text
(case-insensitive, as the eval README says for SROIE) and errors, as a Markdown table.

    python scripts/load_serve.py --start-ocrq 2 --start-rapidocr-api rapidocr_api
    python scripts/load_serve.py --target ocrq=http://127.0.0.1:8000 --token "$TOKEN"

`--start-ocrq N` starts `ocrq serve --local -w N` (this checkout, a scratch results
database and spool) on a free loopback port; `--start-rapidocr-api CMD` starts
`CMD -ip 127.0.0.1 -p PORT -workers 2`. Requests to ocrq carry `force=true`, so every
one is read again (the same bytes would otherwise be answered from the first result).
The targets run side by side: each level runs on every target in turn (the order turned
around from one level to the next) before the next level, so a machine shared with
other work loads them alike; the load average is printed with each row.

`--overload N` then sends N concurrent clients at ocrq for `--overload-seconds`: each
sends a receipt, and on 429/503 waits what Retry-After says before the next. Counted:
results, 429s and 503s with Retry-After, and lost requests (no answer, a timeout, any
other status, a 429/503 without Retry-After); the server's RSS (the process and its
children) is sampled twice a second.

Loopback only: a target on any other address is refused. Every loop is bounded: each
concurrency level sends `--passes` times the set, the overload stops sending after its
seconds, each request times out.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import click
import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ocrq.scoring import cer_counts  # noqa: E402

DEFAULT_SET = REPO.parent / "shared" / "eval" / "pages" / "sroie"
REQUEST_TIMEOUT = 300.0


@dataclass
class Item:
    name: str
    data: bytes
    truth: str


@dataclass
class Level:
    target: str
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    dist: int = 0
    chars: int = 0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def row(self) -> dict:
        lat = sorted(self.latencies)
        return {
            "target": self.target,
            "clients": self.clients,
            "requests": self.ok + sum(self.errors.values()),
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "pages_per_s": round(self.ok / self.seconds, 3) if self.seconds else 0.0,
            "p50_s": round(statistics.median(lat), 2) if lat else None,
            "p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 2) if lat else None,
            "cer_pct": round(100 * self.dist / self.chars, 2) if self.chars else None,
            "errors": dict(self.errors),
        }


# ---- the two APIs ------------------------------------------------------------------------


async def ask_ocrq(client: httpx.AsyncClient, item: Item) -> tuple[int, str]:
    answer = await client.post(
        "/infer", params={"force": "true"}, files={"file": (item.name, item.data, "image/jpeg")}
    )
    return answer.status_code, answer.json().get("text", "") if answer.status_code == 200 else ""


async def ask_rapidocr_api(client: httpx.AsyncClient, item: Item) -> tuple[int, str]:
    answer = await client.post("/ocr", files={"image_file": (item.name, item.data, "image/jpeg")})
    if answer.status_code != 200:
        return answer.status_code, ""
    boxes = answer.json()
    return 200, "\n".join(boxes[k]["rec_txt"] for k in sorted(boxes, key=int))


ASK = {"ocrq": ask_ocrq, "rapidocr_api": ask_rapidocr_api}


async def run_level(
    name: str, url: str, token: str | None, items: list[Item], clients: int, passes: int
) -> Level:
    level = Level(name, clients)
    ask = ASK[name.split("-")[0]]
    work = [item for _ in range(passes) for item in items]
    headers = {"Authorization": f"Bearer {token}"} if token and name.startswith("ocrq") else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=REQUEST_TIMEOUT, limits=limits
    ) as client:
        queue: asyncio.Queue[Item] = asyncio.Queue()
        for item in work:
            queue.put_nowait(item)

        async def one_client() -> None:
            while True:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                try:
                    status, text = await ask(client, item)
                except httpx.HTTPError as exc:
                    status, text = type(exc).__name__, ""
                if status == 200:
                    level.latencies.append(time.perf_counter() - started)
                    dist, chars = cer_counts(text, item.truth, casefold=True)
                    level.dist += dist
                    level.chars += chars
                else:
                    level.errors[str(status)] = level.errors.get(str(status), 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        level.seconds = time.perf_counter() - started
    return level


async def warm_up(name: str, url: str, token: str | None, items: list[Item]) -> dict:
    """Two requests first (not counted): models loaded, caches warm. Returns what ocrq
    says it ran with (engine provenance), for the table's note."""
    headers = {"Authorization": f"Bearer {token}"} if token and name.startswith("ocrq") else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT) as c:
        for item in items[:2]:
            await ASK[name.split("-")[0]](c, item)
        if name.startswith("ocrq"):
            answer = await c.post(
                "/infer", params={"force": "true"}, files={"file": ("w.jpg", items[0].data)}
            )
            return answer.json().get("provenance") or {}
    return {}


# ---- 10x overload -----------------------------------------------------------------------------


@dataclass
class Overload:
    clients: int
    seconds: float = 0.0
    codes: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    rss_mb: list[float] = field(default_factory=list)  # server + children, sampled
    main_rss_mb: list[float] = field(default_factory=list)  # the server process alone
    result_latencies: list[float] = field(default_factory=list)

    def row(self) -> dict:
        lat = sorted(self.result_latencies)
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 1),
            "answers": dict(sorted(self.codes.items())),
            "lost": dict(self.lost),
            "results_per_s": round(len(lat) / self.seconds, 2) if self.seconds else 0.0,
            "result_p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 2) if lat else None,
            "rss_mb_first": round(self.rss_mb[0]) if self.rss_mb else None,
            "rss_mb_peak": round(max(self.rss_mb)) if self.rss_mb else None,
            "rss_mb_last": round(self.rss_mb[-1]) if self.rss_mb else None,
            "main_rss_mb_first_peak_last": [
                round(x)
                for x in (self.main_rss_mb[:1] + [max(self.main_rss_mb)] + self.main_rss_mb[-1:])
            ]
            if self.main_rss_mb
            else None,
        }


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """RSS of the process and of it with all its children, MB."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        main = root.memory_info().rss
    except psutil.NoSuchProcess:
        return 0.0, 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return main / 2**20, total / 2**20


async def overload(
    url: str, token: str | None, items: list[Item], clients: int, seconds: float, pid: int | None
) -> Overload:
    result = Overload(clients)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    deadline = time.monotonic() + seconds
    done = asyncio.Event()

    async def sample() -> None:
        while pid and not done.is_set():
            main, total = tree_rss_mb(pid)
            result.main_rss_mb.append(main)
            result.rss_mb.append(total)
            await asyncio.sleep(0.5)

    async def one_client(index: int, client: httpx.AsyncClient) -> None:
        n = index
        while time.monotonic() < deadline:
            item = items[n % len(items)]
            n += clients
            started = time.perf_counter()
            wait = 0.0
            try:
                answer = await client.post(
                    "/infer",
                    params={"force": "true"},
                    files={"file": (item.name, item.data, "image/jpeg")},
                )
                code, retry = str(answer.status_code), answer.headers.get("retry-after")
            except httpx.HTTPError as exc:
                code, retry = type(exc).__name__, None
            if code == "200":
                result.result_latencies.append(time.perf_counter() - started)
            elif code in ("429", "503") and retry and retry.isdigit():
                wait = float(retry)
            else:
                result.lost[code] = result.lost.get(code, 0) + 1
                wait = 1.0
            result.codes[code] = result.codes.get(code, 0) + 1
            await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))

    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=REQUEST_TIMEOUT, limits=limits
    ) as client:
        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        await asyncio.gather(*(one_client(i, client) for i in range(clients)))
        result.seconds = time.perf_counter() - started
        done.set()
        await sampler
    return result


# ---- starting the servers --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_only(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise click.UsageError(f"{url}: this load script only talks to loopback addresses")


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(f"{url}: the server exited ({proc.returncode})")
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code == 200 and answer.json().get("workers_ready", 1) != 0:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    raise click.ClickException(f"{url}: not ready after {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def start_ocrq(workers: int, scratch: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "OCRQ_API_TOKEN"}
    cmd = [sys.executable, "-m", "server", "--local", "-w", str(workers), "--port", str(port)]
    cmd += ["--db", f"sqlite:///{scratch}/load.db", "--spool", str(scratch / "spool")]
    log = (scratch / "ocrq.log").open("w")
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", proc)
    return url, proc


def start_rapidocr_api(command: str, scratch: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    binary = shutil.which(command) or command
    log = (scratch / "rapidocr_api.log").open("w")
    proc = subprocess.Popen(
        [binary, "-ip", "127.0.0.1", "-p", str(port), "-workers", "2"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/", proc)
    return url, proc


# ---- the report ------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def markdown(rows: list[dict]) -> str:
    head = "| server | clients | requests | pages/s | p50 s | p95 s | CER % | errors | load |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        lines.append(
            f"| {r['target']} | {r['clients']} | {r['requests']} | {r['pages_per_s']} | "
            f"{r['p50_s']} | {r['p95_s']} | {r['cer_pct']} | {errors} | {r['load']} |"
        )
    return "\n".join(lines)


def load_set(folder: Path) -> list[Item]:
    items = []
    for image in sorted(folder.glob("*.jpg")):
        truth = image.with_suffix(".gt.txt")
        if truth.exists():
            items.append(Item(image.name, image.read_bytes(), truth.read_text(encoding="utf-8")))
    if not items:
        raise click.UsageError(f"no *.jpg with a .gt.txt in {folder}")
    return items


@click.command()
@click.option(
    "--set",
    "folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=DEFAULT_SET,
    show_default=True,
    help="Images with .gt.txt truth.",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    help="NAME=URL of a running server; NAME is ocrq or rapidocr_api (repeatable).",
)
@click.option(
    "--start-ocrq",
    "ocrq_workers",
    type=int,
    default=0,
    help="Start `ocrq serve --local -w N` on a free loopback port.",
)
@click.option(
    "--start-rapidocr-api",
    "rapidocr_cmd",
    default=None,
    help="Start this rapidocr_api command with -workers 2 on a free loopback port.",
)
@click.option("--token", default=None, help="Bearer token for ocrq (a server with OCRQ_API_TOKEN).")
@click.option("--clients", default="1,4,16", show_default=True)
@click.option("--passes", default=2, show_default=True, help="Times the set is sent per level.")
@click.option(
    "--overload",
    "overload_clients",
    type=int,
    default=0,
    help="Then N concurrent clients at ocrq (160: ten times the 16 /infer it holds open).",
)
@click.option("--overload-seconds", default=90.0, show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(
    folder,
    targets,
    ocrq_workers,
    rapidocr_cmd,
    token,
    clients,
    passes,
    overload_clients,
    overload_seconds,
    json_out,
) -> None:
    items = load_set(folder)
    levels = [int(c) for c in clients.split(",")]
    plan = [tuple(t.split("=", 1)) for t in targets]
    for name, url in plan:
        if name.split("-")[0] not in ASK:
            raise click.UsageError(f"{name}: the target's name must be ocrq or rapidocr_api")
        loopback_only(url)
    started: list[subprocess.Popen] = []
    scratch = Path(tempfile.mkdtemp(prefix="ocrq-load-"))
    rows, notes, overloaded = [], {}, None
    ocrq_pid = None
    try:
        if ocrq_workers:
            url, proc = start_ocrq(ocrq_workers, scratch)
            started.append(proc)
            ocrq_pid = proc.pid
            plan.append((f"ocrq-{ocrq_workers}w", url))
        if rapidocr_cmd:
            url, proc = start_rapidocr_api(rapidocr_cmd, scratch)
            started.append(proc)
            plan.append(("rapidocr_api-2w", url))
        for name, url in plan:
            provenance = asyncio.run(warm_up(name, url, token, items))
            if provenance:
                notes[name] = f"{provenance.get('engine')} {provenance.get('precision')}"
        for turn, n in enumerate(levels):
            for name, url in plan if turn % 2 == 0 else plan[::-1]:
                load = load_average()
                level = asyncio.run(run_level(name, url, token, items, n, passes))
                rows.append({**level.row(), "load": f"{load} -> {load_average()}"})
                click.echo(json.dumps(rows[-1]), err=True)
        ocrq_url = next((url for name, url in plan if name.startswith("ocrq")), None)
        if overload_clients and ocrq_url:
            load = load_average()
            result = asyncio.run(
                overload(ocrq_url, token, items, overload_clients, overload_seconds, ocrq_pid)
            )
            overloaded = {**result.row(), "load": f"{load} -> {load_average()}"}
            click.echo(json.dumps(overloaded), err=True)
    finally:
        for proc in started:
            stop(proc)
        shutil.rmtree(scratch, ignore_errors=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    click.echo(
        f"{time.strftime('%Y-%m-%d')}, {cpu_name()}, {cores} cores; set {folder.name} "
        f"({len(items)} images) x {passes} per level"
    )
    for name, note in notes.items():
        click.echo(f"{name}: {note}")
    click.echo(markdown(rows))
    if overloaded:
        click.echo(f"overload: {json.dumps(overloaded)}")
    if json_out:
        out = {"rows": rows, "notes": notes, "overload": overloaded}
        json_out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
