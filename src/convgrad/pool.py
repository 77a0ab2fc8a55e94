"""Max and average pooling over 1, 2 or 3 spatial dims, with their gradients, as PyTorch defines them.

Both are built like the ``"gemm"`` convolution: a loop over the kernel offsets, each one strided
slice of the whole batch, and for the gradient the same slices with ``+=``.
"""

from __future__ import annotations

import math

import numpy as np

from ._args import PoolGeometry, as_array, check_bool, grad_output, pool_geometry
from ._padding import pad, pad_backward
from ._windows import kernel_offsets, offset_slices


def _slices(pg: PoolGeometry):
    """``(k, spatial slices)`` for each kernel offset k, in scan order."""
    for k, offset in enumerate(kernel_offsets(pg.kernel)):
        yield k, (..., *offset_slices(offset, pg.stride, pg.dilation, pg.out_size))


def _max_index(x: np.ndarray, pg: PoolGeometry) -> tuple[np.ndarray, np.ndarray]:
    """(index in the window ``(N, C, *O)``, maximum ``(N, C, *O)``) of each window, as PyTorch picks it.

    The first maximum in scan order wins a tie; a NaN beats every number and a later NaN beats an
    earlier one (PyTorch's ``val > max || isnan(val)``); padding (-inf) is never chosen while the window
    holds an input element. Only element-wise work on whole slices (copied window-first where the
    windows tile x: :func:`_window_first`): the maximum by ``np.maximum`` over the K offsets; the index
    of the first maximum as the number of leading offsets that miss it, ``Σ_k [offsets 0..k all
    miss]`` (a running AND of ``view ≠ maximum``, added up in bytes).
    """
    padded = any(lo or hi for lo, hi in pg.pads)
    if not padded and _tiles_exactly(pg):
        windows, views = None, list(_window_first(x, pg))
    else:
        xp = pad(x, pg.pads, value=-np.inf)
        windows = [window for _, window in _slices(pg)]
        views = [xp[window] for window in windows]
    maximum = views[0].copy()
    for view in views[1:]:
        np.maximum(maximum, view, out=maximum)
    outside = ~pad(np.ones((1, 1) + pg.in_size, dtype=bool), pg.pads, value=False) if padded else None
    index = np.zeros(maximum.shape, dtype=np.uint8 if len(views) <= 256 else np.intp)
    missed = np.empty(maximum.shape, dtype=bool)
    for k, view in enumerate(views[:-1]):  # a window's last offset is its winner when all others miss
        miss = np.not_equal(view, maximum, out=missed if k == 0 else None)
        if padded:
            miss |= outside[windows[k]]
        if k:
            np.logical_and(missed, miss, out=missed)
        np.add(index, missed, out=index, casting="unsafe")
    nan = np.isnan(maximum)
    if nan.any():
        for k, view in enumerate(views):  # ascending: the last NaN of a window is written last
            np.copyto(index, k, where=np.isnan(view))
    return index, maximum


def _window_first(x: np.ndarray, pg: PoolGeometry) -> np.ndarray:
    """x ``(N, C, *L)`` whose windows tile it exactly -> ``(K, N, C, *O)``: each window's k-th element
    (scan order), in one copy, so that the passes over them run on contiguous arrays. Measured, µs, for
    the whole of :func:`_max_index`: (64, 6, 24, 24) 256 -> 183, (64, 16, 8, 8) 130 -> 95,
    (100, 32, 20) 54 -> 42 (over strided views, NumPy buffers every pass)."""
    nd = len(pg.kernel)
    order = tuple(3 + 2 * i for i in range(nd)) + (0, 1) + tuple(2 + 2 * i for i in range(nd))
    first = np.ascontiguousarray(x.reshape(_by_window(x.shape, pg)).transpose(order))
    return first.reshape((-1,) + x.shape[:2] + pg.out_size)


def _by_window(shape: tuple, pg: PoolGeometry) -> tuple:
    """An array ``(N, C, *L)`` whose windows tile it exactly, viewed as ``(N, C, O₁, k₁, O₂, k₂, ...)``."""
    return shape[:2] + sum(((o, k) for o, k in zip(pg.out_size, pg.kernel)), ())


