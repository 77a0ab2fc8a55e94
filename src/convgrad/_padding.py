"""Padding of the spatial dims and its exact adjoint (the gradient of padding).

Every padded element is a copy of one input element (reflect, replicate, circular) or a constant
(zeros). The adjoint therefore sends each padded element's gradient back to the element it copies,
so a reflected or wrapped element receives the gradient of every copy of it.
"""

from __future__ import annotations

import numpy as np

from ._args import Pairs


def source_index(length: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """For each of the ``lo + length + hi`` padded positions, the input index it copies.

    ``mode`` is 'reflect' (mirror without repeating the edge), 'replicate' (repeat the edge) or
    'circular' (wrap around). Shape ``(lo + length + hi,)``.
    """
    i = np.arange(-lo, length + hi)
    if mode == "reflect":
        i = np.abs(i)
        return np.where(i >= length, 2 * (length - 1) - i, i)
    if mode == "replicate":
        return np.clip(i, 0, length - 1)
    if mode == "circular":
        return i % length
    raise ValueError(f"padding_mode: expected 'reflect', 'replicate' or 'circular', got {mode!r}")


def _along(axis: int, index) -> tuple:
    return (slice(None),) * axis + (index,)


def pad(x: np.ndarray, pads: Pairs, mode: str = "zeros", value=0) -> np.ndarray:
    """Pad the spatial dims of x ``(N, C, *L)`` to ``(N, C, *(lo + L + hi))``.

    ``mode='zeros'`` fills with ``value`` (0, or -inf for max pooling). Returns x itself when every
    pad is zero.
    """
    if all(lo == 0 and hi == 0 for lo, hi in pads):
        return x
    if mode == "zeros":
        shape = x.shape[:2] + tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], pads))
        xp = np.full(shape, value, dtype=x.dtype)
        xp[(slice(None), slice(None)) + _centre(pads, x.shape[2:])] = x
        return xp
    for axis, (lo, hi) in enumerate(pads, start=2):
        x = np.take(x, source_index(x.shape[axis], lo, hi, mode), axis=axis)
    return x


def _centre(pads: Pairs, in_size) -> tuple[slice, ...]:
    return tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, in_size))


def pad_backward(dxp: np.ndarray, pads: Pairs, mode: str, in_size) -> np.ndarray:
    """The adjoint of :func:`pad`: gradient ``(N, C, *L)`` from the padded gradient ``(N, C, *(lo+L+hi))``."""
    if all(lo == 0 and hi == 0 for lo, hi in pads):
        return dxp
    if mode == "zeros":
        return np.ascontiguousarray(dxp[(slice(None), slice(None)) + _centre(pads, in_size)])
    for axis, ((lo, hi), n) in enumerate(zip(pads, in_size), start=2):
        dxp = _fold_axis(dxp, axis, lo, n, source_index(n, lo, hi, mode))
    return dxp


def _fold_axis(dxp: np.ndarray, axis: int, lo: int, length: int, source: np.ndarray) -> np.ndarray:
    """Sum the gradient of each padded position along ``axis`` into the input position it copies."""
    dx = dxp[_along(axis, slice(lo, lo + length))].copy()
    outside = [p for p in range(dxp.shape[axis]) if not lo <= p < lo + length]
    for p in outside:
        dx[_along(axis, source[p])] += dxp[_along(axis, p)]
    return dx
