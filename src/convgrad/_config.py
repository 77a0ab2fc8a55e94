"""Library-wide settings: the one place where the workspace limit lives.

The workspace limit bounds the temporary buffers an algorithm may allocate for one call (the im2col
matrix of the ``"gemm"`` algorithm, for instance). Large batches are processed in chunks that fit it.
The default is 256 MiB; the environment variable ``CONVGRAD_WORKSPACE_MB`` sets it at import time, and
:func:`set_workspace_limit` or the :func:`workspace_limit` context manager change it at run time.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

DEFAULT_WORKSPACE_BYTES = 256 * 2**20

_settings = {"workspace_bytes": DEFAULT_WORKSPACE_BYTES}
_share = threading.local()  # parts: this thread runs one of that many parts of a call at once


def _check_limit(nbytes: object) -> int:
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 1:
        raise ValueError(f"workspace limit: expected a positive integer number of bytes, got {nbytes!r}")
    return nbytes


def get_workspace_limit() -> int:
    """The largest temporary buffer, in bytes, that one algorithm call may allocate.

    >>> import convgrad as cg
    >>> cg.get_workspace_limit() > 0  # 256 MiB by default, unless CONVGRAD_WORKSPACE_MB says otherwise
    True

    A call whose batch is split across the cores runs its parts at once, each on its share: inside a
    part (:func:`workspace_share`) this is the limit divided by the number of parts.
    """
    return _settings["workspace_bytes"] // sharing()


def sharing() -> int:
    """How many parts of one call run at once with this thread's (1 outside :func:`workspace_share`)."""
    return getattr(_share, "parts", 1)


@contextlib.contextmanager
def workspace_share(parts: int) -> Iterator[None]:
    """This thread's algorithm calls get 1/``parts`` of the workspace limit inside the block: it runs
    one of ``parts`` parts of a call that run at once."""
    previous = sharing()
    _share.parts = parts
    try:
        yield
    finally:
        _share.parts = previous


def set_workspace_limit(nbytes: int) -> None:
    """Set the workspace limit in bytes (a positive integer).

    >>> import convgrad as cg
    >>> previous = cg.get_workspace_limit()
    >>> cg.set_workspace_limit(64 * 2**20)
    >>> cg.get_workspace_limit()
    67108864
    >>> cg.set_workspace_limit(previous)
    """
    _settings["workspace_bytes"] = _check_limit(nbytes)


@contextlib.contextmanager
def workspace_limit(nbytes: int) -> Iterator[None]:
    """Temporarily set the workspace limit, restoring the previous value on exit.

    >>> import numpy as np, convgrad as cg
    >>> with cg.workspace_limit(2**20):  # 1 MiB: the batch below is processed a few images at a time
    ...     cg.conv(np.ones((32, 8, 16, 16)), np.ones((4, 8, 3, 3))).shape
    (32, 4, 14, 14)
    """
    previous = _settings["workspace_bytes"]
    set_workspace_limit(nbytes)
    try:
        yield
    finally:
        _settings["workspace_bytes"] = previous


def _from_environment() -> None:
    value = os.environ.get("CONVGRAD_WORKSPACE_MB")
    if value is None:
        return
    try:
        megabytes = int(value)
    except ValueError:
        raise ValueError(f"CONVGRAD_WORKSPACE_MB: expected an integer number of MiB, got {value!r}") from None
    set_workspace_limit(megabytes * 2**20)


_from_environment()
