"""How NumPy's element-wise passes run inside an algorithm: the one place for NumPy's ufunc buffer size.

A ufunc over strided views whose contiguous rows are shorter than the buffer size (8192 elements by
default; in NumPy 2.4 about half of it, in 2.2 all of it) copies them through its buffers, to give
its loop longer runs. For the memory-bound passes of a convolution that triples the traffic.
Measured (NumPy 2.4, float32, ``a += b`` over 49,152 elements, ``a`` a strided view of rows of n
contiguous elements, µs; NumPy 2.2 took 14.6–20.9 µs for rows of 256–6144 elements, 5.8 from 8192):

    n               64     128    256    512    1024   2048   contiguous
    buffer 8192     24.3   15.2   14.6   15.9   17.4   14.9   4-5
    buffer 1024     15.8   13.6   13.8   11.2    8.2    5.6

col2im's adds for lenet-c2 (rows of 8 positions × 64 images) took 0.30 ms with the default and
0.15 ms with 1024 elements. Max pooling's stride-2 views gained nothing (within 3%), nor did the
sums (``einsum`` keeps its own buffer size).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

UFUNC_BUFFER = 1024  # elements: rows of 512 or more run unbuffered; shorter ones still gain from buffering


@contextlib.contextmanager
def row_buffers() -> Iterator[None]:
    """NumPy's ufunc buffer size set to ``UFUNC_BUFFER`` inside the block (this thread's context, as NumPy
    keeps it; worker threads get it through ``_parallel``), the caller's restored after."""
    previous = np.setbufsize(UFUNC_BUFFER)
    try:
        yield
    finally:
        np.setbufsize(previous)
