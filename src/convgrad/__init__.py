"""convgrad: convolutional neural networks in NumPy, every gradient derived by hand and checked.

Arrays are channels-first, as in PyTorch: x ``(N, C_in, *spatial)`` with 1, 2 or 3 spatial dims,
weight ``(C_out, C_in // groups, *kernel)``, bias ``(C_out,)``.
"""

from . import gradcheck, nn, ops
from ._args import conv_output_size
from ._config import get_workspace_limit, set_workspace_limit, workspace_limit
from ._random import manual_seed
from .conv import conv, conv1d, conv2d, conv3d, conv_backward, conv_transpose, conv_transpose_backward
from .pool import avg_pool, avg_pool_backward, max_pool, max_pool_backward

__version__ = "0.1.0"

__all__ = [
    "conv", "conv1d", "conv2d", "conv3d", "conv_backward", "conv_transpose", "conv_transpose_backward",
    "conv_output_size", "max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward", "gradcheck",
    "get_workspace_limit", "set_workspace_limit", "workspace_limit", "manual_seed", "nn", "ops",
]
