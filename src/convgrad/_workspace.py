"""Reusable scratch buffers, so that a convolution does not allocate (and page-fault) fresh memory each call.

Buffers are kept per thread (concurrent calls never share one) and per slot; a buffer larger than
``KEEP_BYTES`` is handed out but not kept, so the memory held between calls stays small.
"""

from __future__ import annotations

import math
import threading

import numpy as np

KEEP_BYTES = 64 * 2**20
ALIGNMENT = 64  # bytes: a cache line, and the width of an AVX-512 load
_local = threading.local()


def scratch(count: int, dtype, slot: int = 0) -> np.ndarray:
    """A flat array of at least ``count`` elements of ``dtype``, contents undefined, aligned (:func:`aligned_bytes`)."""
    dtype = np.dtype(dtype)
    nbytes = max(count, 1) * dtype.itemsize
    if dtype == object:
        return np.empty(count, dtype=object)
    cache = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    held = cache.get(slot)
    if held is None or held.nbytes < nbytes:
        held = aligned_bytes(nbytes)
        if nbytes <= KEEP_BYTES:
            cache[slot] = held
    return held[:nbytes].view(dtype)[:count]


def aligned_bytes(nbytes: int) -> np.ndarray:
    """``nbytes`` uninitialised bytes starting on an ``ALIGNMENT`` boundary (malloc gives 16).

    OpenBLAS reads a matrix product's right operand and writes its result faster when they start on
    a cache line: measured float32 ``(8, 25) @ (25, 36864)`` 164 µs aligned against 242 µs with the
    right operand 16 bytes past a line (272 with all three), ``(16, 150) @ (150, 4096)`` 163 against 228,
    ``(64, 192) @ (192, 5424)`` 685 against 760 (its result alone 748); the left operand's start made
    no difference."""
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start: start + nbytes]


def aligned_empty(shape, dtype) -> np.ndarray:
    """A new uninitialised array of ``shape`` and ``dtype`` whose data starts on an ``ALIGNMENT`` boundary
    (a view of its own buffer: for arrays kept inside the library, not handed to a caller)."""
    dtype = np.dtype(dtype)
    if dtype == object:
        return np.empty(shape, dtype=object)
    return aligned_bytes(math.prod(shape) * dtype.itemsize).view(dtype).reshape(shape)


def release() -> None:
    """Free every buffer this thread keeps."""
    getattr(_local, "buffers", {}).clear()
