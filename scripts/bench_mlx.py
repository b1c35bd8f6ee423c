"""Lines/s of the MLX TrOCR against the ONNX FP32 engine (and PyTorch `generate`) on one
random-weight model with trocr-small-printed (or -base) shapes, side by side in one run.

    python scripts/bench_mlx.py [--kind small] [--threads 1] [--batch 8] [--steps 32]

Every contender decodes the same rendered lines, 384x384 input, exactly `--steps` tokens
(EOS is masked until then), in a fresh child process with `--threads` BLAS/ORT threads.
MLX runs twice: with the BLAS bundled in the mlx[cpu] wheel, and with Debian's OpenBLAS
(libopenblas0-pthread) put in front of it by LD_PRELOAD. MLX is for Apple Silicon; this
CPU run is the honest Linux figure, not a prediction of Apple speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OPENBLAS = Path("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0")


def prepare(work: Path, kind: str) -> dict[str, Path]:
    """The random full-size model, its ONNX export and its MLX conversion (cached in work)."""
    from models.tooling.mlx.convert import convert
    from models.tooling.trocr.tools import export_model
    from tests.tiny_models import full_size_trocr

    source = work / f"random-trocr-{kind}"
    models_dir = work / "models"
    if not (source / "config.json").is_file():
        print(f"building random full-size trocr-{kind} in {source} ...", flush=True)
        full_size_trocr(source, kind=kind)
    onnx_dir = models_dir / source.name
    if not (onnx_dir / "manifest.json").is_file():
        print("exporting ONNX ...", flush=True)
        export_model(str(source), models_dir, check=False)
    mlx_dir = models_dir / f"{source.name}-mlx"
    if not (mlx_dir / "manifest.json").is_file():
        print("converting to MLX ...", flush=True)
        convert(source, models_dir, check=False)
    return {"torch": source, "onnx": onnx_dir, "mlx": mlx_dir}


def measure(kind: str, model_dir: Path, batch: int, steps: int, batches: int, threads: int) -> dict:
    """In the child: lines/s of one contender over `batches` batches after one warm-up."""
    from models.tooling.trocr.images import sample_lines
    from models.trocr.preprocess import Preprocessor

    crops = (sample_lines(8) * (batch // 8 + 1))[:batch]
    pixels = Preprocessor.from_file(model_dir / "preprocessor_config.json")(crops)
    if kind == "mlx":
        import mlx.core as mx

        from models.mlx.generate import greedy
        from models.mlx.model import load_model

        model = load_model(model_dir)

        def run(x: np.ndarray) -> int:
            return sum(len(d.tokens) for d in greedy(model, x, steps, min_new_tokens=steps))

        def encode() -> None:
            mx.eval(model.cross_kv(model.encode(pixels)))
    elif kind == "onnx":
        from models.trocr.files import onnx_files
        from models.trocr.runtime import OnnxTrOCR, TokenIds, greedy

        model = OnnxTrOCR(*onnx_files(model_dir, "fp32"), TokenIds.from_dir(model_dir), threads)

        def run(x: np.ndarray) -> int:
            return sum(len(d.tokens) for d in greedy(model, x, steps, min_new_tokens=steps))

        def encode() -> None:
            model.encode(pixels)
    else:
        import torch

        from models.tooling.trocr.hf import load_pretrained

        torch.set_num_threads(threads)
        hf, _ = load_pretrained(model_dir)

        def run(x: np.ndarray) -> int:
            with torch.no_grad():
                out = hf.generate(
                    torch.from_numpy(x), max_new_tokens=steps, min_new_tokens=steps, num_beams=1
                )
            return int(out.shape[0] * (out.shape[1] - 1))

        def encode() -> None:
            with torch.no_grad():
                hf.encoder(pixel_values=torch.from_numpy(pixels))

    run(pixels[:1])  # warm-up on one line: sessions, allocations, kernel selection
    start = time.perf_counter()
    tokens = sum(run(pixels) for _ in range(batches))
    elapsed = time.perf_counter() - start
    if tokens != batch * steps * batches:
        raise RuntimeError(f"{kind}: decoded {tokens} tokens, expected {batch * steps * batches}")
    start = time.perf_counter()
    encode()
    encode_s = time.perf_counter() - start
    return {
        "lines_per_s": batch * batches / elapsed,
        "s_per_batch": elapsed / batches,
        "encoder_share": encode_s / (elapsed / batches),
    }


def child_env(threads: int, preload: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.pop("LD_PRELOAD", None)
    if preload is not None:
        env["LD_PRELOAD"] = str(preload)
    return env


def run_child(args: argparse.Namespace, kind: str, model_dir: Path, preload: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--model-dir", str(model_dir)]
    cmd += ["--batch", str(args.batch), "--steps", str(args.steps)]
    cmd += ["--batches", str(args.batches), "--threads", str(args.threads)]
    proc = subprocess.run(
        cmd, env=child_env(args.threads, preload), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["small", "base"], default="small")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ocrq-bench-mlx"))
    parser.add_argument("--threads", type=int, default=1, help="threads per process")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=32, help="decode steps, forced")
    parser.add_argument("--batches", type=int, default=1, help="timed batches per contender")
    parser.add_argument("--repeats", type=int, default=1, help="runs per contender, best kept")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch generate")
    parser.add_argument(
        "--no-bundled-blas", action="store_true", help="skip MLX on its bundled BLAS (~10x slower)"
    )
    parser.add_argument("--child", choices=["mlx", "onnx", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = measure(
            args.child, args.model_dir, args.batch, args.steps, args.batches, args.threads
        )
        print(json.dumps(result))
        return

    dirs = prepare(args.work, args.kind)
    preload = OPENBLAS if OPENBLAS.is_file() else None
    contenders = [("onnxruntime FP32", "onnx", None)]
    if not args.no_torch:
        contenders.append(("PyTorch generate FP32", "torch", None))
    if not args.no_bundled_blas:
        contenders.append(("MLX FP32, bundled BLAS", "mlx", None))
    if preload is not None:
        contenders.append(("MLX FP32, OpenBLAS LD_PRELOAD", "mlx", preload))
    else:
        print(f"({OPENBLAS} missing: apt-get install libopenblas0-pthread)")
    results = {}
    for label, kind, pre in contenders:
        runs = [run_child(args, kind, dirs[kind], pre) for _ in range(args.repeats)]
        results[label] = max(runs, key=lambda r: r["lines_per_s"])
        print(f"  {label}: {results[label]['lines_per_s']:.2f} lines/s", flush=True)

    base = results["onnxruntime FP32"]["lines_per_s"]
    print()
    print(
        f"trocr-{args.kind} shapes (random weights), 384x384, batch {args.batch}, "
        f"{args.steps} decode steps forced, {args.threads} thread(s), "
        f"best of {args.repeats} x {args.batches} batches"
    )
    print(f"{'contender':32} {'lines/s':>8} {'s/batch':>8} {'encoder':>8} {'vs ORT':>7}")
    for label, r in results.items():
        print(
            f"{label:32} {r['lines_per_s']:8.2f} {r['s_per_batch']:8.2f} "
            f"{r['encoder_share']:8.0%} {r['lines_per_s'] / base:6.2f}x"
        )


if __name__ == "__main__":
    main()
