"""Score OCR engines side by side on ../shared/eval in one process (CER per set, s/item).

    python scripts/eval_engine.py --engines ppocr,ppocr-int8,rapidocr,tesseract

Every engine runs single-threaded (1 ORT intra-op thread, OMP_THREAD_LIMIT=1 for
Tesseract), items interleaved engine by engine on the same image, so machine noise hits
all of them alike. Scoring follows the eval README: collapse whitespace; SROIE
case-insensitive; oldbooks de-hyphenated; UNLV pages only inside their .uzn zones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from producer.bench.evalsets import EvalSet, Item, discover, score_item  # noqa: E402

EVAL = Path(os.environ.get("OCRQ_EVAL", Path(__file__).resolve().parents[2] / "shared" / "eval"))
SETS = {
    "lines": "lines",
    "sroie": "pages/sroie",
    "oldbooks": "pages/oldbooks",
    "tesseract_test": "pages/tesseract_test",
}

# An OCR result: list of (bbox x0, y0, x1, y1, text) in the engine's own reading order.
Boxes = list[tuple[float, float, float, float, str]]
Runner = Callable[[Path, np.ndarray, str], Boxes]


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def score(evalset: EvalSet, item: Item, boxes: Boxes) -> tuple[int, int]:
    """The bench's scoring, so this script and `ocrq bench` always agree."""
    text = "\n".join(t for *_, t in boxes)
    return score_item(item, evalset.conventions, text, boxes)


# ---------------------------------------------------------------- engines


def ours(precision: str, overrides: str = "") -> Runner:
    """Our engine; `overrides` like "detector.max_side=1600;recognizer.bucket_ratio=2"."""
    from dataclasses import replace

    from models.page import read_page
    from models.ppocr.engine import PPOCRConfig, load
    from ocrq.config import EngineOptions

    cfg = PPOCRConfig()
    options = EngineOptions(precision=precision)
    for item in filter(None, overrides.split(";")):
        key, value = item.split("=")
        if "." not in key:
            if key in EngineOptions.__dataclass_fields__:
                options = replace(options, **{key: type(getattr(options, key))(value)})
            else:
                cfg = replace(cfg, **{key: value.lower() in ("1", "true", "yes")})
            continue
        part, field = key.split(".")
        sub = getattr(cfg, part)
        cast = type(getattr(sub, field))
        cast_value = value.lower() in ("1", "true") if cast is bool else cast(value)
        cfg = replace(cfg, **{part: replace(sub, **{field: cast_value})})
    models_dir = Path(os.environ.get("OCRQ_MODELS", "/tmp/ocrq-models"))
    engine = load(options, models_dir, 1, cfg)

    def run(path: Path, image: np.ndarray, set_name: str) -> Boxes:
        return [(*r.bbox, t.text) for r, t in read_page(engine, image)]

    return run


def rapidocr(use_det: bool = True) -> Runner:
    from producer.bench.runners import offline_rapidocr

    ocr = offline_rapidocr()

    def run(path: Path, image: np.ndarray, set_name: str) -> Boxes:
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # RapidOCR takes BGR arrays
        if not use_det:  # recognizer (+ angle classifier) on the whole image
            out = ocr(bgr, use_det=False)
            h, w = image.shape[:2]
            return [(0.0, 0.0, float(w), float(h), t) for t in (out.txts or ())]
        out = ocr(bgr)
        if out.boxes is None:
            return []
        return [
            (
                float(b[:, 0].min()),
                float(b[:, 1].min()),
                float(b[:, 0].max()),
                float(b[:, 1].max()),
                t,
            )
            for b, t in zip(out.boxes, out.txts, strict=True)
        ]

    return run


def tesseract() -> Runner:
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def run(path: Path, image: np.ndarray, set_name: str) -> Boxes:
        psm = "7" if set_name == "lines" else "3"
        proc = subprocess.run(
            ["tesseract", str(path), "-", "-l", "eng", "--psm", psm, "tsv"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        lines: dict[tuple, list] = {}
        for row in proc.stdout.splitlines()[1:]:
            f = row.split("\t")
            if len(f) < 12 or f[0] != "5" or not f[11].strip():
                continue
            key = tuple(int(v) for v in f[1:5])  # page, block, par, line
            x, y, w, h = (int(v) for v in f[6:10])
            lines.setdefault(key, []).append((x, y, x + w, y + h, f[11]))
        out = []
        for words in lines.values():
            out.append(
                (
                    min(w[0] for w in words),
                    min(w[1] for w in words),
                    max(w[2] for w in words),
                    max(w[3] for w in words),
                    " ".join(w[4] for w in words),
                )
            )
        return out

    return run


def make_runner(name: str) -> Runner:
    base, _, overrides = name.partition("[")
    overrides = overrides.rstrip("]")
    if base == "ppocr":
        return ours("fp32", overrides)
    if base == "ppocr-int8":
        return ours("int8", overrides)
    if name == "rapidocr":
        return rapidocr()
    if name == "rapidocr-nodet":  # recognizer only, for single-line images (cf. --psm 7)
        return rapidocr(use_det=False)
    if name == "tesseract":
        return tesseract()
    raise SystemExit(f"unknown engine {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--engines", default="ppocr")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--limit", type=int, default=0, help="items per set (0: all)")
    ap.add_argument("--json", type=Path, help="write per-item results here")
    ap.add_argument("--show", action="store_true", help="print per-item CER")
    args = ap.parse_args()
    # "ppocr", or "label=ppocr[detector.max_side=1600;recognizer.bucket_ratio=2]" for variants
    specs = [
        e.partition("=")[::2] if "=" in e.split("[")[0] else (e, e) for e in args.engines.split(",")
    ]
    runners = {label: make_runner(spec) for label, spec in specs}
    width = max(12, *(len(label) for label in runners))
    totals: dict[tuple[str, str], list[float]] = {}
    items = []
    for set_name in args.sets.split(","):
        (evalset,) = discover([EVAL / SETS[set_name]], limit=args.limit or None)
        for item in evalset.items:
            path = item.image
            image = load_rgb(path)
            for name, run in runners.items():
                t0 = time.perf_counter()
                boxes = run(path, image, set_name)
                dt = time.perf_counter() - t0
                dist, n = score(evalset, item, boxes)
                acc = totals.setdefault((name, set_name), [0, 0, 0.0, 0])
                acc[0] += dist
                acc[1] += n
                acc[2] += dt
                acc[3] += 1
                items.append(
                    {
                        "engine": name,
                        "set": set_name,
                        "item": path.name,
                        "cer": dist / max(n, 1),
                        "seconds": dt,
                    }
                )
                if args.show:
                    print(
                        f"{name:{width}s} {path.name:28s} cer={dist / max(n, 1):.4f} {dt:.3f}s",
                        flush=True,
                    )
    print(f"\n{'engine':{width}s} {'set':16s} {'items':>5s} {'CER %':>7s} {'s/item':>8s}")
    for (name, set_name), (dist, n, secs, count) in totals.items():
        print(
            f"{name:{width}s} {set_name:16s} {count:5d} {100 * dist / max(n, 1):7.2f} {secs / count:8.3f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "totals": [
                        {
                            "engine": k[0],
                            "set": k[1],
                            "cer": v[0] / max(v[1], 1),
                            "s_per_item": v[2] / v[3],
                            "items": v[3],
                        }
                        for k, v in totals.items()
                    ],
                    "items": items,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
