"""``algorithm="depthwise"``: groups = C_in (each input channel has its own m = C_out/C_in filters).

A depthwise convolution has too little work per group for a matrix product, so it is computed as
k·k shifted multiply-adds, split across cores by channel. With multiplier m, output channel
``c·m + j`` belongs to input channel c:

    y[:, c, j]      = Σ_κ w[c·m + j, 0, κ] · x_pad[:, c, window κ]
    dx_pad[:, c, window κ] += Σ_j w[c·m + j, 0, κ] · dy[:, c, j]
    dw[c·m + j, 0, κ] = Σ_{n, o} dy[n, c, j, o] · x_pad[n, c, window κ][o]

Stride 1 uses gemm's flat layout, channel by channel: the padded images of channel c lie end to end
in one row, and window κ of every output position of the whole batch is one contiguous run of it,
starting at ``Σ κᵢ·dᵢ·Sᵢ``. Each term above is then one multiply-add of contiguous runs with a scalar
weight, and dw the dot products of dy's run with every offset's (one ``np.vecdot`` over a strided view
of the runs, channel by channel), over a grid that includes positions past the end of each output
row and between images: those are dropped from y, and dy is zero there. Other strides take
strided windows of a few images at a time, so that the slices stay in cache.

A training module's forward keeps x in the flat layout for its backward's dW, which then copies x no
second time (up to gemm's ``KEEP_BYTES``): a training Conv2d's forward + backward took 0.92x as long
for (32, 64, 32, 32), (64, 128, 14, 14) and (64, 32, 28, 28), 0.95x for (16, 256, 8, 8).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from .._args import interned
from .._parallel import MIN_ELEMENTS, in_part, over_channels, workers
from .._windows import kernel_offsets, offset_slices
from .._workspace import scratch
from . import cores
from .base import Algorithm, bias_grad, grid_made_nan, padded, take_kept, unpadded
from .gemm import (SLOT_COLS, SLOT_GRAD_OUTPUT, SLOT_OUTPUT, Flat, _flat_strides, input_grad_as_correlation,
                   keep_limit, shared_grad_output)

CACHE_BYTES = 1 << 20  # per thread: the images of one chunk, over its channels, stay in L2
RUN = 1 << 18  # elements per multiply-add in the flat form: few, long calls (each costs microseconds; measured best)


def _image_chunks(g, channels: int):
    per_image = channels * (math.prod(g.padded_size) + 2 * math.prod(g.out_size)) * g.dtype.itemsize
    step = max(1, CACHE_BYTES // max(1, per_image))
    return [slice(i, min(i + step, g.batch)) for i in range(0, g.batch, step)]


class Depthwise(Algorithm):
    name = "depthwise"
    saves = True

    def supports(self, g):
        if g.groups != g.in_channels or g.groups == 1:
            return f"it needs groups = C_in > 1, got groups={g.groups} with C_in={g.in_channels}"
        if g.dtype == object:
            return "it works on numbers only"
        return None

    def parts(self, g):
        """The channels' parts (:func:`channel_parts`)."""
        return channel_parts(g)

    def _views(self, g):
        return [(offset, offset_slices(offset, g.stride, g.dilation, g.out_size)) for offset in kernel_offsets(g.kernel)]

    def forward(self, x, w, b, g, saved=None):
        """x ``(N, C, *L)``, w ``(C·m, 1, *k)`` -> y ``(N, C·m, *O)``. With a ``saved`` dict (a training
        module's), x's flat arrangement is kept there for the backward's dW (:func:`_keeps`). A large
        call runs in parts of its channels at once, one per core (:func:`channel_parts`)."""
        return cores.forward(self._forward, x, w, b, g, self.parts(g), saved, where=_channels)

    def _forward(self, x, w, b, g, saved=None, out=None):
        """:meth:`forward` on one core (its copies split across cores unless in a part), into ``out``
        (a view of y) where it can."""
        if _flat(g):
            rows = None
            if _keeps(saved, g):
                rows = _layout(g).arranged(x, g, None)
                saved["arranged"] = (g, rows)
            return _flat_forward(x, w, b, g, rows, out)
        m, views = g.out_channels // g.in_channels, self._views(g)
        xp = padded(x, g)
        y = np.empty((g.batch, g.in_channels, m) + g.out_size, dtype=g.dtype)
        W = w.reshape((g.in_channels, m) + g.kernel)
        bias = None if b is None else b.reshape((g.in_channels, m) + (1,) * g.nd)
        expand = (slice(None), slice(None), None)  # (n, c) -> (n, c, m)

        def job(c: slice) -> None:
            for images in _image_chunks(g, c.stop - c.start):
                out = y[images, c]
                out[...] = 0 if bias is None else bias[c]
                for offset, window in views:
                    out += xp[(images, c) + window][expand] * W[(c, slice(None)) + offset][(slice(None),) * 2 + (None,) * g.nd]

        over_channels(job, g.in_channels, y.size)
        return y.reshape(g.y_shape)

    def backward(self, dy, x, w, g, need_dx=True, need_dw=True, need_db=True, saved=None):
        """dy ``(N, C·m, *O)`` -> (dx like x, dw like w, db ``(C·m,)``), each None where not asked for; in
        parts of the channels as the forward (:func:`channel_parts`)."""
        return cores.backward(self._backward, dy, x, w, g, self.parts(g), need_dx, need_dw, need_db, saved,
                              where=_channels)

    def _backward(self, dy, x, w, g, need_dx=True, need_dw=True, need_db=True, saved=None, out=None):
        """:meth:`backward` on one core (its copies split across cores unless in a part), dx into
        ``out`` where it can."""
        db = bias_grad(dy) if need_db else None
        rows = take_kept(saved, "arranged", (g,))  # x in the flat layout, from the forward
        if not _flat(g):
            return self._strided_backward(dy, x, w, g, need_dx, need_dw) + (db,)
        one = g.out_channels == g.in_channels  # dx is then a depthwise correlation too
        shared = shared_grad_output(dy, g, _layout(g), g.out_channels, _layout) if need_dx and one and need_dw else None
        dx = input_grad_as_correlation(dy, w, g, _flat_forward, shared and shared[1], out) if need_dx and one else None
        scattered, dw = _flat_backward(dy, x, w, g, need_dx and not one, need_dw, shared and shared[0], rows)
        if grid_made_nan(dw, x):  # then dW again without the grid
            dw = self._strided_backward(dy, x, w, g, False, True)[1]
        return (dx if one else scattered), dw, db

    def _strided_backward(self, dy, x, w, g, need_dx: bool, need_dw: bool) -> tuple:
        """(dx, dw) by strided windows of a few images at a time (any stride, nothing dropped)."""
        m, views = g.out_channels // g.in_channels, self._views(g)
        dY = dy.reshape((g.batch, g.in_channels, m) + g.out_size)
        W = w.reshape((g.in_channels, m) + g.kernel)
        xp = padded(x, g) if need_dw else None
        dxp = np.zeros((g.batch, g.in_channels) + g.padded_size, dtype=g.dtype) if need_dx else None
        dW = np.zeros(W.shape, dtype=g.dtype) if need_dw else None
        space = (None,) * g.nd
        letters = "xyz"[: g.nd]
        reduce_spec = f"ncj{letters},nc{letters}->cj"  # Σ over images and output positions

        def job(c: slice) -> None:
            for images in _image_chunks(g, c.stop - c.start):
                grad = dY[images, c]  # (n, c, m, *O)
                for offset, window in views:
                    if need_dx:
                        w_k = W[(c, slice(None)) + offset][(None, slice(None), slice(None)) + space]
                        dxp[(images, c) + window] += (grad * w_k).sum(axis=2) if m > 1 else grad[:, :, 0] * w_k[:, :, 0]
                    if need_dw:
                        source = xp[(images, c) + window]
                        dW[(c, slice(None)) + offset] += np.einsum(reduce_spec, grad, source)

        over_channels(job, g.in_channels, dY.size)
        dx = unpadded(dxp, g) if need_dx else None
        return dx, (dW.reshape(w.shape) if need_dw else None)


