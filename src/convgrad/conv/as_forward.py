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

from .._args import plain_geometry
from .base import Algorithm, bias_grad, padded
from .gemm import ALGORITHM as GEMM
from .gemm import input_grad_as_correlation


def input_grad(dy: np.ndarray, w: np.ndarray, g) -> np.ndarray:
    """dx ``(N, C_in, *L)``: pad(dilate(dy)) ∗ rot180(W), one forward convolution (see the gemm module)."""
    return input_grad_as_correlation(dy, w, g)


def weight_grad(dy: np.ndarray, x: np.ndarray, g) -> np.ndarray:
    """dw ``(C_out, C_in/G, *k)`` = x ⋆ dy: one forward convolution with dy as the filter.

    The in-group input channels play the batch, the images play the channels:
    input ``(C_in/G, G·N, *P)``, filter ``(C_out, N, *O)``, groups G, stride d, dilation s.
    """
    n, cig = g.batch, g.in_channels // g.groups
    images = padded(x, g).reshape((n, g.groups, cig) + g.padded_size)
    images = images.transpose((2, 1, 0) + tuple(range(3, images.ndim))).reshape((cig, g.groups * n) + g.padded_size)
    filters = np.ascontiguousarray(dy.swapaxes(0, 1))  # (C_out, N, *O)
    inner = plain_geometry(images.shape, filters.shape, g.dilation, g.stride, g.groups, g.dtype, out_size=g.kernel)
    return np.ascontiguousarray(GEMM.forward(images, filters, None, inner).swapaxes(0, 1))


class AsForward(Algorithm):
    name = "as_forward"

    def forward(self, x, w, b, g):
        return GEMM.forward(x, w, b, g)

    def backward(self, dy, x, w, g, need_dx=True, need_dw=True, need_db=True):
        return (
            input_grad(dy, w, g) if need_dx else None,
            weight_grad(dy, x, g) if need_dw else None,
            bias_grad(dy) if need_db else None,
        )


ALGORITHM = AsForward()
