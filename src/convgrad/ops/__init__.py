"""The layers other than convolution and pooling, each a pair of plain functions ``op`` and ``op_backward``."""

from .activation import leaky_relu, leaky_relu_backward, relu, relu_backward
from .dropout import dropout, dropout_backward
from .linear import linear, linear_backward
from .loss import cross_entropy, cross_entropy_backward, log_softmax, mse, mse_backward
from .norm import batch_norm, batch_norm_backward
from .shape import flatten, flatten_backward

__all__ = [
    "linear", "linear_backward", "relu", "relu_backward", "leaky_relu", "leaky_relu_backward",
    "flatten", "flatten_backward", "batch_norm", "batch_norm_backward", "dropout", "dropout_backward",
    "cross_entropy", "cross_entropy_backward", "log_softmax", "mse", "mse_backward",
]
