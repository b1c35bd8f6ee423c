"""The model cache: one directory per model under `Settings.models_dir` (`OCRQ_MODELS`).

Each model directory holds its artifacts and a `manifest.json`:

    {
      "name": "trocr-small-printed",
      "source": "microsoft/trocr-small-printed",    # hub id or the local directory exported
      "kind": "trocr",
      "created": "2026-11-23T14:20:00+00:00",
      "files": {"encoder.onnx": {"sha256": "...", "bytes": 123}, ...},   # relative paths
      "versions": {"python": "3.11.7", "torch": "2.13.0+cpu", ...},
      "opset": 18,
      "quantization": {"int8": {"mode": "dynamic", "per_channel": true, ...}},
      "parity": {"fp32": {...}, "int8": {...}}
    }

Backends add their own keys (e.g. "mlx"); `update_manifest` merges top-level keys, and
`add_files` records files with their sha256 so `verify_files` can detect corruption.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ocrq.errors import ModelError
from ocrq.hashing import sha256_file

MANIFEST = "manifest.json"
_VERSIONED = ("torch", "transformers", "tokenizers", "onnx", "onnxruntime", "mlx", "numpy")


def versions(packages: tuple[str, ...] = _VERSIONED) -> dict[str, str]:
    """Installed versions from package metadata (no imports: cheap and side-effect free)."""
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def default_name(source: str) -> str:
    """Cache name for a source: a hub id's last part, or a local directory's name."""
    name = Path(str(source).rstrip("/")).name or str(source)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def model_path(name: str, models_dir: Path) -> Path:
    if not name or "/" in name or name in (".", ".."):
        raise ModelError(f"invalid model name {name!r}")
    return Path(models_dir) / name


def resolve_model(name_or_dir: str | Path, models_dir: Path) -> Path:
    """A directory given as such, else `models_dir/name`; it must hold a manifest."""
    candidate = Path(name_or_dir).expanduser()
    if not candidate.is_dir():
        candidate = Path(models_dir) / str(name_or_dir)
    if not (candidate / MANIFEST).is_file():
        known = ", ".join(name for name, _ in list_models(models_dir)) or "none"
        raise ModelError(
            f"model {str(name_or_dir)!r} not found (no {MANIFEST} in {candidate}); "
            f"models in {models_dir}: {known}"
        )
    return candidate


@contextmanager
def staged(final: Path) -> Iterator[Path]:
    """A temporary sibling folder to build a model in; renamed to `final` only when the
    block succeeds, so a failed export or conversion never leaves a half model behind."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_manifest(model_dir: Path | str) -> dict[str, Any]:
    path = Path(model_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError(f"no manifest in {model_dir}") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"corrupt manifest {path}: {exc}") from exc


def write_manifest(model_dir: Path | str, manifest: dict[str, Any]) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a manifest."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=model_dir, prefix=".manifest.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, model_dir / MANIFEST)
    return model_dir / MANIFEST


def new_manifest(name: str, source: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": source,
        "kind": kind,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {},
        "versions": versions(),
        **extra,
    }


def update_manifest(model_dir: Path | str, **changes: Any) -> dict[str, Any]:
    """Merge top-level keys; dict values are merged one level deep (e.g. parity.int8)."""
    manifest = read_manifest(model_dir)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(manifest.get(key), dict):
            manifest[key] = {**manifest[key], **value}
        else:
            manifest[key] = value
    write_manifest(model_dir, manifest)
    return manifest


def add_files(model_dir: Path | str, relpaths: list[str]) -> dict[str, Any]:
    """Record files (relative to the model directory) with sha256 and size."""
    model_dir = Path(model_dir)
    entries = {}
    for rel in relpaths:
        path = model_dir / rel
        entries[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return update_manifest(model_dir, files=entries)


def verify_files(model_dir: Path | str, relpaths: list[str] | None = None) -> None:
    """Raise ModelError if a recorded file is missing or its sha256 differs."""
    model_dir = Path(model_dir)
    files = read_manifest(model_dir).get("files", {})
    for rel in relpaths if relpaths is not None else list(files):
        entry = files.get(rel)
        path = model_dir / rel
        if entry is None:
            raise ModelError(f"{rel} is not recorded in {model_dir / MANIFEST}")
        if not path.is_file():
            raise ModelError(f"model file missing: {path}")
        if sha256_file(path) != entry["sha256"]:
            raise ModelError(f"model file corrupt (sha256 mismatch): {path}")


def list_models(models_dir: Path | str) -> list[tuple[str, dict[str, Any]]]:
    """(name, manifest) for every model directory in the cache, sorted by name."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    found = []
    for child in sorted(models_dir.iterdir()):
        if (child / MANIFEST).is_file():
            try:
                found.append((child.name, read_manifest(child)))
            except ModelError as exc:
                found.append((child.name, {"error": str(exc)}))
    return found
