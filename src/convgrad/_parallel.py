"""Work split across cores. NumPy releases the GIL while it copies or adds large arrays, and BLAS while
it multiplies, so threads give real parallelism: for the memory-bound parts of an algorithm (im2col,
col2im, layout changes: :func:`over_channels`), and for whole parts of a call, each on its own core
with its BLAS products on that core alone (:func:`side_by_side`).

Jobs run at once are each held on a core of their own while they run (:func:`cores_for`): left to
itself, Linux often wakes the pool's thread on the core of the thread that woke it, and the two then
share that core for a millisecond or more while the other idles (measured on 2 cores: two
single-threaded products side by side 1.73-1.78 ms, one alone 0.83; held on a core each, 0.92-0.99)."""

from __future__ import annotations

import contextvars
import ctypes
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
    (the first job's error first). Each job is held on a core of its own while it runs (:func:`cores_for`)."""
    where = cores_for(len(jobs))
    if where is not None:
        jobs = [functools.partial(_held_on, job, core) for job, core in zip(jobs, where)]
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


def cores_for(count: int) -> list[int] | None:
    """The core each of ``count`` jobs run at once is held on: the calling thread's own first (its
    cache holds what it just did), then the others this process may use; None where that cannot be
    arranged (one job, fewer usable cores than jobs, or a platform without affinity calls)."""
    if count < 2 or not hasattr(os, "sched_setaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < count:
        return None
    own = _current_core()
    first = own if own in usable else usable[0]
    return [first] + [core for core in usable if core != first][: count - 1]


def _current_core() -> int:
    """The core this thread runs on (glibc's ``sched_getcpu``), or -1 where unknown."""
    function = _sched_getcpu()
    return function() if function is not None else -1


@functools.lru_cache(maxsize=1)
def _sched_getcpu():
    """The C library's ``sched_getcpu`` (glibc, musl), or None where there is none."""
    try:
        function = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError, TypeError):  # no C library by that name, or no such function
        return None
    function.restype, function.argtypes = ctypes.c_int, []
    return function


def _held_on(job: Callable[[], object], core: int):
    """``job()`` with the calling thread held on ``core``, its own affinity restored after (unheld where
    the system refuses)."""
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {core})
    except OSError:
        return job()
    try:
        return job()
    finally:
        os.sched_setaffinity(0, mask)
