"""Other recognizers (and cheap knobs) in place of the default one, on the same crops.

    python scripts/recognizer_candidates.py \
        --candidate v5-mobile=/tmp/cand/rec.onnx:/tmp/cand/ppocrv5_dict.txt \
        --candidate 'ours-h40=ours:@height=40' --json /tmp/cand.json

One process pinned to one core, one ONNX Runtime thread. Each page (and line image) of
the eval sets is detected once by the default engine (FP32); every candidate then reads
the same regions through the same page loop (`worker.pipeline.read_pages`: crops, our
resize and CTC decoding with the Latin charset, small capitals, thin spaces, layout,
orientation), so only the recognizer changes. Candidates run interleaved, item by item,
the order turned each round. Per set: CER (the bench's scoring) and the recognizer's
seconds per page (the median of `--repeats` reads), and its ratio to the default's.

A candidate is NAME=ONNX[:DICT][@key=value,...]: ONNX a PP-OCR CTC recognizer (or
`ours`, the default's own file; `ours-int8`, its INT8 graph), DICT its character list,
one per line, when the graph carries none in its `character` metadata (the dictionary
must be the one the model was trained with); keys: `height` (input height, default 48),
`width_scale` (default: RecognizerConfig's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from graph_macs import MacCounter  # noqa: E402

import models.ppocr.recognizer as rec_mod  # noqa: E402
from bench.evalsets import discover, score_item  # noqa: E402
from models.base import Engine, PageBuffer  # noqa: E402
from models.crops import as_rgb, crop_quad  # noqa: E402
from models.onnx_session import open_session  # noqa: E402
from models.ppocr.engine import load, model_file  # noqa: E402
from models.ppocr.head import narrow_classifier  # noqa: E402
from models.ppocr.quantize import constants_to_initializers  # noqa: E402
from models.ppocr.recognizer import (  # noqa: E402
    PPOCRRecognizer,
    RecognizerConfig,
    allowed_classes,
    charset_from_metadata,
    free_input_height,
)
from ocrq.config import EngineOptions, InputLimits, settings_from_env  # noqa: E402
from ocrq.images import iter_pages  # noqa: E402
from ocrq.results import page_text  # noqa: E402
from worker.pipeline import read_pages  # noqa: E402

EVAL = Path(os.environ.get("EVAL", Path(__file__).resolve().parents[2] / "shared" / "eval"))
SETS = ("lines", "pages/sroie", "pages/oldbooks", "pages/tesseract_test")
STAGED = Path("/tmp/ocrq-rec-candidates")


@dataclass(frozen=True)
class Candidate:
    name: str
    onnx: str
    chars: str | None = None
    height: int = 48
    width_scale: float = RecognizerConfig().width_scale
    trim: float = 0.0  # > 0: crops cut to their ink columns, this many heights kept beside
    fallback: float = 0.0  # > 0: lines read under this confidence are read again as by default


def parse_candidate(spec: str) -> Candidate:
    name, rest = spec.split("=", 1)
    rest, _, opts = rest.partition("@")
    onnx_path, _, chars = rest.partition(":")
    cand = Candidate(name, onnx_path, chars or None)
    for opt in filter(None, opts.split(",")):
        key, value = opt.split("=", 1)
        cand = replace(cand, **{key: type(getattr(cand, key))(value)})
    return cand


def staged_graph(cand: Candidate, models_dir: Path) -> Path:
    """The candidate's graph with its dictionary as `character` metadata and its input
    height left free, written under STAGED (the source file is never touched)."""
    source = {"ours": "fp32", "ours-int8": "int8"}.get(cand.onnx)
    path = model_file("rec", source, models_dir) if source else Path(cand.onnx)
    model = onnx.load(str(path))
    constants_to_initializers(model)  # a head held in Constant nodes is narrowed too
    if cand.chars:
        lines = Path(cand.chars).read_text(encoding="utf-8").split("\n")
        meta = {p.key: p for p in model.metadata_props}
        entry = meta.get("character") or model.metadata_props.add()
        entry.key, entry.value = "character", "\n".join(lines)
    free_input_height(model)
    STAGED.mkdir(exist_ok=True)
    out = STAGED / f"{cand.name}.onnx"
    onnx.save(model, str(out))
    return out


def load_candidate(cand: Candidate, models_dir: Path) -> tuple[PPOCRRecognizer, Path]:
    """A PPOCRRecognizer over the candidate graph, its head narrowed as the default's is."""
    config = replace(RecognizerConfig(), width_scale=cand.width_scale, height=cand.height)
    path = staged_graph(cand, models_dir)
    narrowed: list[str] = []

    def narrow_head(model) -> bool:
        meta = {p.key: p.value for p in model.metadata_props}
        charset = charset_from_metadata(meta["character"])
        keep = allowed_classes(charset, config.charset)
        if keep is None or not narrow_classifier(model, keep, len(charset)):
            return False
        narrowed.extend(charset[i] for i in keep)
        return True

    session = open_session(path, 1, arena=False, edit=narrow_head)
    meta = session.get_modelmeta().custom_metadata_map["character"]
    return PPOCRRecognizer(session, narrowed or charset_from_metadata(meta), config), path


