"""What a bench run records about itself: the command, the machine, versions, load."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time

from models.cpu import cpu_model, int8_needs_reduce_range
from ocrq.threads import allowed_cores


def versions() -> dict:
    out = {"python": platform.python_version()}
    for package in ("onnxruntime", "rapidocr", "numpy"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = None
    if shutil.which("tesseract"):
        proc = subprocess.run(["tesseract", "--version"], capture_output=True, text=True)
        first = (proc.stdout or proc.stderr).splitlines()
        out["tesseract"] = first[0] if first else None
    return out


def run_meta(folders, specs, limit, workers, models_dir, started) -> dict:
    return {
        "command": command_line(),
        "argv": list(sys.argv),
        "folders": [str(f) for f in folders],
        "runners": [s.label for s in specs],
        "limit": limit or None,
        "workers": workers,
        "models_dir": str(models_dir),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "cores": allowed_cores(),
        "machine": platform.machine(),
        "processor": cpu_model(),
        "int8_reduce_range": int8_needs_reduce_range(),
        "versions": versions(),
    }


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def command_line() -> str:
    """`ocrq bench ARGS` as typed (best effort: the words after `bench`, if present)."""
    args = sys.argv[1:]
    if "bench" in args:
        args = args[args.index("bench") + 1 :]
    return shlex.join(["ocrq", "bench", *args])
