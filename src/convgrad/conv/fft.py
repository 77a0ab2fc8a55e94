"""``algorithm="fft"``: convolution through real FFTs (scipy.fft), for large kernels.

With the padded input of size P per dim, every product the convolution needs fits in a transform of
size P without wrapping around: output o reads input o·s + κ·d ≤ P − 1. With hats for the real FFT
over the spatial dims and the kernel dilated (zeros between its taps), per frequency f:

    ŷ[n, co]  = Σ_ci conj(ŵ[co, ci]) · x̂[n, ci]          (correlation: then keep every s-th output)
    dx̂[n, ci] = Σ_co ŵ[co, ci] · dŷ[n, co]                (dy dilated by the stride, convolved with w)
    dŵ[co, ci] = Σ_n conj(dŷ[n, co]) · x̂[n, ci]            (x correlated with dy: keep the first taps)

The channel sums are batched complex matrix products over the frequencies (one per group). The
work grows with the padded input, not with the kernel, so it pays for large kernels.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Algorithm, bias_grad, dilate, grouped, padded, unpadded


def _spatial(nd: int) -> tuple[int, ...]:
    return tuple(range(2, 2 + nd))


def _dilated_kernel(w: np.ndarray, g) -> np.ndarray:
    """w ``(C_out, C_in/G, *k)`` with d − 1 zeros between its taps: ``(C_out, C_in/G, *(d(k−1)+1))``."""
    return dilate(w, g.dilation)


def _per_frequency(a: np.ndarray, groups: int) -> np.ndarray:
    """``(B, C, *F)`` -> ``(G, F, C/G, B)``: one small matrix per group and frequency."""
    b, c = a.shape[:2]
    a = a.reshape(b, groups, c // groups, -1)
    return a.transpose(1, 3, 2, 0)


def _from_frequency(a: np.ndarray, freq_shape) -> np.ndarray:
    """``(G, F, C/G, B)`` -> ``(B, C, *F)``."""
    groups, _, c, b = a.shape
    return a.transpose(3, 0, 2, 1).reshape((b, groups * c) + tuple(freq_shape))


class FFT(Algorithm):
    name = "fft"

    def supports(self, g):
        if g.dtype == object:
            return "it works on numbers only"
        if g.dtype.kind != "f":
            return f"it needs a floating dtype, got {g.dtype}"
        return None

    def _transforms(self, g):
        """Forward and inverse real FFTs over the spatial dims, at sizes ≥ P that scipy.fft computes fast;
        the inverse is cropped back to P. scipy is imported here, on first use: importing it loads
        SciPy's own OpenBLAS and its threads, and took 190 of ``import convgrad``'s 360 ms."""
        from scipy import fft as sfft

        axes = _spatial(g.nd)
        size = tuple(sfft.next_fast_len(p, real=True) for p in g.padded_size)
        crop = (slice(None), slice(None)) + tuple(slice(0, p) for p in g.padded_size)
        forward = lambda a: sfft.rfftn(a, s=size, axes=axes, workers=-1)  # noqa: E731
        inverse = lambda a: sfft.irfftn(a, s=size, axes=axes, workers=-1)[crop]  # noqa: E731
        return forward, inverse

    def forward(self, x, w, b, g):
        """x ``(N, C_in, *L)`` -> y ``(N, C_out, *O)``."""
        fwd, inv = self._transforms(g)
        X = fwd(padded(x, g))  # (N, C_in, *F)
        Wc = np.conj(fwd(_dilated_kernel(w, g)))  # (C_out, C_in/G, *F)
        freq = X.shape[2:]
        Wg = grouped(Wc.reshape(Wc.shape[:2] + (-1,)), g.groups).transpose(0, 3, 1, 2)  # (G, F, C_out/G, C_in/G)
        Y = _from_frequency(np.matmul(Wg, _per_frequency(X, g.groups)), freq)  # (N, C_out, *F)
        full = inv(Y)
        index = (slice(None), slice(None)) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(g.out_size, g.stride))
        y = np.ascontiguousarray(full[index], dtype=g.dtype)
        if b is not None:
            y += b.reshape((1, -1) + (1,) * g.nd)
        return y

    def backward(self, dy, x, w, g, need_dx=True, need_dw=True, need_db=True):
        fwd, inv = self._transforms(g)
        DY = fwd(dilate(dy, g.stride))  # (N, C_out, *F): dy placed at the stride's positions
        freq = DY.shape[2:]
        dx = dw = None
        if need_dx:
            Wf = fwd(_dilated_kernel(w, g))
            Wg = grouped(Wf.reshape(Wf.shape[:2] + (-1,)), g.groups).transpose(0, 3, 2, 1)  # (G, F, C_in/G, C_out/G)
            DX = _from_frequency(np.matmul(Wg, _per_frequency(DY, g.groups)), freq)
            dx = np.ascontiguousarray(unpadded(inv(DX).astype(g.dtype, copy=False), g))
        if need_dw:
            X = _per_frequency(fwd(padded(x, g)), g.groups)  # (G, F, C_in/G, N)
            DYc = np.conj(_per_frequency(DY, g.groups))  # (G, F, C_out/G, N)
            DW = np.matmul(DYc, X.swapaxes(-1, -2))  # (G, F, C_out/G, C_in/G)
            DW = DW.transpose(0, 2, 3, 1).reshape((g.out_channels, g.in_channels // g.groups) + tuple(freq))
            taps = (slice(None), slice(None)) + tuple(slice(0, d * (k - 1) + 1, d) for k, d in zip(g.kernel, g.dilation))
            dw = np.ascontiguousarray(inv(DW)[taps], dtype=g.dtype)
        return dx, dw, (bias_grad(dy) if need_db else None)


ALGORITHM = FFT()


def pays(g) -> bool:
    """Whether "auto" should use FFT: stride 1 and a kernel large enough that the transforms beat im2col.

    im2col copies C_in·K values per output position while FFT's cost grows with log P, not with K.
    Measured on the benchmark machine (forward + backward, float32, 'same' padding): FFT takes 0.9× the
    gemm time at 7×7 and 0.37× at 9×9 in 2-D, 0.66× at 33 taps in 1-D (1.7× at 25), 0.67× at 5×5×5 in
    3-D (2× at 3×3×3).
    """
    threshold = {1: 31, 2: 49, 3: 125}[g.nd]
    return all(s == 1 for s in g.stride) and math.prod(g.kernel) >= threshold and g.dtype.kind == "f"
