"""``algorithm="gemm"``: im2col + one matrix multiply per group (BLAS), col2im by strided ``+=``.

The im2col matrix of one image is ``(C_in * K, P)``, K = prod(kernel), P = prod(out_size): row
``(c, offset)`` holds, for every output position, the input element that kernel ``offset`` of channel c
meets there. It is built by a loop over the K kernel offsets, each one strided slice copy of the whole
batch (no fancy indexing, no per-pixel Python). The rows of one group are contiguous, so per group

    y_g = W_g (C_out/G, C_in/G*K) @ cols_g (C_in/G*K, P)
    dW_g = Σ_n dy_g (C_out/G, P) @ cols_gᵀ (P, C_in/G*K)
    dcols_g = W_gᵀ (C_in/G*K, C_out/G) @ dy_g (C_out/G, P), then col2im: dxp[offset slices] += dcols

Temporary buffers respect the workspace limit (:func:`convgrad.get_workspace_limit`): the batch is
processed in chunks, and an image too large on its own in bands of output rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._config import get_workspace_limit
from .._windows import kernel_offsets, offset_slices
from .base import Algorithm, add_bias, bias_grad


@dataclass(frozen=True)
class Tile:
    """A piece of the work: some images, a band of output rows (first spatial dim), the rows they read."""

    batch: slice
    rows: slice
    inputs: slice
    out_size: tuple[int, ...]

    @property
    def count(self) -> int:
        return self.batch.stop - self.batch.start

    @property
    def x_index(self) -> tuple[slice, slice, slice]:
        return (self.batch, slice(None), self.inputs)

    @property
    def y_index(self) -> tuple[slice, slice, slice]:
        return (self.batch, slice(None), self.rows)


def row_bytes(g) -> int:
    """Bytes of the im2col matrix for one image and one output row: ``C_in * K * prod(out[1:])``."""
    return g.in_channels * math.prod(g.kernel) * math.prod(g.out_size[1:]) * g.dtype.itemsize


def tiles(g, bytes_per_row: int) -> list[Tile]:
    """Split the work into tiles whose buffers (``bytes_per_row`` per image and output row) fit the limit."""
    limit, rows = get_workspace_limit(), g.out_size[0]
    per_image = max(1, bytes_per_row * rows)
    if per_image <= limit:
        step = limit // per_image
        return [
            Tile(slice(i, min(i + step, g.batch)), slice(0, rows), slice(None), g.out_size)
            for i in range(0, g.batch, step)
        ]
    band = max(1, limit // max(1, bytes_per_row))
    s, d, k = g.stride[0], g.dilation[0], g.kernel[0]
    return [
        Tile(slice(n, n + 1), slice(r, r1), slice(r * s, (r1 - 1) * s + d * (k - 1) + 1), (r1 - r,) + g.out_size[1:])
        for n in range(g.batch)
        for r, r1 in ((r, min(rows, r + band)) for r in range(0, rows, band))
    ]


def _workspace(plan: list[Tile], g, copies: int) -> np.ndarray:
    """One flat buffer for ``copies`` im2col-sized matrices of the largest tile, reused across tiles."""
    largest = max((t.batch.stop - t.batch.start) * math.prod(t.out_size) for t in plan)
    return np.empty(copies * largest * g.in_channels * math.prod(g.kernel), dtype=g.dtype)


def im2col(xp: np.ndarray, g, out_size, buffer: np.ndarray) -> np.ndarray:
    """xp ``(n, C_in, *P)`` -> cols ``(n, C_in, *k, *out_size)``, written into ``buffer``."""
    shape = xp.shape[:2] + g.kernel + tuple(out_size)
    cols = buffer[: math.prod(shape)].reshape(shape)
    for offset in kernel_offsets(g.kernel):
        cols[(slice(None), slice(None)) + offset] = xp[(..., *offset_slices(offset, g.stride, g.dilation, out_size))]
    return cols


def col2im(dcols: np.ndarray, dxp: np.ndarray, g, out_size) -> None:
    """Adjoint of :func:`im2col`: dcols ``(n, C_in, *k, *out_size)`` added into dxp ``(n, C_in, *P)``."""
    for offset in kernel_offsets(g.kernel):
        dxp[(..., *offset_slices(offset, g.stride, g.dilation, out_size))] += dcols[(slice(None), slice(None)) + offset]


def grouped_matrix(w: np.ndarray, g) -> np.ndarray:
    """Weight ``(C_out, C_in/G, *k)`` as one matrix per group: ``(G, C_out/G, C_in/G*K)``."""
    return w.reshape(g.groups, g.out_channels // g.groups, g.in_channels // g.groups * math.prod(g.kernel))


class Gemm(Algorithm):
    name = "gemm"

    def forward(self, xp, w, b, g):
        """xp ``(N, C_in, *P)``, w ``(C_out, C_in/G, *k)`` -> y ``(N, C_out, *O)``."""
        W = grouped_matrix(w, g)  # (G, C_out/G, C_in/G*K)
        y = np.empty(g.y_shape, dtype=g.dtype)
        plan = tiles(g, row_bytes(g))
        buffer = _workspace(plan, g, 1) if plan else None
        for t in plan:
            cols = im2col(xp[t.x_index], g, t.out_size, buffer)
            product = np.matmul(W, cols.reshape(t.count, g.groups, W.shape[2], math.prod(t.out_size)))  # (n, G, C_out/G, P_t)
            y[t.y_index] = product.reshape((t.count, g.out_channels) + t.out_size)
        return add_bias(y, b)

    def backward(self, dy, xp, w, g, need_dx=True, need_dw=True, need_db=True):
        """dy ``(N, C_out, *O)`` -> dxp ``(N, C_in, *P)``, dw like w, db ``(C_out,)``."""
        W = grouped_matrix(w, g)
        dxp = np.zeros(g.padded_shape, dtype=g.dtype) if need_dx else None
        dW = np.zeros(W.shape, dtype=g.dtype) if need_dw else None
        copies = int(need_dx) + int(need_dw)
        plan = tiles(g, row_bytes(g) * copies) if copies else []
        buffer = _workspace(plan, g, copies) if plan else None
        one = buffer.size // copies if plan else 0
        cols_buffer, dcols_buffer = (buffer[:one], buffer[one * (copies - 1) :]) if plan else (None, None)
        for t in plan:
            dY = dy[t.y_index].reshape(t.count, g.groups, W.shape[1], math.prod(t.out_size))  # (n, G, C_out/G, P_t)
            if need_dw:
                cols = im2col(xp[t.x_index], g, t.out_size, cols_buffer)
                cols = cols.reshape(dY.shape[:2] + (W.shape[2], dY.shape[3]))  # (n, G, C_in/G*K, P_t)
                for i in range(dY.shape[0]):
                    dW += np.matmul(dY[i], cols[i].swapaxes(-1, -2))
            if need_dx:
                shape = dY.shape[:2] + (W.shape[2], dY.shape[3])  # (n, G, C_in/G*K, P_t)
                dcols = np.matmul(W.swapaxes(-1, -2), dY, out=dcols_buffer[: math.prod(shape)].reshape(shape))
                col2im(dcols.reshape((dY.shape[0], g.in_channels) + g.kernel + t.out_size), dxp[t.x_index], g, t.out_size)
        return dxp, (dW.reshape(w.shape) if need_dw else None), (bias_grad(dy) if need_db else None)


ALGORITHM = Gemm()
