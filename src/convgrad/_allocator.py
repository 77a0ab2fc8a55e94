"""glibc's malloc set up for a training loop, whose every step allocates and frees the same large arrays.

By default glibc serves an allocation above its mmap threshold (128 KiB, raised up to 32 MiB each time
such a block is freed) with fresh pages from the system, and returns freed memory at the top of the
heap to the system once more than twice that threshold lies there. A training step's activations
(several MiB each) then page-fault afresh step after step. Measured, a depthwise 3x3 + batch norm +
ReLU + 1x1 + batch norm + ReLU block on (32, 64, 32, 32), forward + backward: 50.0-52.8 ms by
default, 39.4-40.8 ms with the settings below (41.6-47.4 ms after one large block was freed, the
benchmark's warm-up). Setting the trim threshold alone made it worse (64-67 ms: setting either
fixes the mmap threshold, at 128 KiB unless set too).
"""

from __future__ import annotations

import ctypes
import platform
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: allocations up to 32 MiB reuse freed memory
TRIM_THRESHOLD = 2**30  # freed memory stays with the process up to 1 GiB at the top of the heap

_state = {"applied": False}


def keep_freed_memory() -> bool:
    """Have glibc serve allocations up to ``MMAP_THRESHOLD`` from memory the process freed before, and
    keep freed memory instead of returning it to the system (the process's resident size then stays
    at its peak). For this process, once; True where applied (Linux with glibc), else False."""
    if _state["applied"]:
        return True
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _state["applied"] = applied
    return applied