def max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling, as ``torch.nn.functional.max_pool{1,2,3}d``.

    x ``(N, C, *L)`` with as many spatial dims as ``kernel_size`` has entries (an int kernel means
    ``x.ndim - 2`` dims) -> y ``(N, C, *O)``. ``stride`` defaults to ``kernel_size``; ``padding``
    (implicit -inf, at most half the kernel) and ``dilation`` are an int or one per dim;
    ``ceil_mode`` rounds the output size up (the last window must start inside the input or the left
    padding). A NaN in a window makes its maximum NaN.

    >>> import numpy as np, convgrad as cg
    >>> x = np.array([[[1.0, 5.0, 2.0, 4.0, 3.0]]])
    >>> cg.max_pool(x, 2)
    array([[[5., 4.]]])
    >>> cg.max_pool(x, 2, ceil_mode=True)
    array([[[5., 4., 3.]]])
    >>> cg.max_pool(np.ones((2, 3, 9, 8)), (3, 2), stride=2, padding=1, dilation=(2, 1)).shape
    (2, 3, 4, 5)
    """
    return max_pool_with_index(x, kernel_size, stride, padding, dilation, ceil_mode)[0]


def max_pool_with_index(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """:func:`max_pool` and what its gradient needs: ``(y, index, geometry)``, index ``(N, C, *O)``
    the winning position in each window (scan order). ``convgrad.nn.MaxPool*d`` keeps it for backward."""
    pg, x = pool_geometry("max_pool", x, kernel_size, stride, padding, dilation, ceil_mode)
    index, maximum = _max_index(x, pg)
    return maximum.astype(pg.result_dtype, copy=False), index, pg


def _tiles_exactly(pg: PoolGeometry) -> bool:
    """Windows that do not overlap and cover the padded input exactly (stride = kernel, as in LeNet)."""
    return (pg.stride == pg.kernel and all(d == 1 for d in pg.dilation)
            and all(o * k == p for o, k, p in zip(pg.out_size, pg.kernel, pg.padded_size)))


def _route_non_overlapping(dy: np.ndarray, index: np.ndarray, pg: PoolGeometry) -> np.ndarray:
    """The padded input's gradient when windows tile it, written once per window position (no +=).

    Viewed as ``(N, C, O₁, k₁, O₂, k₂, ...)``, window position κ = (κ₁, κ₂, ...) is the plane
    ``[..., :, κ₁, :, κ₂, ...]``; it gets ``dy`` where κ (in scan order) won its window, else 0. Each
    plane is one assignment whose inner loop runs along an output row.
    """
    dxp = np.empty(_by_window(dy.shape, pg), dtype=pg.dtype)
    for k, offset in enumerate(kernel_offsets(pg.kernel)):
        plane = (slice(None), slice(None)) + sum(((slice(None), o) for o in offset), ())
        np.multiply(dy, index == k, out=dxp[plane])
    return dxp.reshape(dy.shape[:2] + pg.padded_size)


def max_pool_backward(dy, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Gradient of :func:`max_pool`: each window's dy goes to the element its maximum came from.

    dy ``(N, C, *O)``, x ``(N, C, *L)`` -> dx ``(N, C, *L)``. Ties go to the first maximum in scan
    order (row-major within the window), NaN wins and the last NaN of a window takes it, as in
    PyTorch; overlapping windows add their gradients.

    >>> import numpy as np, convgrad as cg
    >>> x = np.array([[[1.0, 5.0, 5.0, 4.0, 3.0]]])
    >>> cg.max_pool_backward(np.array([[[10.0, 20.0]]]), x, 3, stride=2)
    array([[[ 0., 10., 20.,  0.,  0.]]])
    """
    fn = "max_pool_backward"
    dy = as_array(fn, "dy", dy)
    pg, x = pool_geometry(fn, x, kernel_size, stride, padding, dilation, ceil_mode, dtype_of=(dy,))
    dy = grad_output(fn, dy, x.shape[:2] + pg.out_size, pg.dtype)
    return route_max_grad(dy, _max_index(x, pg)[0], pg)


