"""Numerical gradients by central differences, and the relative error used to compare gradients.

>>> import numpy as np, convgrad as cg
>>> from convgrad.gradcheck import numerical_gradient, rel_error
>>> rng = np.random.default_rng(0)
>>> x, w, dy = rng.normal(size=(1, 1, 6)), rng.normal(size=(1, 1, 3)), rng.normal(size=(1, 1, 4))
>>> numeric = numerical_gradient(lambda x: cg.conv(x, w), x, dy)
>>> analytic = cg.conv_backward(dy, x, w)[0]
>>> rel_error(analytic, numeric) < 1e-8
True
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._args import shape_str


def numerical_gradient(f: Callable[[np.ndarray], np.ndarray], x, dy, h: float = 1e-5) -> np.ndarray:
    """∂/∂x of ``L(x) = Σ f(x) · dy`` by central differences, in float64.

    ``x`` may have any shape; ``dy`` has the shape of ``f(x)``. Each element of x is moved by ±h in
    turn: ``(L(x + h·e_i) - L(x - h·e_i)) / 2h``. Returns an array shaped like x. ``f`` must not keep
    a reference to its argument, which is modified in place between calls.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    dy = np.asarray(dy, dtype=np.float64)
    if not h > 0:
        raise ValueError(f"numerical_gradient: expected a step h > 0, got h={h!r}")
    grad = np.zeros_like(x)
    flat = x.reshape(-1)  # a view of the copy: moving flat[i] moves x
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + h
        plus = _loss(f, x, dy)
        flat[i] = original - h
        minus = _loss(f, x, dy)
        flat[i] = original
        grad.flat[i] = (plus - minus) / (2 * h)
    return grad


def _loss(f, x: np.ndarray, dy: np.ndarray) -> float:
    y = np.asarray(f(x), dtype=np.float64)
    if y.shape != dy.shape:
        raise ValueError(f"numerical_gradient: expected dy of the shape of f(x) {shape_str(y.shape)}, got dy of shape {shape_str(dy.shape)}")
    return float(np.sum(y * dy))


def rel_error(a, b) -> float:
    """``max|a − b| / max(1e-8, max(|a| + |b|))``: the largest difference, relative to the largest magnitude.

    Zero for equal arrays; the 1e-8 floor keeps gradients that are both near zero from dividing by
    zero. Shapes must match.

    >>> rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9])) < 1e-9
    True
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: expected a and b of the same shape, got {shape_str(a.shape)} and {shape_str(b.shape)}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))
