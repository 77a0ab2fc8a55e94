"""The layers: each keeps what its backward needs and delegates the arithmetic to the stateless ops.

Constructor arguments, defaults, default initialisation, parameter names and shapes are PyTorch's.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops, pool
from .._args import int_tuple, is_int
from .._random import generator
from ..conv import conv_transpose
from ..conv.api import _conv, backward_pass, transpose_backward_pass
from ..ops import norm
from .module import Module, Parameter, as_dtype


def _uniform(shape, bound: float, dtype) -> Parameter:
    """U(−bound, bound): PyTorch's default (kaiming_uniform with a = √5 gives bound = 1/√fan_in)."""
    return Parameter(generator().uniform(-bound, bound, size=shape).astype(dtype))


def _check_channels(name: str, in_channels, out_channels, groups) -> None:
    for arg, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if not is_int(value) or value < 1:
            raise ValueError(f"{name}: expected {arg} to be a positive integer, got {arg}={value!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"{name}: expected in_channels and out_channels divisible by groups, got in_channels={in_channels}, "
            f"out_channels={out_channels}, groups={groups}"
        )


class _WeightBias(Module):
    """Layers with a weight and an optional bias: PyTorch's default initialisation, gradient bookkeeping."""

    def _init_parameters(self, weight_shape, bias_size: int, fan_in: int, bias: bool, dtype) -> None:
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        self.weight = _uniform(weight_shape, bound, dtype)
        self.register_parameter("bias", _uniform((bias_size,), bound, dtype) if bias else None)

    @property
    def _bias_data(self):
        return None if self.bias is None else self.bias.data

    def _accumulate(self, dw, db) -> None:
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)


