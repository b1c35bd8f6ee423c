"""Score engines side by side in ONE process, interleaved image by image (CER, s/item).

    python scripts/eval_engine.py --runners 'ours-fp32,ours-fp32[detector.max_side=1600]'

`ocrq bench` runs each runner over a whole set in its own pinned pool; this script is
for engine experiments: every runner reads the same image one after the other, on one
core, so machine noise hits all of them alike and small differences show. Runners are
`ocrq bench`'s (`bench.runners`), including `ours-*[settings]` variants, and
scoring is the bench's (`score_item`), so the two always agree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.evalsets import discover, score_item  # noqa: E402
from bench.runners import make_reader, parse_runner, unavailable  # noqa: E402
from ocrq.config import settings_from_env  # noqa: E402

# the evaluation data (not part of the project): $EVAL, as the Makefile names it
EVAL = Path(os.environ.get("EVAL", Path(__file__).resolve().parents[2] / "shared" / "eval"))
SETS = ("lines", "pages/sroie", "pages/oldbooks", "pages/tesseract_test")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runners", default="ours-fp32,ours-int8")
    ap.add_argument("--sets", default=",".join(SETS), help="folders under $EVAL")
    ap.add_argument("--limit", type=int, default=0, help="items per set (0: all)")
    ap.add_argument("--json", type=Path, help="write per-item results here")
    ap.add_argument("--show", action="store_true", help="print per-item CER")
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    models_dir = str(settings_from_env().models_dir)
    readers = {}
    for label in args.runners.split(","):
        spec = parse_runner(label, 1)
        if spec.kind == "queue":
            raise SystemExit("the queue runs as a whole: use `ocrq bench --runners queue`")
        if reason := unavailable(spec):
            raise SystemExit(f"{label}: {reason}")
        readers[label] = make_reader(spec, models_dir)
    width = max(12, *(len(label) for label in readers))
    totals: dict[tuple[str, str], list[float]] = {}
    items = []
    for folder in args.sets.split(","):
        for evalset in discover([EVAL / folder], limit=args.limit or None):
            line_images = evalset.conventions.line_images
            for item in evalset.items:
                for label, read in readers.items():
                    t0 = time.perf_counter()
                    result = read(item.image, line_images)
                    seconds = time.perf_counter() - t0
                    dist, n = score_item(item, evalset.conventions, result.text, result.boxes)
                    acc = totals.setdefault((label, evalset.name), [0, 0, 0.0, 0])
                    for i, value in enumerate((dist, n, seconds, 1)):
                        acc[i] += value
                    cer = dist / max(n, 1)
                    items.append(
                        {
                            "runner": label,
                            "set": evalset.name,
                            "item": item.name,
                            "cer": cer,
                            "seconds": seconds,
                        }
                    )
                    if args.show:
                        print(
                            f"{label:{width}s} {item.name:28s} cer={cer:.4f} {seconds:.3f}s",
                            flush=True,
                        )
    print(f"\n{'runner':{width}s} {'set':16s} {'items':>5s} {'CER %':>7s} {'s/item':>8s}")
    summary = []
    for (label, set_name), (dist, n, seconds, count) in totals.items():
        cer, per_item = dist / max(n, 1), seconds / count
        print(f"{label:{width}s} {set_name:16s} {count:5d} {100 * cer:7.2f} {per_item:8.3f}")
        summary.append(
            {"runner": label, "set": set_name, "cer": cer, "s_per_item": per_item, "items": count}
        )
    if args.json:
        args.json.write_text(json.dumps({"totals": summary, "items": items}, indent=1))


if __name__ == "__main__":
    main()
