"""Reusable scratch buffers, so that a convolution does not allocate (and page-fault) fresh memory each call.

Buffers are kept per thread (concurrent calls never share one) and per slot; a buffer larger than
``KEEP_BYTES`` is handed out but not kept, so the memory held between calls stays small.
"""

from __future__ import annotations

import threading

import numpy as np

KEEP_BYTES = 64 * 2**20
_local = threading.local()


def scratch(count: int, dtype, slot: int = 0) -> np.ndarray:
    """A flat array of at least ``count`` elements of ``dtype``, contents undefined."""
    dtype = np.dtype(dtype)
    nbytes = max(count, 1) * dtype.itemsize
    if dtype == object:
        return np.empty(count, dtype=object)
    cache = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    held = cache.get(slot)
    if held is None or held.nbytes < nbytes:
        held = np.empty(nbytes, dtype=np.uint8)
        if nbytes <= KEEP_BYTES:
            cache[slot] = held
    return held[:nbytes].view(dtype)[:count]


def release() -> None:
    """Free every buffer this thread keeps."""
    getattr(_local, "buffers", {}).clear()
