"""Batch normalisation over the channel dim (dim 1), as ``torch.nn.functional.batch_norm``.

x ``(N, C)`` or ``(N, C, *spatial)``; statistics are taken per channel over the other dims
(m = N·prod(spatial) values each).

Training: ``x̂ = (x − mean) / sqrt(var + eps)`` with the batch mean and biased variance,
``y = γ x̂ + β``; the running statistics move towards the batch's, running_var towards the unbiased
variance ``var · m/(m−1)``. Evaluation: the running statistics replace the batch's.

Backward (training), per channel: ``dβ = Σ dy``, ``dγ = Σ dy·x̂``,
``dx = γ/(m·sqrt(var + eps)) · (m·dy − Σ dy − x̂ · Σ dy·x̂)``. In evaluation the statistics are
constants and ``dx = γ · dy / sqrt(running_var + eps)``.
"""

from __future__ import annotations

import numpy as np

from .._args import as_array, float_dtypes, shape_str


def _channel_shape(x: np.ndarray) -> tuple[int, ...]:
    """``(1, C, 1, ...)``: a per-channel vector broadcast against x."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _axes(x: np.ndarray) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.ndim))


def _check(fn, x, named):
    x = as_array(fn, "x", x)
    if x.ndim < 2:
        raise ValueError(f"{fn}: expected x of shape (N, C) or (N, C, *spatial), got x of shape {shape_str(x.shape)}")
    arrays = {}
    for name, value in named.items():
        if value is not None:
            value = as_array(fn, name, value)
            if value.shape != (x.shape[1],):
                raise ValueError(f"{fn}: expected {name} of shape ({x.shape[1]},), got {name} of shape {shape_str(value.shape)}")
        arrays[name] = value
    return x, arrays


def _statistics(x, running_mean, running_var, training, eps):
    """(mean, 1/sqrt(var + eps), biased var) per channel: the batch's in training, else the running ones."""
    if training:
        mean = x.mean(axis=_axes(x))
        var = x.var(axis=_axes(x))
    else:
        mean, var = running_mean.astype(x.dtype, copy=False), running_var.astype(x.dtype, copy=False)
    return mean, 1.0 / np.sqrt(var + eps), var


def batch_norm(x, weight=None, bias=None, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5):
    """Normalise x per channel; in training, update ``running_mean``/``running_var`` in place.

    x ``(N, C, *S)``, weight (γ) and bias (β) ``(C,)`` or None, running statistics ``(C,)`` or None
    (required when ``training`` is False) -> y like x. ``momentum`` weights the new batch statistics.

    >>> x = np.array([[1.0], [3.0]])
    >>> batch_norm(x, eps=0.0)
    array([[-1.],
           [ 1.]])
    """
    fn = "batch_norm"
    x, a = _check(fn, x, dict(weight=weight, bias=bias, running_mean=running_mean, running_var=running_var))
    if not training and (a["running_mean"] is None or a["running_var"] is None):
        raise ValueError(f"{fn}: expected running_mean and running_var when training=False")
    compute, result = float_dtypes(x, a["weight"], a["bias"])
    x = x.astype(compute, copy=False)
    if training and x.size // max(x.shape[1], 1) <= 1:
        raise ValueError(f"{fn}: expected more than 1 value per channel when training, got x of shape {shape_str(x.shape)}")
    mean, inv_std, var = _statistics(x, a["running_mean"], a["running_var"], training, eps)
    if training and running_mean is not None:
        m = x.size // x.shape[1]
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * (m / max(m - 1, 1))
    y = (x - mean.reshape(_channel_shape(x))) * inv_std.reshape(_channel_shape(x))
    if a["weight"] is not None:
        y *= a["weight"].astype(compute, copy=False).reshape(_channel_shape(x))
    if a["bias"] is not None:
        y += a["bias"].astype(compute, copy=False).reshape(_channel_shape(x))
    return y.astype(result, copy=False)


def batch_norm_backward(dy, x, weight=None, running_mean=None, running_var=None, training=True, eps=1e-5):
    """Gradients of :func:`batch_norm`: ``(dx like x, dweight (C,) or None, dbias (C,) or None)``.

    ``dweight`` and ``dbias`` are None when ``weight`` is None (no affine transform).
    """
    fn = "batch_norm_backward"
    x, a = _check(fn, x, dict(weight=weight, running_mean=running_mean, running_var=running_var))
    dy = as_array(fn, "dy", dy)
    if dy.shape != x.shape:
        raise ValueError(f"{fn}: expected dy of the shape of x {shape_str(x.shape)}, got dy of shape {shape_str(dy.shape)}")
    compute, result = float_dtypes(dy, x, a["weight"])
    x, dy = x.astype(compute, copy=False), dy.astype(compute, copy=False)
    mean, inv_std, _ = _statistics(x, a["running_mean"], a["running_var"], training, eps)
    shape, axes = _channel_shape(x), _axes(x)
    x_hat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
    gamma = np.ones(x.shape[1], compute) if a["weight"] is None else a["weight"].astype(compute, copy=False)
    sum_dy, sum_dy_xhat = dy.sum(axis=axes), (dy * x_hat).sum(axis=axes)
    if training:
        m = x.size // x.shape[1]
        dx = (gamma * inv_std / m).reshape(shape) * (m * dy - sum_dy.reshape(shape) - x_hat * sum_dy_xhat.reshape(shape))
    else:
        dx = dy * (gamma * inv_std).reshape(shape)
    affine = a["weight"] is not None
    return dx.astype(result, copy=False), *(v.astype(result, copy=False) if affine else None for v in (sum_dy_xhat, sum_dy))