def route_max_grad(dy: np.ndarray, index: np.ndarray, pg: PoolGeometry) -> np.ndarray:
    """dx ``(N, C, *L)``: each window's dy ``(N, C, *O)`` sent to its winning position ``index``."""
    dy = dy.astype(pg.dtype, copy=False)
    if _tiles_exactly(pg):
        dxp = _route_non_overlapping(dy, index, pg)
    else:
        dxp = np.zeros(dy.shape[:2] + pg.padded_size, dtype=pg.dtype)
        for k, window in _slices(pg):
            dxp[window] += dy * (index == k)
    return pad_backward(dxp, pg.pads, "zeros", pg.in_size).astype(pg.result_dtype, copy=False)


def _divisor(pg: PoolGeometry, count_include_pad: bool) -> np.ndarray:
    """The number each window's sum is divided by, shape ``(*O)``, as PyTorch counts it.

    Per dim, window o covers ``[o*s - p, o*s - p + k)`` clipped to ``L + p`` (ceil_mode's overhang
    beyond the padding is never counted); without ``count_include_pad`` it is clipped to ``[0, L)``.
    """
    counts = []
    for n, p, k, s, o in zip(pg.in_size, pg.padding, pg.kernel, pg.stride, pg.out_size):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, n)
        counts.append(end - start)
    return math.prod(np.ix_(*counts)).astype(pg.dtype)


def avg_pool(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling, as ``torch.nn.functional.avg_pool{1,2,3}d``.

    x ``(N, C, *L)`` -> y ``(N, C, *O)``. Zero padding of at most half the kernel; with
    ``count_include_pad`` the padding counts in each window's divisor, without it only the input
    elements do. ``ceil_mode`` as in :func:`max_pool`.

    >>> import numpy as np, convgrad as cg
    >>> x = np.array([[[0.0, 1.0, 2.0, 3.0, 4.0]]])
    >>> cg.avg_pool(x, 3, stride=2, padding=1)
    array([[[0.33333333, 2.        , 2.33333333]]])
    >>> cg.avg_pool(x, 3, stride=2, padding=1, count_include_pad=False)
    array([[[0.5, 2. , 3.5]]])
    """
    fn = "avg_pool"
    pg, x = pool_geometry(fn, x, kernel_size, stride, padding, 1, ceil_mode)
    divisor = _divisor(pg, check_bool(fn, "count_include_pad", count_include_pad))
    xp = pad(x, pg.pads)
    total = np.zeros(x.shape[:2] + pg.out_size, dtype=pg.dtype)
    for _, window in _slices(pg):
        total += xp[window]
    return (total / divisor).astype(pg.result_dtype, copy=False)


def avg_pool_backward(dy, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Gradient of :func:`avg_pool`: each window's dy, divided by its divisor, goes to every element.

    dy ``(N, C, *O)``, x ``(N, C, *L)`` -> dx ``(N, C, *L)``.

    >>> import numpy as np, convgrad as cg
    >>> cg.avg_pool_backward(np.array([[[3.0, 6.0]]]), np.zeros((1, 1, 4)), 2)
    array([[[1.5, 1.5, 3. , 3. ]]])
    """
    fn = "avg_pool_backward"
    dy = as_array(fn, "dy", dy)
    pg, x = pool_geometry(fn, x, kernel_size, stride, padding, 1, ceil_mode, dtype_of=(dy,))
    divisor = _divisor(pg, check_bool(fn, "count_include_pad", count_include_pad))
    dy = grad_output(fn, dy, x.shape[:2] + pg.out_size, pg.dtype)
    share = dy / divisor
    dxp = np.zeros(x.shape[:2] + pg.padded_size, dtype=pg.dtype)
    for _, window in _slices(pg):
        dxp[window] += share
    return pad_backward(dxp, pg.pads, "zeros", pg.in_size).astype(pg.result_dtype, copy=False)
