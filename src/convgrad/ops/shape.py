"""Flatten: a reshape whose gradient is the inverse reshape."""

from __future__ import annotations

import math

import numpy as np

from .._args import as_array, is_int


def _dims(fn: str, ndim: int, start_dim, end_dim) -> tuple[int, int]:
    for name, dim in (("start_dim", start_dim), ("end_dim", end_dim)):
        if not is_int(dim):
            raise TypeError(f"{fn}: expected an integer {name}, got {dim!r}")
        if not -ndim <= dim < ndim:
            raise ValueError(f"{fn}: expected {name} in [-{ndim}, {ndim}) for x with {ndim} dims, got {name}={dim}")
    start, end = start_dim % ndim, end_dim % ndim
    if start > end:
        raise ValueError(f"{fn}: expected start_dim before end_dim, got start_dim={start_dim}, end_dim={end_dim}")
    return start, end


def flatten(x, start_dim=1, end_dim=-1):
    """Merge dims ``start_dim..end_dim`` into one, as ``torch.flatten``: ``(N, C, H, W) -> (N, C·H·W)``.

    >>> flatten(np.zeros((2, 3, 4, 5))).shape
    (2, 60)
    """
    x = as_array("flatten", "x", x)
    start, end = _dims("flatten", x.ndim, start_dim, end_dim)
    return x.reshape(x.shape[:start] + (math.prod(x.shape[start : end + 1]),) + x.shape[end + 1 :])


def flatten_backward(dy, x_shape):
    """The gradient of :func:`flatten`: dy reshaped back to the input's shape ``x_shape``."""
    return np.asarray(dy).reshape(tuple(x_shape))
