"""TrOCR throughput, side by side in one run: PyTorch `generate` vs our ONNX engine.

Random-weight models with the trocr-small-printed and trocr-base-printed shapes (384x384
input), exactly `--steps` decode steps forced (EOS masked) so every peer does the same
work. Rows:
  torch-fp32   transformers `generate`, FP32, one process with 2 threads
  torch-pair   (--torch-pair) the same in the pinned 1-thread pair layout
  ours-fp32    our KV-cached decoding, FP32 graphs, 2 pinned 1-thread processes
  ours-int8    same with the dynamic INT8 (per-channel) graphs
  optimum      (--optimum-python PY) optimum's `ORTModelForVision2Seq`, FP32, one process
               with 2 threads, run by scripts/optimum_peer.py under PY: optimum-onnx
               needs transformers<4.58, so it lives in its own venv (make optimum-venv)
The pinned pair is the worker layout: one process per core (`os.sched_setaffinity`), one
ORT thread each, each decoding half of the lines; lines/s = all lines / wall time from a
common start (after warm-up).

    python scripts/bench_trocr.py [--sizes small,base] [--batches 8,32] [--steps 32]
        [--optimum-python ~/.cache/ocrq/optimum-venv/bin/python]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def prepare(work: Path, kind: str) -> Path:
    """Full-size random model -> exported + INT8 (dynamic) in `work/models/<kind>`; INT8
    built for another kind of CPU (8-bit vs 7-bit weights, `models/cpu.py`) is rebuilt."""
    from models import cache
    from models.cpu import int8_needs_reduce_range
    from models.tooling.trocr.tools import export_model, quantize
    from tests.tiny_models import full_size_trocr

    models_dir = work / "models"
    model_dir = models_dir / f"bench-{kind}"
    if not (model_dir / cache.MANIFEST).is_file():
        hf = work / "hf" / kind
        if not (hf / "model.safetensors").is_file():
            t = time.perf_counter()
            full_size_trocr(hf, kind=kind)
            print(f"  built random {kind} model in {time.perf_counter() - t:.0f}s", flush=True)
        t = time.perf_counter()
        export_model(str(hf), models_dir, name=f"bench-{kind}", check=True)
        print(f"  exported {kind} (with fp32 parity check) in {time.perf_counter() - t:.0f}s")
    int8 = cache.read_manifest(model_dir).get("quantization", {}).get("int8")
    if not int8 or int8.get("reduce_range", False) != int8_needs_reduce_range():
        t = time.perf_counter()
        quantize(f"bench-{kind}", models_dir, "dynamic")
        print(f"  quantized {kind} in {time.perf_counter() - t:.0f}s", flush=True)
    return model_dir


def pixel_values(model_dir: Path, n: int) -> np.ndarray:
    from models.tooling.trocr.images import sample_lines
    from models.trocr.preprocess import Preprocessor

    return Preprocessor.from_file(model_dir / "preprocessor_config.json")(sample_lines(n))


def _torch_worker(source, pv, batch, steps, threads, q, core=None, barrier=None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})
    import torch

    from models.tooling.trocr.hf import load_pretrained

    torch.set_num_threads(threads)
    model, _ = load_pretrained(source)
    x = torch.from_numpy(pv)
    kw = dict(max_new_tokens=steps, min_new_tokens=steps, num_beams=1, do_sample=False)
    with torch.no_grad():
        model.generate(pixel_values=x[:batch], **kw)  # warm-up
        if barrier is not None:
            barrier.wait()
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            out = model.generate(pixel_values=x[i : i + batch], **kw)
            assert out.shape[1] == steps + 1
        q.put((time.perf_counter(), t))


def _ours_worker(model_dir, precision, pv, batch, steps, core, barrier, q) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})
    from models.trocr.engine import load_recognizer

    rec, _ = load_recognizer(str(model_dir), model_dir.parent, precision, threads=1)
    from models.trocr.runtime import greedy

    greedy(rec.model, pv[:batch], steps, min_new_tokens=steps)  # warm-up
    barrier.wait()
    t = time.perf_counter()
    for i in range(0, len(pv), batch):
        out = greedy(rec.model, pv[i : i + batch], steps, min_new_tokens=steps)
        assert all(len(d.tokens) == steps for d in out)
    q.put((time.perf_counter(), t))


def run_torch(source: str, pv: np.ndarray, batch: int, steps: int, threads: int = 2) -> float:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_torch_worker, args=(source, pv, batch, steps, threads, q))
    p.start()
    end, start = q.get()
    p.join()
    return len(pv) / (end - start)


def run_torch_pair(source: str, pv: np.ndarray, batch: int, steps: int) -> float:
    """PyTorch in the worker layout too: two pinned 1-thread processes, half the lines each."""
    ctx = mp.get_context("spawn")
    q, barrier = ctx.Queue(), ctx.Barrier(2)
    cores = sorted(os.sched_getaffinity(0))
    half = len(pv) // 2
    procs = [
        ctx.Process(
            target=_torch_worker,
            args=(source, part, batch, steps, 1, q, cores[i % len(cores)], barrier),
        )
        for i, part in enumerate((pv[:half], pv[half:]))
    ]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return len(pv) / (max(t1 for t1, _ in results) - min(t0 for _, t0 in results))


def run_pair(model_dir: Path, precision: str, pv: np.ndarray, batch: int, steps: int) -> float:
    """Two pinned single-threaded processes, each decoding half of the lines."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    barrier = ctx.Barrier(2)
    cores = sorted(os.sched_getaffinity(0))
    half = len(pv) // 2
    procs = [
        ctx.Process(
            target=_ours_worker,
            args=(model_dir, precision, part, batch, steps, cores[i % len(cores)], barrier, q),
        )
        for i, part in enumerate((pv[:half], pv[half:]))
    ]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    start = min(t0 for _, t0 in results)
    end = max(t1 for t1, _ in results)
    return len(pv) / (end - start)


