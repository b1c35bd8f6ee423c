"""Content hashes for dedupe: same bytes + same model = already done."""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed in `chunk`-byte reads into one reused buffer."""
    digest = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of in-memory bytes (inline images), same form as `sha256_file`."""
    return hashlib.sha256(data).hexdigest()
