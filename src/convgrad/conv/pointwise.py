"""``algorithm="pointwise"``: a 1×1 convolution (stride 1, no padding, one group) is a matrix product.

With x viewed as ``(N, C_in, P)`` (no copy): ``y[n] = W (C_out, C_in) @ x[n]``, ``dx[n] = Wᵀ @ dy[n]``,
``dW = Σ_n dy[n] @ x[n]ᵀ`` (batched products over chunks of images, summed: :func:`_weight_grad_t`).
A large batch runs in parts at once, one per core, with OpenBLAS's kernels that have no small-matrix
path (:func:`batch_parts`).
"""

from __future__ import annotations

import math

import numpy as np

from . import cores
from .base import Algorithm, bias_grad
from .gemm import CHUNK_BYTES, _target, avx512_kernels

PART_IMAGES = 8  # a batch is split when each part has this many images
PART_MACS = 20 * 10**6  # and this many multiply-adds in its forward


class Pointwise(Algorithm):
    name = "pointwise"

    def supports(self, g):
        if any(k != 1 for k in g.kernel):
            return f"it needs a 1x1 kernel, got kernel {g.kernel}"
        if any(s != 1 for s in g.stride) or any(lo or hi for lo, hi in g.pads):
            return "it needs stride 1 and no padding"
        if g.out_size != g.in_size:  # a transposed convolution's output_padding: input rows no window reads
            return f"it needs an output as large as the input, got {g.in_size} -> {g.out_size}"
        if g.groups != 1:
            return "it needs groups=1"
        if g.dtype == object:
            return "it works on numbers only"
        return None

    def parts(self, g):
        """The batch in parts, one per core (:func:`batch_parts`), or None where it runs whole."""
        return batch_parts(g)

    def forward(self, x, w, b, g):
        """x ``(N, C_in, *L)``, w ``(C_out, C_in, 1, ...)`` -> y ``(N, C_out, *L)``; a large batch in parts
        at once, one per core (:func:`batch_parts`)."""
        return cores.forward(_forward, x, w, b, g, self.parts(g), None)

    def backward(self, dy, x, w, g, need_dx=True, need_dw=True, need_db=True):
        """dy ``(N, C_out, *L)`` -> (dx like x, dw like w, db ``(C_out,)``), each None where not asked for;
        in parts of the batch as the forward."""
        return cores.backward(_backward, dy, x, w, g, self.parts(g), need_dx, need_dw, need_db, None)


def batch_parts(g) -> tuple | None:
    """``((images, geometry), ...)``: the batch cut into one part per BLAS thread, each part's products on
    its own core (:mod:`convgrad.conv.cores`), where each part has ``PART_IMAGES`` images and
    ``PART_MACS`` multiply-adds, and OpenBLAS runs kernels without a small-matrix path; else None.

    One image's products are small, and OpenBLAS hands each to its worker thread; in parts, each core
    runs its own images' products with no hand-over. Measured with OpenBLAS's Haswell kernels, forward
    + backward in parts against whole (one process, alternating blocks, the median of the blockwise
    ratios, 12-20 blocks): pw-1x1 0.92-0.97x, (64, 64, 16, 16) -> 64 0.86-0.87x, (32, 32, 28, 28) -> 64
    0.77-0.90x, (32, 64, 32, 32) -> 128 0.86-0.88x, (16, 256, 14, 14) -> 256 0.94-0.98x, (16, 512, 7,
    7) -> 512 0.95-0.96x; below the thresholds a split costs more: (64, 128, 8, 8) -> 64 (17 million
    multiply-adds a part) 0.99-1.03x, (16, 128, 8, 8) -> 128 (8 million) 1.22x. With the AVX-512
    kernels (the session before, parts' threads not yet held on their cores) pw-1x1 took 1.35x: not
    split there until measured again."""
    if avx512_kernels():
        return None
    pieces = cores.parts(g, least_copies=0, least_macs=PART_MACS)
    if pieces is None or any(part.batch < PART_IMAGES for _, part in pieces):
        return None
    return pieces


def _forward(x, w, b, g, saved=None, out=None):
    """:meth:`Pointwise.forward` whole (on one core in a part), into ``out`` when given (y's shape)."""
    P = math.prod(g.in_size)
    y = _target(out, g.y_shape, g.dtype, contiguous=True)
    y3 = y.reshape(g.batch, g.out_channels, P)
    np.matmul(w.reshape(g.out_channels, g.in_channels), x.reshape(g.batch, g.in_channels, P), out=y3)
    if b is not None:
        y3 += b.reshape(1, -1, 1)
    return y


def _backward(dy, x, w, g, need_dx=True, need_dw=True, need_db=True, saved=None, out=None):
    """:meth:`Pointwise.backward` whole (on one core in a part), dx into ``out`` when given (x's shape)."""
    P = math.prod(g.in_size)
    dy3 = dy.reshape(g.batch, g.out_channels, P)
    dx = None
    if need_dx:
        dx = _target(out, g.x_shape, g.dtype, contiguous=True)
        np.matmul(w.reshape(g.out_channels, g.in_channels).T, dy3, out=dx.reshape(g.batch, g.in_channels, P))
    dw = None
    if need_dw:
        dw = np.ascontiguousarray(_weight_grad_t(x.reshape(g.batch, g.in_channels, P), dy3).T).reshape(w.shape)
    return dx, dw, (bias_grad(dy) if need_db else None)


def _weight_grad_t(x3: np.ndarray, dy3: np.ndarray) -> np.ndarray:
    """dWᵀ ``(C_in, C_out) = Σ_n x[n] (C_in, P) @ dy[n]ᵀ (P, C_out)``.

    Where one image's dW is no larger than its x and dy (C_in·C_out ≤ (C_in + C_out)·P): one batched
    product per chunk of images (each chunk's products at most ``CHUNK_BYTES``), summed, reading x and
    dy where they lie. Otherwise one product over channel-major copies of both, whose long reduction
    suits BLAS better. Measured, forward + backward against the copies everywhere: pw-1x1 0.94x, (32,
    64, 32, 32) -> 128 channels 0.82x, (64, 32, 28, 28) -> 32 0.81x; (8, 512, 7, 7) -> 512 1.12x (copies)."""
    (_, C_in, P), C_out = x3.shape, dy3.shape[1]
    if C_in * C_out > (C_in + C_out) * P:
        cols = np.ascontiguousarray(x3.swapaxes(0, 1)).reshape(C_in, -1)
        return cols @ np.ascontiguousarray(dy3.swapaxes(0, 1)).reshape(C_out, -1).T
    step = max(1, CHUNK_BYTES // max(1, C_in * C_out * x3.itemsize))
    total = np.zeros((C_in, C_out), dtype=x3.dtype)
    for n in range(0, x3.shape[0], step):
        total += np.matmul(x3[n: n + step], dy3[n: n + step].swapaxes(1, 2)).sum(axis=0)
    return total


ALGORITHM = Pointwise()