def trim_to_ink(crop: np.ndarray, margin: float) -> np.ndarray:
    """`crop` without the columns left and right of its ink, `margin` line heights kept
    beside it (ink: darker than halfway between the crop's darkest and median pixel)."""
    gray = crop.mean(axis=2) if crop.ndim == 3 else crop
    level = (float(gray.min()) + float(np.median(gray))) / 2
    cols = np.nonzero((gray < level).any(axis=0))[0]
    if cols.size == 0:
        return crop
    pad = int(round(margin * crop.shape[0]))
    return crop[:, max(0, cols[0] - pad) : cols[-1] + pad + 1]


class AtHeight:
    """A recognizer fed crops scaled to `height` rows instead of 48 (and cut to their
    ink with `trim` > 0), timed per call."""

    def __init__(
        self, inner: PPOCRRecognizer, height: int, trim: float = 0.0, fallback: float = 0.0
    ) -> None:
        self.inner, self.height, self.trim, self.seconds = inner, height, trim, 0.0
        self.fallback, self.reread, self.lines = fallback, 0, 0

    def prepared(self, crops):
        return [trim_to_ink(c, self.trim) for c in crops] if self.trim > 0 else list(crops)

    def recognize(self, crops):
        t0 = time.perf_counter()
        try:
            lines = self.inner.recognize(self.prepared(crops))
            self.lines += len(lines)
            if self.fallback > 0:
                lines = self._again(crops, lines)
            return lines
        finally:
            self.seconds += time.perf_counter() - t0

    def _again(self, crops, lines):
        """Lines read under `fallback` confidence, read again at the default height."""
        redo = [i for i, line in enumerate(lines) if line.confidence < self.fallback]
        if not redo:
            return lines
        saved = self.inner.config
        default = RecognizerConfig()  # the default's own height and width scale
        self.inner.config = replace(saved, height=default.height, width_scale=default.width_scale)
        try:
            again = self.inner.recognize(self.prepared([crops[i] for i in redo]))
        finally:
            self.inner.config = saved
        self.reread += len(redo)
        lines = list(lines)
        for i, line in zip(redo, again, strict=True):
            lines[i] = line
        return lines


class CachedDetector:
    """The default detector's regions for the item being read, found once."""

    def __init__(self) -> None:
        self.regions: list = []

    def detect(self, image):
        return self.regions


def detect_once(engine: Engine, path: Path) -> list:
    """The regions the default engine's detector finds on `path`'s first page, in page
    pixels (the page loop's call: it may narrow the buffer, never the regions)."""
    return engine.detector.detect_page(PageBuffer(next(iter_pages(path, InputLimits()))))


def read_with(
    rec: AtHeight, base: Engine, cached: CachedDetector, path: Path
) -> tuple[str, list, float]:
    engine = Engine("candidate", cached, rec, {}, base.classifier)
    before = rec.seconds
    regions = []
    for page in read_pages(engine, iter_pages(path, InputLimits())):
        regions += page.regions
    boxes = [(*r.bbox, r.text) for r in regions if r.page == 0]
    return page_text(regions), boxes, rec.seconds - before


def network_seconds(cands: dict, path: Path, regions: list, rounds: int) -> dict[str, float]:
    """Each candidate's network seconds over the item's crops, interleaved crop by crop
    (candidates in turn, `rounds` times) and the fastest of the rounds kept per crop, so
    a burst of load on the shared machine costs every candidate alike and little."""
    pixels = next(iter_pages(path, InputLimits()))
    crops = [as_rgb(crop_quad(pixels, r.quad)) for r in regions]
    feeds = {name: _tensors(rec, crops) for name, rec in cands.items()}
    best = {name: [float("inf")] * len(crops) for name in cands}
    for _ in range(rounds):
        for i in range(len(crops)):
            for name, rec in cands.items():
                session = rec.inner.session
                t0 = time.perf_counter()
                session.run(None, {session.get_inputs()[0].name: feeds[name][i]})
                best[name][i] = min(best[name][i], time.perf_counter() - t0)
    return {name: sum(times) for name, times in best.items()}


