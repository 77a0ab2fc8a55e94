"""Element-wise work split across cores. NumPy releases the GIL while it copies or adds large arrays,
so threads give real parallelism for the memory-bound parts of an algorithm (im2col, col2im,
layout changes), as BLAS already has for the matrix products."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

MIN_ELEMENTS = 1 << 20  # below this, handing work to a thread costs more than it saves
WORKERS = max(1, min(4, os.cpu_count() or 1))
_pool: dict = {}


def workers() -> int:
    return WORKERS


def over_channels(job: Callable[[slice], None], channels: int, elements: int) -> None:
    """Run ``job(channel_slice)`` for disjoint channel ranges covering ``range(channels)``, in parallel
    when the work (``elements`` touched) is large enough."""
    parts = min(workers(), channels) if elements >= MIN_ELEMENTS else 1
    if parts <= 1:
        job(slice(0, channels))
        return
    if "executor" not in _pool:
        _pool["executor"] = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="convgrad")
    bounds = [channels * i // parts for i in range(parts + 1)]
    futures = [_pool["executor"].submit(job, slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
    for future in futures:
        future.result()