def run_optimum(
    python: str, hf_dir: str, pv: np.ndarray, batch: int, steps: int, calls: int
) -> float:
    """optimum's ORTModelForVision2Seq (FP32, merged decoder with KV cache), one process with
    2 threads like the torch row, run by `python` (an interpreter with optimum installed:
    optimum-onnx needs transformers<4.58, ocrq runs 5.x)."""
    import json
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".npy") as f:
        np.save(f.name, pv)
        cmd = [python, str(Path(__file__).with_name("optimum_peer.py")), hf_dir, f.name]
        cmd += ["--batch", str(batch), "--steps", str(steps), "--threads", "2"]
        cmd += ["--calls", str(calls)]
        out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"optimum peer failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"   optimum versions {result['versions']}", flush=True)
    return float(result["lines_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="small,base")
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--lines", type=int, default=64, help="lines per measurement (>= 2*batch)")
    ap.add_argument(
        "--torch-calls",
        type=int,
        default=0,
        help="time only this many `generate` calls of one batch (0: all lines), for PyTorch "
        "and optimum: they are the slow peers, so this keeps a base-size run short",
    )
    ap.add_argument(
        "--torch-pair",
        action="store_true",
        help="also time PyTorch in the pinned 1-thread pair layout",
    )
    ap.add_argument(
        "--optimum-python",
        default="",
        help="a Python with optimum[onnxruntime] and transformers<4.58 (make optimum-venv); "
        "adds the optimum row",
    )
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/ocrq/bench-trocr"))
    args = ap.parse_args()
    work = Path(args.work)
    sizes = args.sizes.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    print(f"cores {sorted(os.sched_getaffinity(0))}, load average {os.getloadavg()}", flush=True)
    rows = []
    from models import cache

    for kind in sizes:
        print(f"preparing {kind} ...", flush=True)
        model_dir = prepare(work, kind)
        manifest = cache.read_manifest(model_dir)
        source = manifest["source"]
        for batch in batches:
            n = max(args.lines, 2 * batch)
            pv = pixel_values(model_dir, n)
            print(f"{kind} batch {batch}: {n} lines x {args.steps} steps", flush=True)
            figures = {
                "torch-fp32": run_torch(
                    source,
                    pv[: batch * args.torch_calls] if args.torch_calls else pv,
                    batch,
                    args.steps,
                ),
                "ours-fp32": run_pair(model_dir, "fp32", pv, batch, args.steps),
                "ours-int8": run_pair(model_dir, "int8", pv, batch, args.steps),
            }
            if args.optimum_python:
                figures["optimum"] = run_optimum(
                    args.optimum_python,
                    source,
                    pv,
                    batch,
                    args.steps,
                    args.torch_calls,
                )
            if args.torch_pair:
                figures["torch-pair"] = run_torch_pair(source, pv, batch, args.steps)
            print("   " + "  ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)
            rows.append((kind, batch, figures))
        parity = manifest.get("parity", {})
        fp32, int8 = parity.get("fp32", {}), parity.get("int8_vs_fp32", {})
        print(
            f"  parity {kind}: fp32 vs torch rel {fp32.get('max_rel_logit_diff', float('nan')):.1e}"
            f" rows {fp32.get('greedy_rows_identical')}/{fp32.get('inputs')}; int8 vs fp32 "
            f"cosine {int8.get('logit_cosine', float('nan')):.5f} token agreement "
            f"{int8.get('greedy_token_agreement', float('nan')):.3f}, teacher-forced top-1 "
            f"{int8.get('forced_top1_agreement', float('nan')):.3f} (FP32 top-1 margin "
            f"{int8.get('reference_top1_margin', float('nan')):.3g})",
            flush=True,
        )
    if not args.optimum_python:
        print("\noptimum: not run (give --optimum-python; see make optimum-venv)")
    print(f"load average at end {os.getloadavg()}")
    extra = any("torch-pair" in f for _, _, f in rows)
    opt = any("optimum" in f for _, _, f in rows)
    head = f"{'model':<6} {'batch':>5} {'torch-fp32':>11}" + (
        f" {'torch-pair':>10}" if extra else ""
    )
    head += f" {'optimum':>8}" if opt else ""
    head += f" {'ours-fp32':>10} {'ours-int8':>10} {'int8/torch':>10} {'fp32/torch':>10}"
    head += f" {'int8/optimum':>12}" if opt else ""
    print(f"\nlines/s ({args.steps} decode steps forced, 384x384, 2 cores)")
    print(head + (f" {'int8/t-pair':>11}" if extra else ""))
    for kind, batch, f in rows:
        line = f"{kind:<6} {batch:>5} {f['torch-fp32']:>11.2f}"
        if extra:
            line += f" {f.get('torch-pair', float('nan')):>10.2f}"
        if opt:
            line += f" {f.get('optimum', float('nan')):>8.2f}"
        line += (
            f" {f['ours-fp32']:>10.2f} {f['ours-int8']:>10.2f}"
            f" {f['ours-int8'] / f['torch-fp32']:>9.1f}x {f['ours-fp32'] / f['torch-fp32']:>9.1f}x"
        )
        if opt:
            line += f" {f['ours-int8'] / f.get('optimum', float('nan')):>11.1f}x"
        if extra and "torch-pair" in f:
            line += f" {f['ours-int8'] / f['torch-pair']:>10.1f}x"
        print(line)


if __name__ == "__main__":
    main()
