"""Scores and figures per runner x set, the printed table, the JSON file and the chart."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.evalsets import EvalSet, score_item, score_whole_page
from bench.pool import PoolResult

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
    # zoned sets (UNLV, composed columns): the same pages as whole pages, in reading order
    cer_whole_page: float | None = None
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
    whole: list[tuple[int, int]] = []
    records = []
    for item, got in zip(evalset.items, result.items, strict=True):
        text = "" if got.error else got.text
        boxes = [] if got.error else got.boxes
        dist, n = score_item(item, evalset.conventions, text, boxes)
        page = score_whole_page(item, evalset.conventions, boxes)
        whole += [page] if page else []
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
                "cer_whole_page": page[0] / max(page[1], 1) if page else None,
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
        cer_whole_page=_whole_page_cer(whole),
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


def _whole_page_cer(counts: Sequence[tuple[int, int]]) -> float | None:
    """Summed edits over summed reference characters of the zoned pages (None: no zones)."""
    if not counts:
        return None
    return sum(d for d, _ in counts) / max(sum(n for _, n in counts), 1)


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
    ("CER whole", 9, ">"),
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
            _fmt(100 * row.cer_whole_page if row.cer_whole_page is not None else None, ".2f"),
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


def chart_grid(panels: int) -> tuple[int, int]:
    """Rows and columns of the chart's panels: one per set, two to a row."""
    columns = min(2, max(1, panels))
    return max(1, math.ceil(panels / columns)), columns


MARKERS = "osD^vP*Xh<>"  # one per runner in the chart (with a colour)


def draw_chart(path: Path, rows: Sequence[Row], title: str = "ocrq bench") -> None:
    """CER against throughput, one panel per set (its own scales: a set's runners sit
    close together, and one set's 21 % CER must not flatten another's 0.6 %), one colour
    and marker per runner, both axes logarithmic; the legend once, for all panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.status == OK and r.items_per_s and r.cer is not None]
    runners = list(dict.fromkeys(r.runner for r in points))
    sets = list(dict.fromkeys(r.set for r in points)) or ["(no results)"]
    n_rows, n_cols = chart_grid(len(sets))
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(5.2 * n_cols, 3.6 * n_rows + 0.8), dpi=110, squeeze=False
    )
    style = {name: _marker_style(i, plt) for i, name in enumerate(runners)}
    for ax, name in zip(axes.flat, sets, strict=False):
        _draw_panel(ax, name, [r for r in points if r.set == name], style)
    for ax in list(axes.flat)[len(sets) :]:
        ax.set_visible(False)
    columns = min(len(runners), 5 if n_cols > 1 else 3) or 1
    top = 0.1 + 0.3 * math.ceil(len(runners) / columns)  # inches for title and legend
    if runners:
        handles = [
            plt.Line2D(
                [],
                [],
                linestyle="",
                markeredgecolor="black",
                markersize=8,
                label=name,
                color=style[name]["color"],
                marker=style[name]["marker"],
            )
            for name in runners
        ]
        fig.legend(
            handles=handles,
            loc="upper center",
            ncol=columns,
            fontsize=9,
            bbox_to_anchor=(0.5, 1.0 - 0.3 / fig.get_figheight()),
        )
    fig.suptitle(title, y=1.0 - 0.02 / fig.get_figheight())
    fig.tight_layout(rect=(0, 0, 1, 1 - top / fig.get_figheight()))
    fig.savefig(path)
    plt.close(fig)


def _marker_style(index: int, plt) -> dict:  # type: ignore[no-untyped-def]
    return {"color": plt.get_cmap("tab10")(index % 10), "marker": MARKERS[index % len(MARKERS)]}


def _draw_panel(ax, name: str, rows: Sequence[Row], style: dict) -> None:  # type: ignore[no-untyped-def]
    """One set's runners: CER % against items/s, both on log scales labelled in plain
    numbers (minor ticks too, where the axis spans little more than a decade)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for row in rows:
        # a CER of 0 has no place on a log axis: drawn at 0.01 % instead
        cer = max(100 * (row.cer or 0.0), 0.01)
        ax.scatter(
            row.items_per_s,
            cer,
            s=70,
            edgecolors="black",
            linewidths=0.5,
            zorder=3,
            **style[row.runner],
        )
    ax.set_title(f"set: {name}", fontsize=10)
    ax.set_xlabel("items per second (warm, all processes)", fontsize=8)
    ax.set_ylabel("CER %, lower is better", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    if not rows:
        return
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(0.15)
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        axis.set_major_formatter(plain)
        few = math.log10(limits[1] / limits[0]) <= 1.5
        axis.set_minor_formatter(plain if few else NullFormatter())
    ax.tick_params(which="both", labelsize=7)
