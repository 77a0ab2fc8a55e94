"""What every convolution algorithm provides, and the pieces all of them share.

An algorithm works on an already padded input ``xp (N, C_in, *P)`` with zero implicit padding; the
public functions do the padding (any ``padding_mode``) and its adjoint around it. It provides

- ``forward(xp, w, b, g) -> y``: y ``(N, C_out, *g.out_size)``;
- ``backward(dy, xp, w, g, need_dx, need_dw, need_db) -> (dxp, dw, db)``: dxp ``(N, C_in, *P)``,
  dw like w, db ``(C_out,)``; a part not asked for is None (and ``xp`` may then be None too);
- ``supports(g) -> str | None``: None, or the reason it cannot handle geometry ``g``.
"""

from __future__ import annotations

import numpy as np

from .._args import ConvGeometry


class Algorithm:
    """Base class: a named convolution algorithm that supports every geometry unless it says otherwise."""

    name = "base"

    def supports(self, g: ConvGeometry) -> str | None:
        return None

    def forward(self, xp, w, b, g: ConvGeometry) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy, xp, w, g: ConvGeometry, need_dx=True, need_dw=True, need_db=True):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<convgrad algorithm {self.name!r}>"


def add_bias(y: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``y (N, C, *S) + b (C,)`` broadcast over the batch and the spatial dims, in place."""
    if b is not None:
        y += b.reshape((1, -1) + (1,) * (y.ndim - 2))
    return y


def bias_grad(dy: np.ndarray) -> np.ndarray:
    """``db = Σ dy`` over the batch and every output position: ``(N, C, *S) -> (C,)``."""
    return dy.sum(axis=(0,) + tuple(range(2, dy.ndim)))


def grouped(w: np.ndarray, groups: int) -> np.ndarray:
    """Weight ``(C_out, C_in/G, *k)`` as ``(G, C_out/G, C_in/G, *k)``: one block per group."""
    return w.reshape((groups, w.shape[0] // groups) + w.shape[1:])
