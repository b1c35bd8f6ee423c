"""sha256 of files, streamed: equal to hashlib over the whole bytes at every chunk boundary."""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from ocrq.hashing import sha256_bytes, sha256_file


@pytest.mark.parametrize("size", [0, 1, 6, 7, 8, 14, 15, 1000])
def test_matches_hashlib_at_chunk_boundaries(tmp_path, size):
    data = random.Random(size).randbytes(size)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk=7) == want
    assert sha256_file(path) == want
    assert sha256_bytes(data) == want


def test_large_file_default_chunk(tmp_path):
    data = random.Random(3).randbytes(3 * (1 << 20) + 12345)  # several 1 MiB chunks + tail
    path = tmp_path / "big.tif"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(path)) == sha256_file(path)


def test_empty_file_and_odd_names(tmp_path):
    raw = tmp_path / os.fsdecode(b"caf\xe9 \xff.png")
    raw.write_bytes(b"")
    assert sha256_file(raw) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    uni = tmp_path / "ünï 日本.png"
    uni.write_bytes(b"abc")
    assert sha256_file(uni) == hashlib.sha256(b"abc").hexdigest()


def test_different_content_different_hash(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"page 1")
    b.write_bytes(b"page 2")
    assert sha256_file(a) != sha256_file(b)


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "gone.png")
