"""The "gemm" algorithm keeps its temporary buffers within the workspace limit (peak traced memory).

NumPy reports its allocations to tracemalloc, so the peak traced while a call runs is every byte it
allocated: its outputs plus its temporaries.
"""

import math
import tracemalloc

import numpy as np
import pytest

import convgrad as cg
from convgrad.gradcheck import rel_error

MiB = 2**20


def _peak(call):
    """(result, peak bytes allocated while ``call`` ran)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = call()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _nbytes(result):
    return sum(a.nbytes for a in (result if isinstance(result, tuple) else (result,)) if a is not None)


@pytest.mark.parametrize("algorithm", ["gemm", "as_forward"])
@pytest.mark.parametrize("shape, kernel", [((64, 16, 32, 32), (16, 16, 3, 3)),   # many images: batch chunks
                                           ((1, 32, 96, 96), (8, 32, 3, 3))])    # one big image: row bands
def test_peak_memory_respects_the_workspace_limit(shape, kernel, algorithm):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=shape), rng.normal(size=kernel)
    unchunked = shape[0] * shape[1] * math.prod(kernel[2:]) * (shape[2] - 2) * (shape[3] - 2) * 8
    limit = 4 * MiB
    assert unchunked > 4 * limit  # the im2col matrix of the whole batch would not fit
    reference_y = cg.conv(x, w, algorithm="naive" if shape[0] == 1 else "gemm")
    dy = rng.normal(size=reference_y.shape)
    reference = cg.conv_backward(dy, x, w)
    with cg.workspace_limit(limit):
        y, peak_forward = _peak(lambda: cg.conv(x, w, algorithm=algorithm))
        grads, peak_backward = _peak(lambda: cg.conv_backward(dy, x, w, algorithm=algorithm))
    # outputs, one workspace per buffer kind (im2col, its gradient), and a little for bookkeeping;
    # "as_forward" also rearranges x and dy for its inner convolutions (input-sized copies)
    copies = 0 if algorithm == "gemm" else 2 * x.nbytes + 2 * dy.nbytes
    assert peak_forward < y.nbytes + limit + MiB
    assert peak_backward < _nbytes(grads) + 2 * limit + copies + MiB
    assert rel_error(y, reference_y) < 1e-12
    assert all(rel_error(a, b) < 1e-12 for a, b in zip(grads, reference))


def test_without_a_tight_limit_the_same_call_uses_more():
    """The measurement can see the difference: with the default limit the buffers are larger."""
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(64, 16, 32, 32)), rng.normal(size=(16, 16, 3, 3))
    _, loose = _peak(lambda: cg.conv(x, w, algorithm="gemm"))
    with cg.workspace_limit(4 * MiB):
        _, tight = _peak(lambda: cg.conv(x, w, algorithm="gemm"))
    assert loose > tight + 30 * MiB


def test_workspace_limit_is_restored():
    before = cg.get_workspace_limit()
    with pytest.raises(RuntimeError):
        with cg.workspace_limit(MiB):
            raise RuntimeError
    assert cg.get_workspace_limit() == before
