"""What this CPU's INT8 kernels can do, for choosing how INT8 graphs are quantized.

ONNX Runtime runs u8 activations x s8 weights (the only format our INT8 graphs use).
On x86 CPUs without VNNI its AVX2 / AVX-512BW kernels multiply with VPMADDUBSW, which adds
each pair of u8*s8 products into a 16-bit integer and saturates: two products of
255 * 127 exceed 32,767. ORT's documented way out is `reduce_range`: weights quantized to
7 bits (-64..63), so a pair sums to at most 2 * 255 * 64 = 32,640 and never saturates.
VNNI (VPDPBUSD), AMX and ARM's dot-product instructions accumulate in 32 bits, so there
8-bit weights are exact and keep their extra bit of precision.

Measured on an AMD EPYC exposing AVX2 only (no VNNI): the PP-OCR INT8 recognizer read
SROIE receipts at 5.66 % CER with 8-bit weights, 3.79 % with 7-bit ones (3.11 % in FP32).
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

# Any of these gives ORT a 32-bit-accumulating u8*s8 dot product.
NO_SATURATION_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def _cpuinfo(field: str) -> str | None:
    """The first `field : value` of /proc/cpuinfo (None where there is none, e.g. macOS)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo has none)."""
    return frozenset((_cpuinfo("flags") or "").split())


def int8_needs_reduce_range(
    machine: str | None = None, flags: frozenset[str] | None = None
) -> bool:
    """True when 8-bit weights could saturate this CPU's INT8 kernels: x86 without VNNI.

    An x86 CPU whose flags cannot be read counts as saturating (7-bit weights cost a
    little precision; saturation costs whole characters)."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    flags = cpu_flags() if flags is None else flags
    return not (flags & NO_SATURATION_FLAGS)


def int8_preferred(machine: str | None = None, flags: frozenset[str] | None = None) -> bool:
    """True where `--precision auto` picks INT8 for the PP-OCR engine: x86 with a
    32-bit-accumulating INT8 dot product, so its weights are 8-bit. Measured there (AMD
    EPYC with VNNI): the INT8 recognizer read all four eval sets within 4 errors of FP32
    in 51,923 characters and read each set 1.36-1.51x faster; on an Intel Xeon with
    AVX-512 VNNI and AMX, 749 errors each, 1.16-1.22x faster. With 7-bit weights (x86 without
    VNNI) receipts lost 0.26 CER points, so FP32 stays; other CPUs are not measured."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return False
    return not int8_needs_reduce_range(machine, flags)


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor()
