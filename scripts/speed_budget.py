"""Where a page's time goes, stage by stage, beside Tesseract on the same pages (issue #31).

    python scripts/speed_budget.py --json /tmp/budget.json   # about 15 minutes

One process pinned to one core, one ONNX Runtime thread, as a worker runs. Every page of
each set is read by the default engine in FP32 and in INT8 and by Tesseract (`eng`, one
thread, the bench's runner), interleaved page by page and `--repeats` times (the order
turned each round), so machine noise hits all three alike. Per stage (`stage_clock.py`):
seconds per page (the median of the repeats, summed over the set's pages, per page),
GMAC per page counted from the ONNX graphs at the shapes fed (`graph_macs.py`), and the
share of the page Tesseract's time leaves it: the stage's time x (Tesseract's s/page /
ours). Then what one core sustains in these networks and in single large kernels, and
the physical limit per page (GMAC / sustained GMAC/s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from graph_macs import MacCounter, rec_counter  # noqa: E402
from kernel_rates import kernel_table  # noqa: E402
from stage_clock import StageClock  # noqa: E402

from bench.evalsets import discover  # noqa: E402
from bench.runners import make_reader, parse_runner  # noqa: E402
from models.cpu import cpu_model, int8_needs_reduce_range  # noqa: E402
from models.ppocr import resources  # noqa: E402
from models.ppocr.engine import load  # noqa: E402
from ocrq.config import EngineOptions, InputLimits, settings_from_env  # noqa: E402
from ocrq.images import iter_pages  # noqa: E402
from worker.pipeline import read_pages  # noqa: E402

EVAL = Path(os.environ.get("EVAL", Path(__file__).resolve().parents[2] / "shared" / "eval"))
SETS = ("pages/oldbooks", "pages/sroie")
PRECISIONS = ("fp32", "int8")
# report rows: (label, stages summed into it, GMAC key)
ROWS = (
    ("decode", ("decode",), None),
    ("probe (896 px): network", ("probe net",), "probe"),
    ("probe: pre/post", ("probe pre/post",), None),
    ("fine detection: network", ("fine net",), "fine"),
    ("fine detection: pre/post", ("fine pre/post",), None),
    ("detector other (windows, missed lines, arena)", ("det other", "arena release"), None),
    ("crops", ("crops",), None),
    ("recognition: network", ("rec net",), "rec"),
    ("recognition: resize, decode", ("rec resize", "rec decode", "rec other"), None),
    ("small caps", ("small caps",), None),
    ("thin spaces, word boxes", ("thin spaces, ink", "word boxes"), None),
    ("layout", ("layout",), None),
    ("orientation", ("orientation",), None),
    ("rows, other", ("rows", "page other"), None),
)


class RecMacs:
    """Recognizer GMAC at any width, from an exact count at three widths (a + bW + cW^2:
    convolutions are linear in width, attention over the steps quadratic), checked."""

    def __init__(self, counter: MacCounter) -> None:
        widths = np.array([320.0, 960.0, 1600.0])
        gmacs = [counter.gmac((1, 3, 48, int(w))) for w in widths]
        self.coef = np.polyfit(widths, gmacs, 2)
        for w in (64, 2400):
            exact, fitted = counter.gmac((1, 3, 48, w)), float(np.polyval(self.coef, w))
            assert abs(fitted - exact) <= 0.005 * exact + 1e-4, (w, exact, fitted)

    def gmac(self, shape) -> float:
        return shape[0] * float(np.polyval(self.coef, shape[3]))


def page_gmacs(clock: StageClock, det: MacCounter, rec: RecMacs) -> dict[str, float]:
    out = {"probe": 0.0, "fine": 0.0, "rec": 0.0}
    for kind, shape in clock.det_shapes:
        out[kind] += det.gmac((shape[0], 3, *shape[2:]))
    out["rec"] = sum(rec.gmac(s) for s in clock.rec_shapes)
    out["rec_columns"] = float(sum(s[0] * s[3] for s in clock.rec_shapes))
    out["lines"] = float(sum(s[0] for s in clock.rec_shapes))
    return out


def read_ours(engine, clock: StageClock, path: Path, det: MacCounter, rec: RecMacs) -> dict:
    clock.start_page()
    (page,) = list(read_pages(engine, iter_pages(path, InputLimits())))
    stages = dict(clock.seconds)
    stages["decode"] = page.load_seconds
    return {
        "total": page.load_seconds + page.ocr_seconds,
        "stages": stages,
        "gmac": page_gmacs(clock, det, rec),
    }


def read_tesseract(read, path: Path) -> dict:
    t0 = time.perf_counter()
    read(path, False)
    return {"total": time.perf_counter() - t0}


def measure(args, engines: dict, clock: StageClock) -> dict:
    det = MacCounter(resources.model_path(resources.DET_FILE))
    rec = RecMacs(rec_counter())
    tesseract = make_reader(parse_runner("tesseract", 1), "")
    runs: dict = {}
    for folder in args.sets.split(","):
        (evalset,) = discover([EVAL / folder], limit=args.limit or None)
        for item in evalset.items:
            readers = [
                (p, lambda path, e=e: read_ours(e, clock, path, det, rec))
                for p, e in engines.items()
            ]
            readers.append(("tesseract", lambda path: read_tesseract(tesseract, path)))
            for round_no in range(args.repeats):
                order = readers if round_no % 2 == 0 else readers[::-1]
                for label, read in order:
                    result = read(item.image)
                    runs.setdefault(evalset.name, {}).setdefault(item.name, {}).setdefault(
                        label, []
                    ).append(result)
            print(
                f"{evalset.name} {item.name}: "
                + ", ".join(
                    f"{label} {statistics.median(r['total'] for r in rs):.2f}s"
                    for label, rs in runs[evalset.name][item.name].items()
                ),
                flush=True,
            )
    return runs


def median_page(results: list[dict]) -> dict:
    """One page's repeats as one: the median of each stage and of the total."""
    out = {"total": statistics.median(r["total"] for r in results)}
    if "stages" in results[0]:
        names = {n for r in results for n in r["stages"]}
        out["stages"] = {
            n: statistics.median(r["stages"].get(n, 0.0) for r in results) for n in names
        }
        out["gmac"] = results[0]["gmac"]
    return out


