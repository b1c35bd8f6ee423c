"""Scores and figures per runner x set, the printed table, the JSON file and the chart."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from producer.bench.evalsets import EvalSet, score_item
from producer.bench.pool import PoolResult

OK = "ok"


@dataclass
class Row:
    runner: str
    set: str
    processes: int
    status: str = OK  # ok | not installed (...) | error: ...
    items: int = 0
    failed: int = 0
    cer: float | None = None  # summed edits / summed reference characters
    items_per_s: float | None = None  # pages/s on page sets
    lines_per_s: float | None = None
    p50_s: float | None = None  # seconds per item, as one worker saw it
    p95_s: float | None = None
    peak_rss_mb: float | None = None  # largest single process of the runner
    load_s: float | None = None  # slowest worker's start + model load
    wall_s: float | None = None  # warm span the throughput is measured over
    total_s: float | None = None  # including process start and model load
    vs_rapidocr: float | None = None  # items/s over RapidOCR's on the same set
    line_set: bool = False
    precision: str | None = None


@dataclass
class Scored:
    row: Row
    items: list[dict] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def status_row(runner: str, evalset: EvalSet, processes: int, status: str) -> Row:
    return Row(
        runner,
        evalset.name,
        processes,
        status=status,
        items=len(evalset.items),
        line_set=evalset.conventions.line_images,
    )


def summarize(
    runner: str, evalset: EvalSet, processes: int, result: PoolResult, precision: str | None
) -> Scored:
    """Score every item under the set's conventions; a failed item scores as empty text."""
    if result.error:
        row = status_row(runner, evalset, processes, f"error: {result.error}")
        row.total_s = result.total_seconds
        return Scored(row)
    dist_sum = ref_sum = lines = failed = 0
    records = []
    for item, got in zip(evalset.items, result.items, strict=True):
        text = "" if got.error else got.text
        dist, n = score_item(item, evalset.conventions, text, [] if got.error else got.boxes)
        dist_sum += dist
        ref_sum += n
        lines += got.lines
        failed += bool(got.error)
        records.append(
            {
                "runner": runner,
                "set": evalset.name,
                "item": item.image.name,
                "cer": dist / max(n, 1),
                "edits": dist,
                "ref_chars": n,
                "seconds": got.seconds,
                "lines": got.lines,
                "worker": got.worker,
                "error": got.error,
                "text": text,
            }
        )
    count = len(evalset.items)
    wall = result.wall_seconds
    line_set = evalset.conventions.line_images
    row = Row(
        runner,
        evalset.name,
        processes,
        items=count,
        failed=failed,
        cer=dist_sum / max(ref_sum, 1),
        items_per_s=count / wall if wall > 0 else None,
        lines_per_s=(count if line_set else lines) / wall if wall > 0 else None,
        p50_s=percentile([r["seconds"] for r in records], 50),
        p95_s=percentile([r["seconds"] for r in records], 95),
        peak_rss_mb=max(result.peak_rss_mb) if result.peak_rss_mb else None,
        load_s=max(result.load_seconds) if result.load_seconds else None,
        wall_s=wall,
        total_s=result.total_seconds,
        line_set=line_set,
        precision=precision,
    )
    return Scored(row, records)


def add_ratios(rows: Sequence[Row], peer: str = "rapidocr") -> None:
    """items/s of each row over the peer's on the same set (same process count if run)."""
    for row in rows:
        peers = [
            r for r in rows if r.set == row.set and r.runner.split("@")[0] == peer and r.items_per_s
        ]
        if not peers or not row.items_per_s:
            continue
        same = [r for r in peers if r.processes == row.processes]
        row.vs_rapidocr = row.items_per_s / (same or peers)[0].items_per_s


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


COLUMNS = [
    ("runner", 14, "<"),
    ("set", 16, "<"),
    ("procs", 5, ">"),
    ("items", 5, ">"),
    ("CER %", 7, ">"),
    ("pages/s", 8, ">"),
    ("lines/s", 8, ">"),
    ("p50 s", 7, ">"),
    ("p95 s", 7, ">"),
    ("RSS MB", 7, ">"),
    ("x rapid", 7, ">"),
]


def format_table(rows: Sequence[Row]) -> str:
    """One table, rows grouped by set so each set's runners sit side by side."""
    width = max([14, *(len(r.runner) for r in rows)])
    set_width = max([16, *(len(r.set) for r in rows)])
    cols = [
        (n, width if n == "runner" else set_width if n == "set" else w, a) for n, w, a in COLUMNS
    ]
    head = " ".join(format(n, f"{a}{w}") for n, w, a in cols)
    out = [head, "-" * len(head)]
    order = {name: i for i, name in enumerate(dict.fromkeys(r.set for r in rows))}
    for row in sorted(rows, key=lambda r: order[r.set]):
        lead = [row.runner, row.set, str(row.processes), str(row.items)]
        if row.status != OK:
            cells = lead
            line = " ".join(format(c, f"{a}{w}") for c, (_, w, a) in zip(cells, cols, strict=False))
            out.append(f"{line}  {row.status}")
            continue
        cells = lead + [
            _fmt(100 * row.cer if row.cer is not None else None, ".2f"),
            _fmt(row.items_per_s, ".2f"),
            _fmt(row.lines_per_s, ".1f"),
            _fmt(row.p50_s, ".3f"),
            _fmt(row.p95_s, ".3f"),
            _fmt(row.peak_rss_mb, ".0f"),
            _fmt(row.vs_rapidocr, ".2f"),
        ]
        line = " ".join(format(c, f"{a}{w}") for c, (_, w, a) in zip(cells, cols, strict=False))
        if row.failed:
            line += f"  ({row.failed} items failed, scored as empty)"
        out.append(line)
    return "\n".join(out)


def write_json(path: Path, rows: Sequence[Row], items: Sequence[dict], meta: dict) -> None:
    data = {"meta": meta, "rows": [asdict(r) for r in rows], "items": list(items)}
    Path(path).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def draw_chart(path: Path, rows: Sequence[Row], title: str = "ocrq bench") -> None:
    """CER against throughput, one point per runner x set (log throughput axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.status == OK and r.items_per_s and r.cer is not None]
    runners = list(dict.fromkeys(r.runner for r in points))
    sets = list(dict.fromkeys(r.set for r in points))
    markers = "osD^vP*Xh<>"
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    for row in points:
        ax.scatter(
            row.items_per_s,
            100 * row.cer,
            color=colors(runners.index(row.runner) % 10),
            marker=markers[sets.index(row.set) % len(markers)],
            s=60,
            edgecolors="black",
            linewidths=0.5,
        )
        ax.annotate(
            row.runner,
            (row.items_per_s, 100 * row.cer),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    handles = [
        plt.Line2D([], [], color=colors(i % 10), marker="o", linestyle="", label=name)
        for i, name in enumerate(runners)
    ] + [
        plt.Line2D(
            [],
            [],
            color="gray",
            marker=markers[i % len(markers)],
            linestyle="",
            label=f"set: {name}",
        )
        for i, name in enumerate(sets)
    ]
    if points:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_xlabel("throughput: pages (items) per second, warm, all processes")
    ax.set_ylabel("CER %  (lower is better)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
