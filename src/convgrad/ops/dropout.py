"""Inverted dropout: in training, zero each element with probability p and scale the rest by 1/(1 − p)."""

from __future__ import annotations

import numpy as np

from .._args import as_array, float_dtypes


def dropout(x, p=0.5, training=True, rng=None):
    """Return ``(y, mask)``: ``y = x · mask``, mask ``0`` or ``1/(1 − p)`` per element (None when inactive).

    Inactive (``y = x``, mask None) when not training or p = 0. ``rng``: a ``numpy.random.Generator``
    (the same generator state gives the same mask), by default convgrad's global one.

    >>> y, mask = dropout(np.ones(6), p=0.5, rng=np.random.default_rng(0))
    >>> sorted(set(y.tolist()))
    [0.0, 2.0]
    """
    x = as_array("dropout", "x", x)
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: expected a probability 0 <= p <= 1, got p={p!r}")
    dtype = float_dtypes(x)[1]
    if not training or p == 0:
        return x.astype(dtype, copy=False), None
    if rng is None:
        from .._random import generator

        rng = generator()
    keep = rng.random(x.shape) >= p
    mask = keep.astype(dtype) / dtype.type(1 - p) if p < 1 else np.zeros(x.shape, dtype)
    return x * mask, mask


def dropout_backward(dy, mask):
    """dy · mask: the gradient flows only through the kept elements, scaled as they were."""
    dy = as_array("dropout_backward", "dy", dy)
    return dy if mask is None else dy * mask