def _tensors(rec: AtHeight, crops: list) -> list:
    """One input tensor per crop, as the candidate's recognizer builds them."""
    cfg = rec.inner.config
    out = []
    for crop in rec.prepared(crops):
        width = rec_mod.resized_width(crop.shape[0], crop.shape[1], cfg)
        out.append(rec_mod.build_batch([crop], [width], cfg))
    return out


def run(args, cands: dict, base: Engine) -> dict:
    results: dict = {}
    cached = CachedDetector()
    names = list(cands)
    for folder in args.sets.split(","):
        for evalset in discover([EVAL / folder], limit=args.limit or None):
            for item in evalset.items:
                cached.regions = detect_once(base, item.image)
                nets = network_seconds(cands, item.image, cached.regions, args.rounds)
                for round_no in range(args.repeats):
                    for name in names if round_no % 2 == 0 else names[::-1]:
                        text, boxes, secs = read_with(cands[name], base, cached, item.image)
                        row = (
                            results.setdefault(evalset.name, {})
                            .setdefault(name, {})
                            .setdefault(item.name, {"s": []})
                        )
                        row["s"].append(secs)
                        row["net"] = nets[name]
                        if round_no == 0:
                            row["dist"], row["n"] = score_item(
                                item, evalset.conventions, text, boxes
                            )
                            row["text"] = text
            print(f"{evalset.name}: done", flush=True)
            if args.json:  # what is measured so far survives a run cut short
                args.json.write_text(json.dumps({"results": results}, indent=1))
    return results


def summary(results: dict, baseline: str) -> str:
    """Per set and candidate: CER, the recognizer's s/page in the page loop and the
    network's (fastest run per crop, where measured), each with its speed over the
    baseline's (x ours: > 1 is faster; the network's also per item, lowest-highest)."""
    rows = [
        "| candidate | set | CER % | loop s/page | x ours | network s/page | x ours (per item) |",
        "|---|---|---|---|---|---|---|",
    ]
    for set_name, by_cand in results.items():
        ref = by_cand[baseline]
        loop_ref = sum(statistics.median(r["s"]) for r in ref.values())
        for name, items in by_cand.items():
            dist = sum(r["dist"] for r in items.values())
            n = sum(r["n"] for r in items.values())
            loop = sum(statistics.median(r["s"]) for r in items.values())
            rows.append(
                f"| {name} | {set_name} | {100 * dist / max(n, 1):.2f} | "
                f"{loop / len(items):.3f} | {loop_ref / loop:.2f} | {_network(items, ref)} |"
            )
    return "\n".join(rows)


def _network(items: dict, ref: dict) -> str:
    if not all("net" in r for r in items.values()):
        return "- | -"
    net, net_ref = sum(r["net"] for r in items.values()), sum(r["net"] for r in ref.values())
    ratios = [ref[k]["net"] / r["net"] for k, r in items.items() if r["net"] > 0]
    return f"{net / len(items):.3f} | {net_ref / net:.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--candidate", action="append", default=[], help="NAME=ONNX[:DICT][@k=v,...]")
    ap.add_argument("--sets", default=",".join(SETS), help="folders under $EVAL")
    ap.add_argument("--repeats", type=int, default=1, help="page loop reads per item")
    ap.add_argument("--rounds", type=int, default=3, help="network runs per crop (fastest kept)")
    ap.add_argument("--limit", type=int, default=0, help="items per set (0: all)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--from-json", type=Path, help="print the table of an earlier --json run")
    args = ap.parse_args()
    if args.from_json:
        print(summary(json.loads(args.from_json.read_text())["results"], "ours-fp32"))
        return
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    ort.set_default_logger_severity(3)  # a free input height contradicts the graph's hints
    models_dir = settings_from_env().models_dir
    base = load(EngineOptions(engine="ppocr", precision="fp32"), models_dir, 1)
    specs = [parse_candidate(s) for s in ["ours-fp32=ours", *args.candidate]]
    cands, macs = {}, {}
    for cand in specs:
        rec, path = load_candidate(cand, models_dir)
        cands[cand.name] = AtHeight(rec, cand.height, cand.trim, cand.fallback)
        macs[cand.name] = MacCounter(path).gmac((1, 3, cand.height, 800))
    print("GMAC at 1x3xHx800 (full head): " + ", ".join(f"{k} {v:.2f}" for k, v in macs.items()))
    results = run(args, cands, base)
    print(f"\nload {os.getloadavg()}\n" + summary(results, "ours-fp32"))
    for name, rec in cands.items():
        if rec.fallback > 0:
            print(f"{name}: {rec.reread} of {rec.lines} line reads read again at 48 px")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "gmac_800": macs}, indent=1))


if __name__ == "__main__":
    main()
