"""``algorithm="depthwise"``: groups = C_in (each input channel has its own m = C_out/C_in filters).

A depthwise convolution has too little work per group for a matrix product, so it is computed as
k·k shifted multiply-adds on whole slices of the batch, split across cores by channel and processed a
few images at a time so that the slices stay in cache. With multiplier m, output channel ``c·m + j``
belongs to input channel c:

    y[:, c, j]      = Σ_κ w[c·m + j, 0, κ] · x_pad[:, c, window κ]
    dx_pad[:, c, window κ] += Σ_j w[c·m + j, 0, κ] · dy[:, c, j]
    dw[c·m + j, 0, κ] = Σ_{n, o} dy[n, c, j, o] · x_pad[n, c, window κ][o]
"""

from __future__ import annotations

import math

import numpy as np

from .._parallel import over_channels
from .._windows import kernel_offsets, offset_slices
from .base import Algorithm, bias_grad, padded, unpadded

CACHE_BYTES = 1 << 20  # per thread: the images of one chunk, over its channels, stay in L2


def _image_chunks(g, channels: int):
    per_image = channels * (math.prod(g.padded_size) + 2 * math.prod(g.out_size)) * g.dtype.itemsize
    step = max(1, CACHE_BYTES // max(1, per_image))
    return [slice(i, min(i + step, g.batch)) for i in range(0, g.batch, step)]


class Depthwise(Algorithm):
    name = "depthwise"

    def supports(self, g):
        if g.groups != g.in_channels or g.groups == 1:
            return f"it needs groups = C_in > 1, got groups={g.groups} with C_in={g.in_channels}"
        if g.dtype == object:
            return "it works on numbers only"
        return None

    def _views(self, g):
        return [(offset, offset_slices(offset, g.stride, g.dilation, g.out_size)) for offset in kernel_offsets(g.kernel)]

    def forward(self, x, w, b, g):
        """x ``(N, C, *L)``, w ``(C·m, 1, *k)`` -> y ``(N, C·m, *O)``."""
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

    def backward(self, dy, x, w, g, need_dx=True, need_dw=True, need_db=True):
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
        return dx, (dW.reshape(w.shape) if need_dw else None), (bias_grad(dy) if need_db else None)


ALGORITHM = Depthwise()
