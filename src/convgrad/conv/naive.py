"""``algorithm="naive"``: the course notes' loops, literally, generalised to N-d, groups, stride, dilation.

Forward (notes, part 1): pad x, then for each image n and each output position, take the input
segment ``X_seg`` under the window and compute ``np.sum(W * X_seg) + b``.

Backward (notes, part 2): at each output position the upstream gradient ``dy`` flows to

- the bias: ``db += dy``;
- the weights: ``dW += dy * X_seg`` (each weight met that input element);
- the input: ``dX_seg += dy * W`` (each input element met that weight).

This is the readable reference, not a fast path. It also runs on object arrays of SymPy symbols,
which is how ``convgrad explain`` derives the notes' equations.
"""

from __future__ import annotations

import numpy as np

from .._windows import window_slices
from .base import Algorithm, grouped, padded, unpadded


class Naive(Algorithm):
    name = "naive"

    def forward(self, x, w, b, g):
        """x ``(N, C_in, *L)``, w ``(C_out, C_in/G, *k)``, b ``(C_out,)`` or None -> y ``(N, C_out, *O)``."""
        xp = padded(x, g)  # (N, C_in, *P)
        W = grouped(w, g.groups)  # (G, C_out/G, C_in/G, *k)
        bias = 0 if b is None else b.reshape(W.shape[:2])
        sum_axes = tuple(range(2, W.ndim))  # over C_in/G and the kernel
        y = np.zeros(g.y_shape, dtype=g.dtype)
        for n in range(g.batch):
            for pos in np.ndindex(*g.out_size):
                X_seg = xp[n][(slice(None),) + window_slices(pos, g.stride, g.dilation, g.kernel)]
                X_seg = X_seg.reshape((g.groups, 1) + W.shape[2:])  # (G, 1, C_in/G, *k)
                y[(n, slice(None)) + pos] = (np.sum(W * X_seg, axis=sum_axes) + bias).reshape(-1)
        return y

    def backward(self, dy, x, w, g, need_dx=True, need_dw=True, need_db=True):
        """dy ``(N, C_out, *O)`` -> dx like x, dw like w, db ``(C_out,)``."""
        xp = padded(x, g) if need_dw else None
        W = grouped(w, g.groups)
        dxp = np.zeros(g.padded_shape, dtype=g.dtype)
        dW = np.zeros(W.shape, dtype=g.dtype)
        db = np.zeros(W.shape[:2], dtype=g.dtype)
        for n in range(g.batch):
            for pos in np.ndindex(*g.out_size):
                window = (n, slice(None)) + window_slices(pos, g.stride, g.dilation, g.kernel)
                dY = dy[(n, slice(None)) + pos].reshape(W.shape[:2] + (1,) * (W.ndim - 2))  # (G, C_out/G, 1...)
                db += dY.reshape(W.shape[:2])
                if need_dw:
                    dW += dY * xp[window].reshape((g.groups, 1) + W.shape[2:])
                if need_dx:
                    dxp[window] += np.sum(dY * W, axis=1).reshape((g.in_channels,) + g.kernel)
        return (
            unpadded(dxp, g) if need_dx else None,
            dW.reshape(w.shape) if need_dw else None,
            db.reshape(-1) if need_db else None,
        )


ALGORITHM = Naive()