def channel_parts(g) -> tuple | None:
    """``(((input channels, output channels), geometry), ...)``: the channels cut into one part per
    worker thread, each part a depthwise convolution of its own, where the work is large enough to
    split (``MIN_ELEMENTS``) and this is not a part already; else None.

    Each part then runs its whole forward or backward on one core: arranging its channels, their
    multiply-adds and the copy back stay in that core's cache, with one hand-over to the other core
    per call instead of one per step (dw-3x3, forward + backward: 0.92-0.99x)."""
    count = min(workers(), g.in_channels)
    if count < 2 or in_part() or g.out_channels * g.batch * math.prod(g.out_size) * math.prod(g.kernel) < MIN_ELEMENTS:
        return None
    return _channel_pieces(g, count)


def _channels(piece: tuple) -> tuple:
    """(x's, y's and the weights' index) of a part of :func:`channel_parts`: its channels."""
    (inputs, outputs), _ = piece
    return (slice(None), inputs), (slice(None), outputs), (outputs,)


@functools.lru_cache(maxsize=256)
def _channel_pieces(g, count: int) -> tuple:
    m, bounds = g.out_channels // g.in_channels, [g.in_channels * i // count for i in range(count + 1)]
    return tuple(((slice(a, b), slice(a * m, b * m)),
                  interned(dataclasses.replace(g, in_channels=b - a, out_channels=(b - a) * m, groups=b - a)))
                 for a, b in zip(bounds, bounds[1:]))


