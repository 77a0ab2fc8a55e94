"""``algorithm="as_forward"``: the backward pass computed the way the notes derive it, as two forward convolutions.

The notes find that the backward pass "is just like another CNN forward":

- ``dW = x ⋆ dy``: correlate the input with the upstream gradient. With stride s the gradient is
  dilated by s (it met the input every s elements) and the kernel's own dilation d becomes the
  stride of this correlation.
- ``dx = pad(dy) ∗ rot180(W)``: correlate the zero-padded upstream gradient with the kernel rotated
  by 180° (and its in/out channels swapped). With stride s, dy is first dilated by s (zeros between
  its entries); with dilation d the rotated kernel keeps dilation d and the padding is d·(k − 1).
  Input rows that no window reached get zero gradient: the high-side padding is grown to cover them.

Both are run by the ``"gemm"`` forward, which is also this algorithm's forward.
"""

from __future__ import annotations

import numpy as np

from .._args import unpadded
from .._padding import pad
from .base import Algorithm, bias_grad, grouped
from .gemm import ALGORITHM as GEMM


def dilate(dy: np.ndarray, stride) -> np.ndarray:
    """Insert ``s - 1`` zeros between neighbouring entries of each spatial dim: ``(N, C, *O) -> (N, C, *((O-1)s+1))``."""
    shape = dy.shape[:2] + tuple((n - 1) * s + 1 for n, s in zip(dy.shape[2:], stride))
    out = np.zeros(shape, dtype=dy.dtype)
    out[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)] = dy
    return out


def input_grad(dy: np.ndarray, w: np.ndarray, g) -> np.ndarray:
    """dxp ``(N, C_in, *P)`` = pad(dilate(dy)) ∗ rot180(W), one forward convolution with groups G."""
    dyd = dilate(dy, g.stride)
    full = [d * (k - 1) for k, d in zip(g.kernel, g.dilation)]  # 'full' correlation padding
    pads = tuple((f, p - n) for f, p, n in zip(full, g.padded_size, dyd.shape[2:]))  # output length = P
    dyp = pad(dyd, pads)  # (N, C_out, *(P + d(k-1)))
    flip = (slice(None), slice(None)) + (slice(None, None, -1),) * g.nd
    rotated = grouped(w, g.groups).swapaxes(1, 2)  # (G, C_in/G, C_out/G, *k)
    rotated = rotated.reshape((g.in_channels, g.out_channels // g.groups) + g.kernel)[flip]
    inner = unpadded(dyp.shape, rotated.shape, (1,) * g.nd, g.dilation, g.groups, g.dtype)
    return GEMM.forward(dyp, rotated, None, inner)


def weight_grad(dy: np.ndarray, xp: np.ndarray, g) -> np.ndarray:
    """dw ``(C_out, C_in/G, *k)`` = x ⋆ dy: one forward convolution with dy as the filter.

    The in-group input channels play the batch, the images play the channels:
    input ``(C_in/G, G*N, *P)``, filter ``(C_out, N, *O)``, groups G, stride d, dilation s.
    """
    n, cig = g.batch, g.in_channels // g.groups
    images = xp.reshape((n, g.groups, cig) + g.padded_size)
    images = images.transpose((2, 1, 0) + tuple(range(3, images.ndim))).reshape((cig, g.groups * n) + g.padded_size)
    filters = dy.swapaxes(0, 1)  # (C_out, N, *O)
    inner = unpadded(images.shape, filters.shape, g.dilation, g.stride, g.groups, g.dtype, out_size=g.kernel)
    return np.ascontiguousarray(GEMM.forward(images, filters, None, inner).swapaxes(0, 1))


class AsForward(Algorithm):
    name = "as_forward"

    def forward(self, xp, w, b, g):
        return GEMM.forward(xp, w, b, g)

    def backward(self, dy, xp, w, g, need_dx=True, need_dw=True, need_db=True):
        return (
            input_grad(dy, w, g) if need_dx else None,
            weight_grad(dy, xp, g) if need_dw else None,
            bias_grad(dy) if need_db else None,
        )


ALGORITHM = AsForward()
