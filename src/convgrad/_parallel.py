"""Work split across cores. NumPy releases the GIL while it copies or adds large arrays, and BLAS while
it multiplies, so threads give real parallelism: for the memory-bound parts of an algorithm (im2col,
col2im, layout changes: :func:`over_channels`), and for whole parts of a call, each on its own core
with its BLAS products on that core alone (:func:`side_by_side`)."""

from __future__ import annotations

import contextvars
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from ._blas import one_thread
from ._config import workspace_share

MIN_ELEMENTS = 1 << 20  # below this, handing work to a thread costs more than it saves
WORKERS = max(1, min(4, os.cpu_count() or 1))
_pool: dict = {}
_part = threading.local()  # set on a thread while it runs one of side_by_side's jobs


def workers() -> int:
    return WORKERS


def over_channels(job: Callable[[slice], None], channels: int, elements: int) -> None:
    """Run ``job(channel_slice)`` for disjoint channel ranges covering ``range(channels)``, in parallel
    when the work (``elements`` touched) is large enough."""
    parts = min(workers(), channels) if elements >= MIN_ELEMENTS and not in_part() else 1
    if parts <= 1:
        job(slice(0, channels))
        return
    bounds = [channels * i // parts for i in range(parts + 1)]
    _at_once([functools.partial(job, slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])])


def _executor() -> ThreadPoolExecutor:
    if "executor" not in _pool:
        _pool["executor"] = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="convgrad")
    return _pool["executor"]


def in_part() -> bool:
    """Whether this thread runs one of :func:`side_by_side`'s jobs (its work then stays on this core)."""
    return getattr(_part, "active", False)


def side_by_side(jobs: list[Callable[[], object]]) -> list:
    """Each job on its own core at once (the first on the calling thread, the others on the pool), with
    BLAS's products on the thread that calls them, :func:`over_channels` unsplit and its share of the
    workspace limit (``_config.workspace_share``); their results in order. Every job has finished when
    this returns or raises (the first job's error first)."""
    with one_thread():
        return _at_once([functools.partial(_as_part, job, len(jobs)) for job in jobs])


def _at_once(jobs: list[Callable[[], object]]) -> list:
    """The jobs at once, the first on the calling thread (which would otherwise wait, and whose cache
    holds what it just did), the others on the pool, each in a copy of the caller's context (NumPy's
    error handling and buffer size: ``_ufuncs``); their results in order, once every job has finished
    (the first job's error first)."""
    futures = [_executor().submit(contextvars.copy_context().run, job) for job in jobs[1:]]
    try:
        first = jobs[0]()
    finally:
        rest = [future.exception() for future in futures]  # waits for each
    errors = [error for error in rest if error is not None]
    if errors:
        raise errors[0]
    return [first] + [future.result() for future in futures]


def _as_part(job: Callable[[], object], count: int):
    _part.active = True
    try:
        with workspace_share(count):
            return job()
    finally:
        _part.active = False