def per_page(pages: dict, label: str) -> dict:
    """Mean per page over a set of (median) pages."""
    meds = [median_page(p[label]) for p in pages.values()]
    n = len(meds)
    out = {"total": sum(m["total"] for m in meds) / n}
    if "stages" in meds[0]:
        names = {k for m in meds for k in m["stages"]}
        out["stages"] = {k: sum(m["stages"].get(k, 0.0) for m in meds) / n for k in names}
        keys = meds[0]["gmac"].keys()
        out["gmac"] = {k: sum(m["gmac"][k] for m in meds) / n for k in keys}
    out["range"] = (min(m["total"] for m in meds), max(m["total"] for m in meds))
    return out


def stage_table(name: str, pages: dict, rates: dict) -> str:
    """The budget for one set: per stage s/page FP32 and INT8, GMAC, 1x Tesseract share."""
    fp, i8, ts = (per_page(pages, k) for k in ("fp32", "int8", "tesseract"))
    lines = [
        f"**{name}** ({len(pages)} pages): Tesseract {ts['total']:.2f} s/page; ours FP32 "
        f"{fp['total']:.2f} s ({ts['total'] / fp['total']:.2f}x Tesseract's pages/s), INT8 "
        f"{i8['total']:.2f} s ({ts['total'] / i8['total']:.2f}x); "
        f"{fp['gmac']['lines']:.0f} lines, {fp['gmac']['rec_columns']:.0f} recognizer columns a page",
        "",
        "| stage | FP32 s | share | INT8 s | GMAC | FP32 at 1x Tesseract | INT8 at 1x Tesseract "
        "| limit FP32 / INT8 s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, stages, key in ROWS:
        f = sum(fp["stages"].get(s, 0.0) for s in stages)
        q = sum(i8["stages"].get(s, 0.0) for s in stages)
        gmac = fp["gmac"][key] if key else 0.0
        limit = "" if not key else _limit(gmac, key, rates)
        lines.append(
            f"| {label} | {f:.3f} | {100 * f / fp['total']:.1f} % | {q:.3f} | {gmac:.2f} | "
            f"{f * ts['total'] / fp['total']:.3f} | "
            f"{q * ts['total'] / i8['total']:.3f} | {limit} |"
        )
    gsum = sum(fp["gmac"][k] for k in ("probe", "fine", "rec"))
    lines.append(
        f"| **page** | **{fp['total']:.3f}** | 100 % | **{i8['total']:.3f}** | **{gsum:.2f}** | "
        f"**{ts['total']:.3f}** | **{ts['total']:.3f}** | {_page_limit(fp['gmac'], rates)} |"
    )
    return "\n".join(lines)


def _limit(gmac: float, key: str, rates: dict) -> str:
    """Seconds the stage's MACs take at the best rate one core sustains in its kernels."""
    kind = "det" if key in ("probe", "fine") else "rec"
    return f"{gmac / rates[kind]['fp32']:.3f} / {gmac / rates[kind]['int8']:.3f}"


def _page_limit(g: dict, rates: dict) -> str:
    fp = (g["probe"] + g["fine"]) / rates["det"]["fp32"] + g["rec"] / rates["rec"]["fp32"]
    q = (g["probe"] + g["fine"]) / rates["det"]["int8"] + g["rec"] / rates["rec"]["int8"]
    return f"{fp:.3f} / {q:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS), help="folders under $EVAL")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="pages per set (0: all)")
    ap.add_argument("--json", type=Path, help="write every page's stages here")
    ap.add_argument("--from-json", type=Path, help="print the tables of an earlier --json run")
    ap.add_argument("--kernels-only", action="store_true", help="only what one core sustains")
    ap.add_argument("--kernel-repeats", type=int, default=10, help="runs per kernel (best kept)")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        for name, pages in saved["runs"].items():
            print(stage_table(name, pages, saved["rates"]) + "\n")
        print(saved.get("kernels", ""))
        return
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    models_dir = settings_from_env().models_dir
    if args.kernels_only:
        print(kernel_table(models_dir, args.kernel_repeats)[1])
        return
    engines = {
        p: load(EngineOptions(engine="ppocr", precision=p), models_dir, 1) for p in PRECISIONS
    }
    clock = StageClock()
    for engine in engines.values():
        clock.install(engine)
    started = time.time()
    runs = measure(args, engines, clock)
    rates, kernels = kernel_table(models_dir, args.kernel_repeats)
    print(
        f"\nCPU: {cpu_model()}; INT8 weights {'7' if int8_needs_reduce_range() else '8'}-bit; "
        f"load {os.getloadavg()}; {time.time() - started:.0f} s\n"
    )
    for name, pages in runs.items():
        print(stage_table(name, pages, rates) + "\n")
    print(kernels)
    if args.json:
        saved = {"runs": runs, "rates": rates, "kernels": kernels, "cpu": cpu_model()}
        args.json.write_text(json.dumps(saved, indent=1, default=float))


if __name__ == "__main__":
    main()