def _keeps(saved: dict | None, g) -> bool:
    """Whether a training module's forward keeps x's flat arrangement for dW (within gemm's
    ``KEEP_BYTES`` and the workspace limit): the backward then copies x no second time."""
    return saved is not None and math.prod(_layout(g).rows_shape(g)) * g.dtype.itemsize <= keep_limit()


def _flat(g) -> bool:
    return all(s == 1 for s in g.stride) and g.batch * math.prod(g.out_size) > 0


def _blocks(c: slice, grid: int, dtype):
    """(channel block, grid piece, scratch of the block's shape) covering channels ``c`` × the grid, about
    ``RUN`` elements each.

    Each multiply-add then spans several channels (a weight column broadcast along the grid): long
    calls, which two threads can run at once (short ones serialise on the GIL)."""
    piece = min(grid, RUN)
    step = max(1, RUN // piece)
    part = scratch(RUN, dtype, SLOT_COLS)
    for first in range(c.start, c.stop, step):
        channels = slice(first, min(c.stop, first + step))
        for a in range(0, grid, piece):
            length = min(grid, a + piece) - a
            yield channels, slice(a, a + length), part[: (channels.stop - first) * length].reshape(-1, length)


def _layout(g) -> Flat:
    """Depthwise's flat layout: gemm's, with its copies split across cores."""
    return Flat(innermost=False, nd=g.nd, threads=True)


def _plan(w, g, layout: Flat) -> tuple:
    """(weights ``(C, m, K)``, where each kernel offset's run starts, grid length of one channel)."""
    K, grid = math.prod(g.kernel), layout.grid(g)
    return w.reshape(g.in_channels, g.out_channels // g.in_channels, K), grid.starts, grid.span(g, g.batch)


def _taps(rows: np.ndarray, channels: slice, piece: slice, g, layout: Flat) -> np.ndarray:
    """Every kernel offset's run of ``rows`` over the grid ``piece``, as one read-only view
    ``(channels, *k, piece length)``: offset κ's run starts ``Σ κᵢ·dᵢ·Sᵢ`` past offset 0's (see flat_grid)."""
    grid = layout.grid(g)
    first = rows[channels, piece.start + grid.starts[0]:]
    steps = tuple(d * s * rows.itemsize for d, s in zip(g.dilation, _flat_strides(grid.period)))
    shape = (first.shape[0],) + g.kernel + (piece.stop - piece.start,)
    return np.lib.stride_tricks.as_strided(first, shape, first.strides[:1] + steps + first.strides[1:], writeable=False)


def _multiply_add(acc: np.ndarray, source: np.ndarray, weight: np.ndarray, term: np.ndarray | None) -> None:
    """``acc = source · weight`` (term None) or ``acc += source · weight``; weight ``(channels, 1)``."""
    if term is None:
        np.multiply(source, weight, out=acc)
    else:
        np.multiply(source, weight, out=term)
        acc += term


def _flat_forward(x, w, b, g, arranged: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Stride 1: y ``(N, C·m, *O)`` (+ b) by multiply-adds of contiguous runs of each channel's row
    (x ``arranged`` in the flat layout already, when given), into ``out`` when given."""
    layout, m = _layout(g), g.out_channels // g.in_channels
    rows = layout.arranged(x, g) if arranged is None else arranged  # (C, N·P + margin)
    yc = scratch(g.out_channels * g.batch * layout.grid(g).size, g.dtype, SLOT_OUTPUT).reshape(g.in_channels, m, -1)
    (weights, starts, grid), bias = _plan(w, g, layout), None if b is None else b.reshape(g.in_channels, m, 1)

    def job(c: slice) -> None:
        for channels, piece, term in _blocks(c, grid, g.dtype):
            for j in range(m):
                acc = yc[channels, j, piece]
                for k, start in enumerate(starts):
                    source = rows[channels, piece.start + start: piece.stop + start]
                    _multiply_add(acc, source, weights[channels, j, k, None], term if k else None)
                if bias is not None:
                    acc += bias[channels, j]  # while the block is in cache

    over_channels(job, g.in_channels, g.out_channels * grid * len(starts))
    return layout.output(yc.reshape(g.out_channels, g.batch, -1), g, out)


def _flat_backward(dy, x, w, g, need_dx: bool, need_dw: bool, grads: np.ndarray | None = None,
                   rows: np.ndarray | None = None):
    """Stride 1: (dx, dw) by multiply-adds and dot products of contiguous runs of each channel's row
    (with one filter per channel, dx is better computed as a correlation: see ``Depthwise.backward``).
    ``grads``: dy already on the flat grid ``(C·m, N·P)``; ``rows``: x in the flat layout; each when given."""
    if not (need_dx or need_dw):
        return None, None
    layout, m = _layout(g), g.out_channels // g.in_channels
    if grads is None:
        grads = scratch(g.out_channels * g.batch * layout.grid(g).size, g.dtype, SLOT_GRAD_OUTPUT)
        grads = grads.reshape(g.out_channels, -1)
        layout.place(dy, grads, grads, g)
    if need_dw and rows is None:
        rows = layout.arranged(x, g)
    dxc = layout.input_grad_buffer(g) if need_dx else None
    weights, starts, grid = _plan(w, g, layout)
    dW = np.zeros(weights.shape, dtype=g.dtype) if need_dw else None
    grads3 = grads.reshape(g.in_channels, m, -1)

    def job(c: slice) -> None:
        for channels, piece, term in _blocks(c, grid, g.dtype):
            taps = _taps(rows, channels, piece, g, layout) if need_dw else None
            for j in range(m):
                grad = grads3[channels, j, piece]
                if need_dw:  # every offset's dot product, channel by channel, in one call: grad and the rows stay
                    # in cache (dw-3x3's dW 4.4-4.7 -> 3.8-3.9 ms against one einsum per offset over the block);
                    # a NaN the grid makes (0·inf) is expected, and handled by the caller (grid_made_nan)
                    with np.errstate(invalid="ignore"):
                        dW[channels, j] += np.vecdot(grad.reshape(grad.shape[:1] + (1,) * g.nd + grad.shape[1:]),
                                                     taps).reshape(grad.shape[0], -1)
                for k, start in enumerate(starts if need_dx else ()):
                    shifted = slice(piece.start + start, piece.stop + start)
                    _multiply_add(dxc[channels, shifted], grad, weights[channels, j, k, None], term)

    over_channels(job, g.in_channels, g.out_channels * grid * len(starts))
    dx = layout.input_gradient(dxc, g) if need_dx else None
    return dx, (dW.reshape(w.shape) if need_dw else None)


ALGORITHM = Depthwise()
