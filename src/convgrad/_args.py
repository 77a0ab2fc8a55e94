"""Every input check and every normalisation of stride, padding and dilation: one place.

The public functions call these helpers before doing any work. Each failure raises ``ValueError`` or
``TypeError`` with a message that starts with the function's name, names the offending argument and
shows what was expected against what was given.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
DIM_NAMES = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}

Pairs = tuple[tuple[int, int], ...]


# ---------------------------------------------------------------------------------------------
# small helpers


def shape_str(shape: Sequence[int]) -> str:
    """``(2, 3, 9, 9)`` for a shape, with the trailing comma of 1-tuples removed: ``(4)``."""
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers, False for bools (which are ints to Python)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_bool(fn: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: expected {name} to be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def as_array(fn: str, name: str, value: Any, allow_object: bool = False) -> np.ndarray:
    """``value`` as an ndarray of real numbers; bool, complex, string and object arrays are refused."""
    array = np.asarray(value)
    kind = array.dtype.kind
    if kind in "fiu" or (kind == "O" and allow_object):
        return array
    if kind == "c":
        raise TypeError(f"{fn}: expected {name} to be a real array, got complex dtype {array.dtype}")
    raise TypeError(f"{fn}: expected {name} to be a real numeric array (float or int), got dtype {array.dtype}")


def float_dtypes(*arrays: np.ndarray | None) -> tuple[np.dtype, np.dtype]:
    """(compute dtype, result dtype) for a set of inputs, following ``np.result_type``.

    Integers are promoted to float64; float16 is computed in float32 and returned as float16;
    float32 stays float32 and float64 stays float64. Object arrays (symbolic use) stay object.
    """
    present = [a for a in arrays if a is not None]
    if any(a.dtype == object for a in present):
        return np.dtype(object), np.dtype(object)
    result = np.result_type(*present)
    if result.kind in "iu":
        result = np.dtype(np.float64)
    compute = np.dtype(np.float32) if result == np.float16 else result
    return compute, result


def int_tuple(fn: str, name: str, value: Any, nd: int, minimum: int = 1) -> tuple[int, ...]:
    """An int or a sequence of ``nd`` ints, as a tuple of ``nd`` ints each ``>= minimum``."""
    if is_int(value):
        items: tuple = (value,) * nd
    elif isinstance(value, (tuple, list, np.ndarray)):
        items = tuple(np.asarray(value).ravel().tolist()) if isinstance(value, np.ndarray) else tuple(value)
        if len(items) != nd:
            raise ValueError(
                f"{fn}: expected {name} as an int or {nd} int(s), one per spatial dim, got {name}={value!r}"
            )
    else:
        raise TypeError(f"{fn}: expected {name} as an int or a sequence of {nd} ints, got {type(value).__name__} {value!r}")
    for item in items:
        if not is_int(item):
            raise TypeError(f"{fn}: expected {name} to hold integers, got {name}={value!r}")
    if any(item < minimum for item in items):
        raise ValueError(f"{fn}: expected {name} >= {minimum} in every dim, got {name}={value!r}")
    return tuple(int(item) for item in items)


def _pair(fn: str, padding: Any, item: Any) -> tuple[int, int]:
    if is_int(item):
        return int(item), int(item)
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(is_int(v) for v in item):
        return int(item[0]), int(item[1])
    raise TypeError(
        f"{fn}: expected padding per dim as an int or a (lo, hi) pair of ints, got {item!r} in padding={padding!r}"
    )


def padding_pairs(
    fn: str,
    padding: Any,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    allow_strings: bool = True,
) -> Pairs:
    """Normalise ``padding`` to one ``(lo, hi)`` pair per spatial dim.

    Accepts an int, one int per dim, one ``(lo, hi)`` pair per dim, ``"valid"`` (no padding) or
    ``"same"`` (stride 1 only): the total padding ``dilation * (k - 1)`` is split with the odd element
    at the end, as PyTorch does.
    """
    nd = len(kernel)
    if isinstance(padding, str):
        if not allow_strings:
            raise TypeError(f"{fn}: expected padding as an int, ints or (lo, hi) pairs, got padding={padding!r}")
        return _string_padding(fn, padding, kernel, stride, dilation)
    if is_int(padding):
        pairs = ((int(padding), int(padding)),) * nd
    elif isinstance(padding, (tuple, list)):
        if len(padding) != nd:
            raise ValueError(
                f"{fn}: expected padding as an int, {nd} int(s) or {nd} (lo, hi) pair(s), got padding={padding!r}"
            )
        pairs = tuple(_pair(fn, padding, item) for item in padding)
    else:
        raise TypeError(
            f"{fn}: expected padding as an int, a sequence, 'valid' or 'same', got {type(padding).__name__} {padding!r}"
        )
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise ValueError(f"{fn}: expected padding >= 0 (negative padding is not supported), got padding={padding!r}")
    return pairs


def _string_padding(fn: str, padding: str, kernel, stride, dilation) -> Pairs:
    if padding == "valid":
        return ((0, 0),) * len(kernel)
    if padding != "same":
        raise ValueError(f"{fn}: expected padding 'valid' or 'same' when given as a string, got padding={padding!r}")
    if any(s != 1 for s in stride):
        raise ValueError(f"{fn}: padding='same' requires stride 1 in every dim, got stride={stride}")
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return tuple((t // 2, t - t // 2) for t in totals)


def output_length(length: int, lo: int, hi: int, k: int, s: int, d: int, ceil_mode: bool = False) -> int:
    """``floor((L + lo + hi - d*(k-1) - 1) / s) + 1``: the notes' ``(H - H_f + 2 pad)/stride + 1``.

    With ``ceil_mode`` (pooling) the division rounds up, but the last window must start inside the
    input or its left padding, as in PyTorch.
    """
    span = length + lo + hi - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= length + lo:
        out -= 1
    return out


def conv_output_size(input_size, kernel_size, stride=1, padding=0, dilation=1) -> tuple[int, ...]:
    """Output size of a convolution, one int per spatial dim.

    ``out = floor((L + lo + hi - dilation*(k - 1) - 1) / stride) + 1`` per dim, which is the notes'
    ``H' = (H - H_f + 2 pad) / stride + 1`` when dilation is 1 and the division is exact. ``padding``
    takes every form that :func:`convgrad.conv` takes.

    >>> conv_output_size(32, 5)
    (28,)
    >>> conv_output_size((11, 28), (3, 2), stride=(2, 1), padding=((2, 1), 0), dilation=(1, 3))
    (6, 25)
    >>> conv_output_size((7, 8), 3, padding="same")
    (7, 8)
    """
    fn = "conv_output_size"
    sizes = [v for v in (input_size, kernel_size, stride, dilation) if isinstance(v, (tuple, list))]
    nd = len(sizes[0]) if sizes else 1
    lengths = int_tuple(fn, "input_size", input_size, nd, minimum=0)
    kernel = int_tuple(fn, "kernel_size", kernel_size, nd)
    strides = int_tuple(fn, "stride", stride, nd)
    dilations = int_tuple(fn, "dilation", dilation, nd)
    pairs = padding_pairs(fn, padding, kernel, strides, dilations)
    check_kernel_fits(fn, lengths, kernel, dilations, pairs)
    return tuple(output_length(*args) for args in zip(lengths, *zip(*pairs), kernel, strides, dilations))


def check_kernel_fits(fn: str, lengths, kernel, dilation, pairs: Pairs) -> None:
    """The dilated kernel must fit in the padded input, in every dim."""
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(lengths, pairs))
    effective = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(e > p for e, p in zip(effective, padded)):
        raise ValueError(
            f"{fn}: kernel size {effective} (kernel_size {tuple(kernel)}, dilation {tuple(dilation)}) is larger "
            f"than the padded input size {padded} (input {tuple(lengths)}, padding {pairs})"
        )


# ---------------------------------------------------------------------------------------------
# convolution geometry


class _Window:
    """What convolution and pooling geometries share: ``kernel``, ``in_size`` and ``pads`` per spatial dim."""

    kernel: tuple[int, ...]
    in_size: tuple[int, ...]
    pads: Pairs

    @property
    def nd(self) -> int:
        return len(self.kernel)

    @property
    def padded_size(self) -> tuple[int, ...]:
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.in_size, self.pads))


@dataclass(frozen=True)
class ConvGeometry(_Window):
    """Everything an algorithm needs to know about one convolution, validated.

    ``in_size`` is the spatial size of the (unpadded) input, ``padded_size`` that size plus the
    padding, ``out_size`` the spatial size of the output. ``dtype`` is the dtype the arithmetic runs
    in, ``result_dtype`` the dtype returned to the user.
    """

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: Pairs
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    padding_mode: str
    dtype: np.dtype
    result_dtype: np.dtype

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.in_size)

    @property
    def padded_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.padded_size)

    @property
    def y_shape(self) -> tuple[int, ...]:
        return (self.batch, self.out_channels, *self.out_size)

    @functools.cached_property
    def _hash(self) -> int:
        return hash(tuple(getattr(self, f.name) for f in fields(self)))

    def __hash__(self) -> int:
        """The fields' hash, computed once: geometries key the caches of the algorithms' plans, looked up
        several times per call."""
        return self._hash



def plain_geometry(x_shape, w_shape, stride, dilation, groups, dtype, pads=None, out_size=None) -> ConvGeometry:
    """A geometry for an internal zero-padded convolution of arrays already known to be valid (no checks)."""
    kernel, lengths = tuple(w_shape[2:]), tuple(x_shape[2:])
    pads = tuple(pads) if pads is not None else ((0, 0),) * len(kernel)
    if out_size is None:
        out_size = tuple(output_length(n, lo, hi, k, s, d) for n, (lo, hi), k, s, d in zip(lengths, pads, kernel, stride, dilation))
    return interned(ConvGeometry(
        x_shape[0], x_shape[1], w_shape[0], groups, kernel, tuple(stride), tuple(dilation), pads, lengths,
        tuple(out_size), "zeros", np.dtype(dtype), np.dtype(dtype),
    ))


def _spatial_dims(fn: str, x: np.ndarray, nd: int | None) -> int:
    if nd is not None:
        if x.ndim != nd + 2:
            raise ValueError(
                f"{fn}: expected x with {nd} spatial dim(s), shape {DIM_NAMES[nd]} (x.ndim {nd + 2}), "
                f"got x of shape {shape_str(x.shape)}"
            )
        return nd
    if x.ndim not in (3, 4, 5):
        raise ValueError(
            f"{fn}: expected x of shape (N, C, *spatial) with 1, 2 or 3 spatial dims (x.ndim 3, 4 or 5), "
            f"got x of shape {shape_str(x.shape)}"
        )
    return x.ndim - 2


def _check_weight(fn: str, x: np.ndarray, weight: np.ndarray, layout: str) -> None:
    if weight.ndim != x.ndim:
        raise ValueError(
            f"{fn}: expected weight with {x.ndim} dims {layout} to match x of shape {shape_str(x.shape)}, "
            f"got weight of shape {shape_str(weight.shape)}"
        )
    if any(k < 1 for k in weight.shape[2:]):
        raise ValueError(f"{fn}: expected a kernel size >= 1 in every dim, got weight of shape {shape_str(weight.shape)}")


def _check_groups(fn: str, groups: Any, channels: int, what: str) -> int:
    if not is_int(groups):
        raise TypeError(f"{fn}: expected groups to be an integer, got {type(groups).__name__} {groups!r}")
    if groups < 1:
        raise ValueError(f"{fn}: expected groups >= 1, got groups={groups}")
    if channels % groups:
        raise ValueError(f"{fn}: expected {what} = {channels} to be divisible by groups, got groups={groups}")
    return int(groups)


def _check_bias(fn: str, bias: np.ndarray | None, channels: int) -> None:
    if bias is not None and bias.shape != (channels,):
        raise ValueError(f"{fn}: expected bias of shape ({channels},), got bias of shape {shape_str(bias.shape)}")


def _check_mode_padding(fn: str, mode: Any, pairs: Pairs, lengths: tuple[int, ...]) -> str:
    if mode not in PADDING_MODES:
        raise ValueError(f"{fn}: expected padding_mode one of {PADDING_MODES}, got padding_mode={mode!r}")
    for (lo, hi), n in zip(pairs, lengths):
        if mode == "reflect" and max(lo, hi) >= n:
            raise ValueError(
                f"{fn}: padding_mode='reflect' needs padding smaller than the input size, "
                f"got padding {pairs} for input size {lengths}"
            )
        if mode == "circular" and max(lo, hi) > n:
            raise ValueError(
                f"{fn}: padding_mode='circular' needs padding no larger than the input size (it would wrap "
                f"around more than once), got padding {pairs} for input size {lengths}"
            )
        if mode == "replicate" and n == 0 and lo + hi > 0:
            raise ValueError(f"{fn}: padding_mode='replicate' needs a non-empty input, got input size {lengths}")
    return mode


_GEOMETRIES: dict = {}
_CACHE_SIZE = 512


def _memo(kind: str, arrays, options, build):
    """The validated geometry for these array shapes and dtypes and these options, computed once, and
    one object for equal geometries whatever call made them (a forward's and its backward's): the
    algorithms' caches keyed by geometry then find it by identity, without comparing its 13 fields.

    Options are keyed by their repr, so ``stride=True`` never matches a cached ``stride=1``; a call
    with an unhashable or new signature runs every check (and raises what they raise).
    """
    key = (kind, tuple(None if a is None else (a.shape, a.dtype.str) for a in arrays), repr(options))
    cached = _GEOMETRIES.get(key)
    if cached is None:
        cached = _GEOMETRIES[key] = interned(build())
    return cached


def interned(geometry):
    """The one object for geometries equal to ``geometry`` (see :func:`_memo`); the cache of both is
    emptied when full."""
    if len(_GEOMETRIES) >= _CACHE_SIZE:
        _GEOMETRIES.clear()
    return _GEOMETRIES.setdefault(("geometry", geometry), geometry)


def conv_geometry(
    fn: str, x, weight, bias, stride, padding, dilation, groups, padding_mode,
    nd: int | None = None, allow_object: bool = False, dtype_of: tuple = (),
) -> tuple[ConvGeometry, np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate the arguments of a convolution; return its geometry and the arrays in compute dtype.

    x ``(N, C_in, *L)``, weight ``(C_out, C_in // groups, *k)``, bias ``(C_out,)`` or None.
    ``dtype_of``: further arrays (a backward's dy) whose dtypes join the result dtype.
    """
    x = as_array(fn, "x", x, allow_object)
    weight = as_array(fn, "weight", weight, allow_object)
    bias = None if bias is None else as_array(fn, "bias", bias, allow_object)
    g = _memo(fn, (x, weight, bias) + tuple(dtype_of), (stride, padding, dilation, groups, padding_mode, nd),
              lambda: _conv_geometry(fn, x, weight, bias, stride, padding, dilation, groups, padding_mode, nd, dtype_of))
    return g, _cast(x, g.dtype), _cast(weight, g.dtype), _cast(bias, g.dtype)


