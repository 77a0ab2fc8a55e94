"""The registry of convolution algorithms and the choice behind ``algorithm="auto"``."""

from __future__ import annotations

from .._args import ConvGeometry
from . import as_forward, depthwise, fft, gemm, naive, pointwise
from .base import Algorithm

ALGORITHMS: dict[str, Algorithm] = {
    a.name: a for a in (naive.ALGORITHM, gemm.ALGORITHM, as_forward.ALGORITHM, pointwise.ALGORITHM,
                        depthwise.ALGORITHM, fft.ALGORITHM)
}
ALGORITHM_NAMES = ("auto",) + tuple(ALGORITHMS)
AUTO_ORDER = ("pointwise", "depthwise", "gemm", "as_forward", "naive")  # preference of "auto" for numbers
# ("fft" is chosen by size, before this order: see choose)


def choose(g: ConvGeometry) -> Algorithm:
    """``"auto"``: the first algorithm in order of preference that supports ``g``.

    Symbolic (object) arrays go to the notes' loops. Numbers: a 1x1 convolution is one matrix
    product ("pointwise"), a depthwise one shifted multiply-adds ("depthwise"), a stride-1 one with a
    large kernel FFTs ("fft", see :func:`convgrad.conv.fft.pays`), anything else im2col + GEMM.
    """
    if g.dtype == object:
        return ALGORITHMS["naive"]
    if fft.pays(g) and ALGORITHMS["fft"].supports(g) is None:
        return ALGORITHMS["fft"]
    return next(ALGORITHMS[name] for name in AUTO_ORDER if ALGORITHMS[name].supports(g) is None)


def select(fn: str, name: object, g: ConvGeometry) -> Algorithm:
    """The algorithm called ``name`` for geometry ``g``; a clear error if unknown or unable."""
    if not isinstance(name, str) or name not in ALGORITHM_NAMES:
        raise ValueError(f"{fn}: expected algorithm one of {ALGORITHM_NAMES}, got algorithm={name!r}")
    if name == "auto":
        return choose(g)
    algorithm = ALGORITHMS[name]
    reason = algorithm.supports(g)
    if reason is not None:
        raise ValueError(f"{fn}: algorithm={name!r} cannot handle this case: {reason}")
    return algorithm


def describe(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") -> str:
    """The name of the algorithm ``algorithm="auto"`` picks for this convolution (same arguments as conv).

    >>> import numpy as np
    >>> describe(np.ones((1, 2, 8, 8), np.float32), np.ones((3, 2, 3, 3), np.float32))
    'gemm'
    """
    return choose(_geometry("describe", x, weight, bias, stride, padding, dilation, groups, padding_mode)).name


def parts(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") -> int:
    """Into how many parts, run at once on as many cores, ``algorithm="auto"`` splits this convolution
    (1: it runs whole): gemm cuts the batch (:mod:`convgrad.conv.cores`), as pointwise does
    (:func:`convgrad.conv.pointwise.batch_parts`), depthwise the channels
    (:func:`convgrad.conv.depthwise.channel_parts`). Same arguments as conv."""
    g = _geometry("parts", x, weight, bias, stride, padding, dilation, groups, padding_mode)
    pieces = choose(g).parts(g)
    return 1 if pieces is None else len(pieces)


def _geometry(fn, x, weight, bias, stride, padding, dilation, groups, padding_mode) -> ConvGeometry:
    from .._args import conv_geometry

    return conv_geometry(fn, x, weight, bias, stride, padding, dilation, groups, padding_mode)[0]
