"""Index helpers shared by every sliding-window op: where each kernel offset or output window lies."""

from __future__ import annotations

import itertools
from typing import Iterator, Sequence


def kernel_offsets(kernel: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Every kernel offset ``(k_1, ..., k_d)`` in scan (C) order."""
    return itertools.product(*(range(k) for k in kernel))


def offset_slices(offset, stride, dilation, out_size) -> tuple[slice, ...]:
    """Spatial slices of the padded input that kernel ``offset`` meets, one element per output position.

    Along each dim: positions ``o*d, o*d + s, ..., o*d + s*(n_out - 1)``.
    """
    return tuple(
        slice(o * d, o * d + s * (n - 1) + 1, s) for o, s, d, n in zip(offset, stride, dilation, out_size)
    )


def window_slices(position, stride, dilation, kernel) -> tuple[slice, ...]:
    """Spatial slices of the padded input covered by the window of output ``position``.

    Along each dim: ``p*s, p*s + d, ..., p*s + d*(k - 1)`` (the notes' ``X_seg``).
    """
    return tuple(slice(p * s, p * s + d * (k - 1) + 1, d) for p, s, d, k in zip(position, stride, dilation, kernel))