class _ConvNd(_WeightBias):
    nd = 0

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", dtype=None):
        super().__init__()
        name = type(self).__name__
        _check_channels(name, in_channels, out_channels, groups)
        kernel = int_tuple(name, "kernel_size", kernel_size, self.nd)
        dtype = as_dtype(dtype)
        self._config = dict(in_channels=in_channels, out_channels=out_channels, kernel_size=list(kernel),
                            stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bool(bias),
                            padding_mode=padding_mode, dtype=dtype.name)
        self.options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode)
        self._init_parameters((out_channels, in_channels // groups, *kernel), out_channels,
                              in_channels // groups * math.prod(kernel), bias, dtype)
        self._input_grad = True  # whether backward is expected to want dx (see forward, _expect_input_grad)

    def forward(self, x):
        """x ``(N, C_in, *L)`` -> ``(N, C_out, *O)``. In training mode the convolution may keep its im2col
        matrix (gemm: one chunk's) or x in its flat layout (depthwise), at most
        ``convgrad.conv.gemm.KEEP_BYTES``, until :meth:`backward`, which then reuses it; the matrix's layout
        follows whether backward is expected to want dx (a first layer's does not): as
        ``_expect_input_grad`` said, or as the last backward did."""
        self._x = x
        self._saved = {"input_grad": self._input_grad} if self.training else None
        o = self.options
        return _conv("conv", x, self.weight.data, self._bias_data, o["stride"], o["padding"], o["dilation"],
                     o["groups"], o["padding_mode"], "auto", saved=self._saved)

    def backward(self, dy, input_grad=True):
        o = self.options
        dx, dw, db = backward_pass("conv_backward", dy, self._x, self.weight.data, o["stride"], o["padding"], o["dilation"],
                                   o["groups"], o["padding_mode"], self.bias is not None, "auto", need_dx=input_grad,
                                   saved=self._saved)
        self._saved, self._input_grad = None, input_grad
        self._accumulate(dw, db)
        return dx

    def _expect_input_grad(self, wanted: bool) -> None:
        self._input_grad = wanted


class Conv1d(_ConvNd):
    """1-D convolution, as ``torch.nn.Conv1d``: x ``(N, C_in, L)``."""

    nd = 1


class Conv2d(_ConvNd):
    """2-D convolution, as ``torch.nn.Conv2d``: x ``(N, C_in, H, W)``."""

    nd = 2


class Conv3d(_ConvNd):
    """3-D convolution, as ``torch.nn.Conv3d``: x ``(N, C_in, D, H, W)``."""

    nd = 3


class _ConvTransposeNd(_WeightBias):
    nd = 0

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", dtype=None):
        super().__init__()
        name = type(self).__name__
        _check_channels(name, in_channels, out_channels, groups)
        if padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported (as in PyTorch), got {padding_mode!r}")
        kernel = int_tuple(name, "kernel_size", kernel_size, self.nd)
        dtype = as_dtype(dtype)
        self._config = dict(in_channels=in_channels, out_channels=out_channels, kernel_size=list(kernel),
                            stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                            bias=bool(bias), dilation=dilation, dtype=dtype.name)
        self.options = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                            dilation=dilation)
        # PyTorch takes fan_in from weight.shape[1] * prod(kernel), which for this layout is C_out/groups
        self._init_parameters((in_channels, out_channels // groups, *kernel), out_channels,
                              out_channels // groups * math.prod(kernel), bias, dtype)

    def forward(self, x):
        self._x = x
        return conv_transpose(x, self.weight.data, self._bias_data, **self.options)

    def backward(self, dy, input_grad=True):
        o = self.options
        dx, dw, db = transpose_backward_pass(
            "conv_transpose_backward", dy, self._x, self.weight.data, o["stride"], o["padding"], o["output_padding"],
            o["dilation"], o["groups"], self.bias is not None, "auto", need_dx=input_grad)
        self._accumulate(dw, db)
        return dx


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution, as ``torch.nn.ConvTranspose1d``."""

    nd = 1


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution, as ``torch.nn.ConvTranspose2d``."""

    nd = 2


class ConvTranspose3d(_ConvTransposeNd):
    """3-D transposed convolution, as ``torch.nn.ConvTranspose3d``."""

    nd = 3


def _check_rank(module: Module, x, nd: int):
    x = np.asarray(x)
    if x.ndim != nd + 2:
        raise ValueError(f"{type(module).__name__}: expected x with {nd + 2} dims (N, C, ...), got x of shape {x.shape}")
    return x


class _MaxPoolNd(Module):
    nd = 0

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        if return_indices:
            raise ValueError(f"{type(self).__name__}: return_indices=True is not supported")
        self._config = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                            ceil_mode=ceil_mode)
        self.options = dict(self._config)

    def forward(self, x):
        y, self._index, self._geometry = pool.max_pool_with_index(_check_rank(self, x, self.nd), **self.options)
        return y

    def backward(self, dy, input_grad=True):
        """dy goes to each window's winner, found in the forward pass (the index is kept, not recomputed)."""
        expected = self._index.shape
        dy = np.asarray(dy)
        if dy.shape != expected:
            raise ValueError(f"{type(self).__name__}: expected dy of shape {expected}, got dy of shape {dy.shape}")
        return pool.route_max_grad(dy, self._index, self._geometry)


class MaxPool1d(_MaxPoolNd):
    nd = 1


class MaxPool2d(_MaxPoolNd):
    nd = 2


class MaxPool3d(_MaxPoolNd):
    nd = 3


class _AvgPoolNd(Module):
    nd = 0

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        if divisor_override is not None:
            raise ValueError(f"{type(self).__name__}: divisor_override is not supported")
        self._config = dict(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                            count_include_pad=count_include_pad)
        self.options = dict(self._config)

    def forward(self, x):
        self._x = _check_rank(self, x, self.nd)
        return pool.avg_pool(self._x, **self.options)

    def backward(self, dy, input_grad=True):
        return pool.avg_pool_backward(dy, self._x, **self.options)


class AvgPool1d(_AvgPoolNd):
    nd = 1


class AvgPool2d(_AvgPoolNd):
    nd = 2


class AvgPool3d(_AvgPoolNd):
    nd = 3


class Linear(_WeightBias):
    """``y = x Wᵀ + b``, as ``torch.nn.Linear``: weight ``(out_features, in_features)``."""

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        dtype = as_dtype(dtype)
        self._config = dict(in_features=in_features, out_features=out_features, bias=bool(bias), dtype=dtype.name)
        self._init_parameters((out_features, in_features), out_features, in_features, bias, dtype)

    def forward(self, x):
        self._x = x
        return ops.linear(x, self.weight.data, self._bias_data)

    def backward(self, dy, input_grad=True):
        dx, dw, db = ops.linear_backward(dy, self._x, self.weight.data, bias=self.bias is not None)
        self._accumulate(dw, db)
        return dx


class ReLU(Module):
    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        self._x = x
        return ops.relu(x)

    def backward(self, dy, input_grad=True):
        return ops.relu_backward(dy, self._x)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self._config = dict(negative_slope=negative_slope)
        self.negative_slope = negative_slope

    def forward(self, x):
        self._x = x
        return ops.leaky_relu(x, self.negative_slope)

    def backward(self, dy, input_grad=True):
        return ops.leaky_relu_backward(dy, self._x, self.negative_slope)


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self._config = dict(start_dim=start_dim, end_dim=end_dim)

    def forward(self, x):
        self._shape = np.shape(x)
        return ops.flatten(x, **self._config)

    def backward(self, dy, input_grad=True):
        return ops.flatten_backward(dy, self._shape)


class Dropout(Module):
    """Inverted dropout, active in training mode only; masks come from convgrad's global generator."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: expected a probability 0 <= p <= 1, got p={p!r}")
        self._config = dict(p=p)
        self.p = p

    def forward(self, x):
        y, self._mask = ops.dropout(x, self.p, self.training)
        return y

    def backward(self, dy, input_grad=True):
        return ops.dropout_backward(dy, self._mask)


class _BatchNorm(Module):
    ranks: tuple[int, ...] = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=None):
        super().__init__()
        dtype = as_dtype(dtype)
        self._config = dict(num_features=num_features, eps=eps, momentum=momentum, affine=bool(affine),
                            track_running_stats=bool(track_running_stats), dtype=dtype.name)
        self.eps, self.momentum, self.track_running_stats = eps, momentum, track_running_stats
        self.register_parameter("weight", Parameter(np.ones(num_features, dtype)) if affine else None)
        self.register_parameter("bias", Parameter(np.zeros(num_features, dtype)) if affine else None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def _uses_batch_statistics(self) -> bool:
        return self.training or not self.track_running_stats

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim not in self.ranks:
            raise ValueError(f"{type(self).__name__}: expected x with {' or '.join(map(str, self.ranks))} dims, got x of shape {x.shape}")
        self._x = x
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self._buffers["num_batches_tracked"] = self.num_batches_tracked + 1
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        stats = self._running() if self.track_running_stats else (None, None)
        y, self._statistics = norm.forward_with_statistics(x, *self._affine(), *stats, self._uses_batch_statistics(),
                                                           momentum if momentum is not None else 0.0, self.eps)
        return y

    def backward(self, dy, input_grad=True):
        """The gradients, reusing the forward's statistics (see ``ops.norm.backward_with_statistics``)."""
        stats = self._running() if self.track_running_stats else (None, None)
        dx, dw, db = norm.backward_with_statistics(dy, self._x, self._affine()[0], *stats, self._uses_batch_statistics(),
                                                   self.eps, self._statistics)
        if self.weight is not None:
            self.weight.accumulate(dw)
            self.bias.accumulate(db)
        return dx

    def _affine(self):
        return (None, None) if self.weight is None else (self.weight.data, self.bias.data)

    def _running(self):
        return self.running_mean, self.running_var


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)``, as ``torch.nn.BatchNorm1d``."""

    ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)``, as ``torch.nn.BatchNorm2d``."""

    ranks = (4,)
