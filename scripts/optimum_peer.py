"""optimum's `ORTModelForVision2Seq` as a throughput peer, run under ANOTHER interpreter.

optimum-onnx needs transformers<4.58 and ocrq runs transformers 5, so this file imports
nothing from ocrq: `scripts/bench_trocr.py --optimum-python PY` runs it with a Python
that has optimum installed (see `make optimum-venv`), hands it the HF model directory and
the pixel values as a .npy file, and reads one JSON line back.

    PY scripts/optimum_peer.py HF_DIR PIXELS.npy --batch 8 --steps 32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("hf_dir")
    ap.add_argument("pixels")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=0, help="time only this many batches")
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForVision2Seq

    torch.set_num_threads(args.threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    t = time.perf_counter()
    # optimum's default export: merged decoder with KV cache (use_cache=True), FP32
    model = ORTModelForVision2Seq.from_pretrained(
        args.hf_dir, export=True, session_options=opts, provider="CPUExecutionProvider"
    )
    export_s = time.perf_counter() - t
    pv = torch.from_numpy(np.load(args.pixels))
    if args.calls:
        pv = pv[: args.batch * args.calls]
    kw = dict(max_new_tokens=args.steps, min_new_tokens=args.steps, num_beams=1, do_sample=False)
    model.generate(pixel_values=pv[: args.batch], **kw)  # warm-up
    t = time.perf_counter()
    for i in range(0, len(pv), args.batch):
        out_ids = model.generate(pixel_values=pv[i : i + args.batch], **kw)
        assert out_ids.shape[1] == args.steps + 1, out_ids.shape
    elapsed = time.perf_counter() - t
    print(
        json.dumps(
            {
                "lines_per_s": len(pv) / elapsed,
                "lines": len(pv),
                "export_s": export_s,
                "versions": {
                    "optimum": _version("optimum"),
                    "optimum-onnx": _version("optimum-onnx"),
                    "transformers": _version("transformers"),
                    "onnxruntime": ort.__version__,
                },
                "python": sys.version.split()[0],
                "pid": os.getpid(),
            }
        )
    )


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    main()