def _conv_geometry(fn, x, weight, bias, stride, padding, dilation, groups, padding_mode, nd, dtype_of) -> ConvGeometry:
    nd = _spatial_dims(fn, x, nd)
    _check_weight(fn, x, weight, "(C_out, C_in // groups, *kernel)")
    groups = _check_groups(fn, groups, weight.shape[0], "out channels (weight.shape[0])")
    if x.shape[1] != weight.shape[1] * groups:
        raise ValueError(
            f"{fn}: expected input with {weight.shape[1] * groups} channels (weight {shape_str(weight.shape)}, "
            f"groups={groups}), got x of shape {shape_str(x.shape)}"
        )
    _check_bias(fn, bias, weight.shape[0])
    kernel = tuple(weight.shape[2:])
    strides = int_tuple(fn, "stride", stride, nd)
    dilations = int_tuple(fn, "dilation", dilation, nd)
    pairs = padding_pairs(fn, padding, kernel, strides, dilations)
    lengths = tuple(x.shape[2:])
    mode = _check_mode_padding(fn, padding_mode, pairs, lengths)
    check_kernel_fits(fn, lengths, kernel, dilations, pairs)
    out = tuple(output_length(*a) for a in zip(lengths, *zip(*pairs), kernel, strides, dilations))
    compute, result = float_dtypes(x, weight, bias, *dtype_of)
    return ConvGeometry(
        x.shape[0], x.shape[1], weight.shape[0], groups, kernel, strides, dilations, pairs, lengths, out, mode,
        compute, result,
    )


