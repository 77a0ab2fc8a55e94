"""The registry of convolution algorithms and the choice behind ``algorithm="auto"``."""

from __future__ import annotations

from .._args import ConvGeometry
from . import as_forward, gemm, naive
from .base import Algorithm

ALGORITHMS: dict[str, Algorithm] = {
    a.name: a for a in (naive.ALGORITHM, gemm.ALGORITHM, as_forward.ALGORITHM)
}
ALGORITHM_NAMES = ("auto",) + tuple(ALGORITHMS)
AUTO_ORDER = ("gemm", "as_forward", "naive")  # preference of "auto" for numeric arrays


def choose(g: ConvGeometry) -> Algorithm:
    """``"auto"``: the first algorithm in order of preference that supports ``g``.

    Symbolic (object) arrays go to the notes' loops; numbers go to im2col + GEMM.
    """
    order = ("naive",) if g.dtype == object else AUTO_ORDER
    return next(ALGORITHMS[name] for name in order if ALGORITHMS[name].supports(g) is None)


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
