"""Convolution: the public functions and the algorithms behind them."""

from .api import conv, conv1d, conv2d, conv3d, conv_backward, conv_transpose, conv_transpose_backward
from .dispatch import ALGORITHM_NAMES, ALGORITHMS

__all__ = [
    "conv", "conv1d", "conv2d", "conv3d", "conv_backward", "conv_transpose", "conv_transpose_backward",
    "ALGORITHMS", "ALGORITHM_NAMES",
]