def transpose_geometry(
    fn: str, x, weight, bias, stride, padding, output_padding, dilation, groups, allow_object: bool = False,
    dtype_of: tuple = (),
) -> tuple[ConvGeometry, np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate a transposed convolution; return the geometry of the convolution it is the gradient of.

    x ``(N, C_in, *L)``, weight ``(C_in, C_out // groups, *k)`` (PyTorch's layout). The returned
    geometry describes the forward convolution whose input gradient the transposed convolution is:
    its input is the transposed output ``(N, C_out, *out)`` and its output is x.
    """
    x = as_array(fn, "x", x, allow_object)
    weight = as_array(fn, "weight", weight, allow_object)
    bias = None if bias is None else as_array(fn, "bias", bias, allow_object)
    g = _memo(fn, (x, weight, bias) + tuple(dtype_of), (stride, padding, output_padding, dilation, groups),
              lambda: _transpose_geometry(fn, x, weight, bias, stride, padding, output_padding, dilation, groups, dtype_of))
    return g, _cast(x, g.dtype), _cast(weight, g.dtype), _cast(bias, g.dtype)


def _transpose_geometry(fn, x, weight, bias, stride, padding, output_padding, dilation, groups, dtype_of) -> ConvGeometry:
    nd = _spatial_dims(fn, x, None)
    _check_weight(fn, x, weight, "(C_in, C_out // groups, *kernel)")
    groups = _check_groups(fn, groups, weight.shape[0], "in channels (weight.shape[0])")
    if x.shape[1] != weight.shape[0]:
        raise ValueError(
            f"{fn}: expected input with {weight.shape[0]} channels (weight {shape_str(weight.shape)}, "
            f"groups={groups}), got x of shape {shape_str(x.shape)}"
        )
    _check_bias(fn, bias, weight.shape[1] * groups)
    kernel = tuple(weight.shape[2:])
    strides = int_tuple(fn, "stride", stride, nd)
    dilations = int_tuple(fn, "dilation", dilation, nd)
    pairs = padding_pairs(fn, padding, kernel, strides, dilations, allow_strings=False)
    extra = int_tuple(fn, "output_padding", output_padding, nd, minimum=0)
    if any(op >= s and op >= d for op, s, d in zip(extra, strides, dilations)):
        raise ValueError(
            f"{fn}: expected output_padding smaller than stride or dilation in every dim, got "
            f"output_padding={extra} with stride={strides}, dilation={dilations}"
        )
    lengths = tuple(x.shape[2:])
    out = tuple(
        (n - 1) * s - lo - hi + d * (k - 1) + op + 1
        for n, (lo, hi), k, s, d, op in zip(lengths, pairs, kernel, strides, dilations, extra)
    )
    if any(n < 1 for n in out):
        raise ValueError(
            f"{fn}: output size (L - 1)*stride - padding_lo - padding_hi + dilation*(k - 1) + output_padding + 1 "
            f"= {out} is not positive (input {lengths}, padding {pairs})"
        )
    compute, result = float_dtypes(x, weight, bias, *dtype_of)
    return ConvGeometry(
        x.shape[0], weight.shape[1] * groups, weight.shape[0], groups, kernel, strides, dilations, pairs,
        out, lengths, "zeros", compute, result,
    )


def _cast(array: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    return None if array is None else array.astype(dtype, copy=False)


def grad_output(fn: str, dy: np.ndarray, expected: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The upstream gradient (already an array) checked to have the forward output's shape, in ``dtype``."""
    if dy.shape != tuple(expected):
        raise ValueError(
            f"{fn}: expected dy of shape {shape_str(expected)} (the shape of the forward output), "
            f"got dy of shape {shape_str(dy.shape)}"
        )
    return dy.astype(dtype, copy=False)


def wants_bias(fn: str, bias: Any, channels: int) -> bool:
    """``bias=`` of a backward function: True/False, or the bias array itself (meaning True)."""
    if bias is None or isinstance(bias, (bool, np.bool_)):
        return bool(bias)
    _check_bias(fn, as_array(fn, "bias", bias), channels)
    return True


# ---------------------------------------------------------------------------------------------
# pooling geometry


@dataclass(frozen=True)
class PoolGeometry(_Window):
    """A validated pooling window: ``pads`` include any extra end padding that ``ceil_mode`` needs."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...]
    pads: Pairs
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    dtype: np.dtype
    result_dtype: np.dtype


def pool_geometry(
    fn: str, x, kernel_size, stride, padding, dilation, ceil_mode, dtype_of: tuple = ()
) -> tuple[PoolGeometry, np.ndarray]:
    """Validate a pooling call; x ``(N, C, *L)`` with as many spatial dims as the kernel."""
    x = as_array(fn, "x", x)
    pg = _memo(fn, (x,) + tuple(dtype_of), (kernel_size, stride, padding, dilation, ceil_mode),
               lambda: _pool_geometry(fn, x, kernel_size, stride, padding, dilation, ceil_mode, dtype_of))
    return pg, x.astype(pg.dtype, copy=False)


def _pool_geometry(fn, x, kernel_size, stride, padding, dilation, ceil_mode, dtype_of) -> PoolGeometry:
    nd = len(kernel_size) if isinstance(kernel_size, (tuple, list)) else None
    nd = _spatial_dims(fn, x, nd)
    kernel = int_tuple(fn, "kernel_size", kernel_size, nd)
    strides = kernel if stride is None else int_tuple(fn, "stride", stride, nd)
    pads = int_tuple(fn, "padding", padding, nd, minimum=0)
    dilations = int_tuple(fn, "dilation", dilation, nd)
    ceil_mode = check_bool(fn, "ceil_mode", ceil_mode)
    if any(p > k // 2 for p, k in zip(pads, kernel)):
        raise ValueError(f"{fn}: expected padding at most half of kernel_size, got padding={pads} with kernel_size={kernel}")
    lengths = tuple(x.shape[2:])
    out = tuple(output_length(n, p, p, k, s, d, ceil_mode) for n, p, k, s, d in zip(lengths, pads, kernel, strides, dilations))
    if any(o < 1 for o in out):
        check_kernel_fits(fn, lengths, kernel, dilations, tuple((p, p) for p in pads))
        raise ValueError(f"{fn}: output size {out} is too small for input {lengths}")
    reach = tuple((o - 1) * s + d * (k - 1) + 1 for o, s, d, k in zip(out, strides, dilations, kernel))
    pairs = tuple((p, max(p, r - n - p)) for p, r, n in zip(pads, reach, lengths))
    compute, result = float_dtypes(x, *dtype_of)
    return PoolGeometry(kernel, strides, dilations, pads, pairs, lengths, out, compute, result)
