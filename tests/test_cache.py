"""Model cache: manifest round trip, merge, file hashes, corruption detection, listing."""

from __future__ import annotations

import hashlib
import json

import pytest

from models.cache import (
    add_files,
    default_name,
    list_models,
    new_manifest,
    read_manifest,
    resolve_model,
    update_manifest,
    verify_files,
    write_manifest,
)
from ocrq.errors import ModelError


def test_manifest_roundtrip_merge_and_hashes(tmp_path):
    model = tmp_path / "m1"
    model.mkdir()
    (model / "a.onnx").write_bytes(b"abc")
    write_manifest(model, new_manifest("m1", "org/m1", "trocr", opset=18))
    manifest = add_files(model, ["a.onnx"])
    assert manifest["files"]["a.onnx"] == {
        "sha256": hashlib.sha256(b"abc").hexdigest(),
        "bytes": 3,
    }
    update_manifest(model, parity={"fp32": {"ok": True}})
    update_manifest(model, parity={"int8": {"ok": False}})
    manifest = read_manifest(model)
    assert manifest["parity"] == {"fp32": {"ok": True}, "int8": {"ok": False}}
    assert manifest["source"] == "org/m1" and manifest["opset"] == 18
    assert "python" in manifest["versions"]
    verify_files(model)
    (model / "a.onnx").write_bytes(b"abd")
    with pytest.raises(ModelError, match="sha256"):
        verify_files(model)


def test_resolve_and_list(tmp_path):
    cache = tmp_path / "cache"
    for name in ("b", "a"):
        write_manifest(cache / name, new_manifest(name, name, "trocr"))
    (cache / "not-a-model").mkdir()
    (cache / "broken").mkdir()
    (cache / "broken" / "manifest.json").write_text("{")
    names = [name for name, _ in list_models(cache)]
    assert names == ["a", "b", "broken"]
    assert "error" in dict(list_models(cache))["broken"]
    assert resolve_model("a", cache) == cache / "a"
    assert resolve_model(str(cache / "b"), tmp_path / "elsewhere") == cache / "b"
    with pytest.raises(ModelError, match="not found.*a, b"):
        resolve_model("zzz", cache)
    assert list_models(tmp_path / "missing") == []
    assert json.loads((cache / "a" / "manifest.json").read_text())["name"] == "a"


def test_default_name():
    assert default_name("microsoft/trocr-small-printed") == "trocr-small-printed"
    assert default_name("/tmp/some dir/") == "some-dir"
