"""Fully connected layer: ``y = x Wᵀ + b``."""

from __future__ import annotations

from .._args import as_array, float_dtypes, shape_str


def _check(fn: str, x, weight, bias):
    x, weight = as_array(fn, "x", x), as_array(fn, "weight", weight)
    bias = None if bias is None else as_array(fn, "bias", bias)
    if weight.ndim != 2:
        raise ValueError(f"{fn}: expected weight of shape (out_features, in_features), got weight of shape {shape_str(weight.shape)}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{fn}: expected x with last dim in_features={weight.shape[1]} (weight {shape_str(weight.shape)}), "
            f"got x of shape {shape_str(x.shape)}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"{fn}: expected bias of shape ({weight.shape[0]},), got bias of shape {shape_str(bias.shape)}")
    return x, weight, bias


def linear(x, weight, bias=None):
    """x ``(*, in)``, weight ``(out, in)``, bias ``(out,)`` or None -> y ``(*, out)``.

    >>> import numpy as np
    >>> linear(np.array([[1.0, 2.0]]), np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]]), np.array([0.5, 0.0, 0.0]))
    array([[ 1.5,  3. , -2. ]])
    """
    x, weight, bias = _check("linear", x, weight, bias)
    compute, result = float_dtypes(x, weight, bias)
    y = x.astype(compute, copy=False) @ weight.astype(compute, copy=False).T
    if bias is not None:
        y += bias.astype(compute, copy=False)
    return y.astype(result, copy=False)


def linear_backward(dy, x, weight, bias=True):
    """dy ``(*, out)`` -> ``(dx (*, in), dweight (out, in), dbias (out,) or None)``.

    dx = dy W, dW = Σ dyᵀ x over every leading index, db = Σ dy.
    """
    fn = "linear_backward"
    x, weight, _ = _check(fn, x, weight, None)
    dy = as_array(fn, "dy", dy)
    if dy.shape != x.shape[:-1] + (weight.shape[0],):
        raise ValueError(f"{fn}: expected dy of shape {shape_str(x.shape[:-1] + (weight.shape[0],))}, got dy of shape {shape_str(dy.shape)}")
    compute, result = float_dtypes(dy, x, weight)
    dy2 = dy.astype(compute, copy=False).reshape(-1, weight.shape[0])  # (M, out)
    x2 = x.astype(compute, copy=False).reshape(-1, weight.shape[1])  # (M, in)
    dx = (dy2 @ weight.astype(compute, copy=False)).reshape(x.shape)
    dweight = dy2.T @ x2
    dbias = dy2.sum(axis=0) if bias is not False and bias is not None else None
    return tuple(None if a is None else a.astype(result, copy=False) for a in (dx, dweight, dbias))
