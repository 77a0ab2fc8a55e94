"""What every convolution algorithm provides, and the pieces all of them share.

An algorithm receives the unpadded input x ``(N, C_in, *L)`` and the validated geometry ``g`` (which
holds the padding and padding mode), and provides

- ``forward(x, w, b, g) -> y``: y ``(N, C_out, *g.out_size)``;
- ``backward(dy, x, w, g, need_dx, need_dw, need_db) -> (dx, dw, db)``: dx like x, dw like w, db
  ``(C_out,)``; a part not asked for is None (and ``x`` may then be None too);
- ``supports(g) -> str | None``: None, or the reason it cannot handle geometry ``g``.

An algorithm with ``saves = True`` also takes ``saved=`` (a dict a training module keeps from its
forward to its backward) in both calls, to reuse work of the forward in the backward.

Padding and its adjoint (the gradient of padding) come from ``convgrad._padding`` whichever
algorithm runs, so every padding mode means the same thing everywhere.
"""

from __future__ import annotations

import math

import numpy as np

from .._args import ConvGeometry
from .._padding import pad, pad_backward
from .._ufuncs import row_buffers


class Algorithm:
    """Base class: a named convolution algorithm that supports every geometry unless it says otherwise."""

    name = "base"
    saves = False  # whether forward and backward take ``saved=`` (see the module docstring)

    def supports(self, g: ConvGeometry) -> str | None:
        return None

    def forward(self, x, w, b, g: ConvGeometry) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy, x, w, g: ConvGeometry, need_dx=True, need_dw=True, need_db=True):
        raise NotImplementedError

    def parts(self, g: ConvGeometry) -> tuple | None:
        """The parts this algorithm runs ``g`` in at once, one per core, or None where it runs whole."""
        return None

    def __repr__(self) -> str:
        return f"<convgrad algorithm {self.name!r}>"


def take_kept(saved: dict | None, key: str, identity: tuple):
    """What a training module's forward kept under ``key`` as ``identity + (value,)`` (taken out of
    ``saved``): the value when its identity (the geometry, and what else it depends on) matches, else None."""
    kept = saved.pop(key, None) if saved else None
    return kept[-1] if kept is not None and kept[:-1] == identity else None


def run_forward(algorithm: Algorithm, x, w, b, g: ConvGeometry, saved: dict | None) -> np.ndarray:
    """``algorithm.forward``, handing it ``saved`` when it takes one (with NumPy's :func:`row_buffers`)."""
    with row_buffers():
        if saved is not None and algorithm.saves:
            return algorithm.forward(x, w, b, g, saved=saved)
        return algorithm.forward(x, w, b, g)


def run_backward(algorithm: Algorithm, dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db, saved: dict | None):
    """``algorithm.backward``, handing it ``saved`` when it takes one (with NumPy's :func:`row_buffers`)."""
    with row_buffers():
        if saved is not None and algorithm.saves:
            return algorithm.backward(dy, x, w, g, need_dx, need_dw, need_db, saved=saved)
        return algorithm.backward(dy, x, w, g, need_dx, need_dw, need_db)


def padded(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """x ``(N, C, *L)`` padded as ``g`` says: ``(N, C, *P)``."""
    return pad(x, g.pads, g.padding_mode)


def unpadded(dxp: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """The gradient of the padded input ``(N, C, *P)`` mapped back to x ``(N, C, *L)``."""
    return pad_backward(dxp, g.pads, g.padding_mode, g.in_size)


def add_bias(y: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``y (N, C, *S) + b (C,)`` broadcast over the batch and the spatial dims, in place."""
    if b is not None:
        y += b.reshape((1, -1) + (1,) * (y.ndim - 2))
    return y


def bias_grad(dy: np.ndarray) -> np.ndarray:
    """``db = Σ dy`` over the batch and every output position: ``(N, C, *S) -> (C,)``.

    Numbers: one ``einsum`` over ``(N, C, S)``, twice as fast here as NumPy's reduction over axes
    (0, 2, ...), and without BLAS (whose threads keep spinning after a call, taking a core from the
    element-wise work that follows; a matrix-vector product would be faster alone).
    """
    if dy.dtype == object:
        return dy.sum(axis=(0,) + tuple(range(2, dy.ndim)))
    return np.einsum("ncs->c", dy.reshape(dy.shape[0], dy.shape[1], math.prod(dy.shape[2:])))


def grid_made_nan(dw: np.ndarray | None, x: np.ndarray) -> bool:
    """Whether dw, computed over a flat grid, may hold a NaN that the grid made: a dropped grid position
    (dy 0 there) reads a real input, and 0·inf is NaN. Without a NaN in dw (checked first: dw is small)
    no such product happened; with one, it is the grid's only if x holds a non-finite number (else dy
    did, and any layout gives that NaN). Checked after the fact: a sum over x for every backward cost
    0.2-0.33 ms on res-64."""
    return dw is not None and bool(np.isnan(dw).any()) and not finite(x)


def finite(x: np.ndarray) -> bool:
    """Whether every element of x is finite, by one sum (a huge finite x may say False: never wrongly True)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(np.isfinite(np.add.reduce(x, axis=None)))


def grouped(w: np.ndarray, groups: int) -> np.ndarray:
    """Weight ``(C_out, C_in/G, *k)`` as ``(G, C_out/G, C_in/G, *k)``: one block per group."""
    return w.reshape((groups, w.shape[0] // groups) + w.shape[1:])


def dilate(dy: np.ndarray, stride) -> np.ndarray:
    """Insert ``s − 1`` zeros between neighbouring entries of each spatial dim: ``(N, C, *O) -> (N, C, *((O−1)s+1))``."""
    if all(s == 1 for s in stride):
        return dy
    shape = dy.shape[:2] + tuple((n - 1) * s + 1 for n, s in zip(dy.shape[2:], stride))
    out = np.zeros(shape, dtype=dy.dtype)
    out[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)] = dy
    return out
