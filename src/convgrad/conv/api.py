"""The public convolution functions: conv, conv_backward, conv1d/2d/3d, conv_transpose and its backward.

Every function validates its arguments (``convgrad._args``) and hands the problem to one algorithm
(``convgrad.conv.dispatch``), which pads the input (any ``padding_mode``) and maps the gradient back
through the padding with the shared helpers of ``convgrad._padding``. A transposed convolution is the
input gradient of a convolution, so it is built from the same two algorithm entry points, with the
roles of forward and backward exchanged.
"""

from __future__ import annotations

from .._args import as_array, conv_geometry, grad_output, transpose_geometry, wants_bias
from .base import add_bias, bias_grad, run_backward, run_forward
from .dispatch import select


def _cast(array, dtype):
    return None if array is None else array.astype(dtype, copy=False)


def _conv(fn, x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, nd=None, allow_object=False,
          saved=None):
    """:func:`conv`; ``saved``: a dict a training module keeps for its backward (see ``conv.base``)."""
    g, x, weight, bias = conv_geometry(
        fn, x, weight, bias, stride, padding, dilation, groups, padding_mode, nd, allow_object
    )
    y = run_forward(select(fn, algorithm, g), x, weight, bias, g, saved)
    return y.astype(g.result_dtype, copy=False)


def conv(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", algorithm="auto"):
    """Convolution (cross-correlation, as in PyTorch) over 1, 2 or 3 spatial dims.

    x ``(N, C_in, *L)``, weight ``(C_out, C_in // groups, *k)``, bias ``(C_out,)`` or None
    -> y ``(N, C_out, *O)`` with, per spatial dim,
    ``O = floor((L + lo + hi - dilation*(k - 1) - 1) / stride) + 1`` (see :func:`conv_output_size`)::

        y[n, co, o] = b[co] + Σ_ci Σ_κ w[co, ci, κ] · x_pad[n, g·C_in/G + ci, o·stride + κ·dilation]

    ``stride``, ``dilation``: an int or one per dim. ``padding``: an int, one per dim, one
    ``(lo, hi)`` pair per dim, ``"valid"`` or ``"same"`` (stride 1; an odd total puts the extra
    element at the end). ``padding_mode``: ``"zeros"``, ``"reflect"``, ``"replicate"`` or
    ``"circular"``. ``algorithm``: ``"auto"``, ``"naive"``, ``"gemm"``, ``"as_forward"``, ``"pointwise"``,
    ``"depthwise"`` or ``"fft"`` (the last three take only the cases they are built for).
    float32 stays float32, float64 stays float64, integers are computed in float64.

    The notes' 1-D example, x = (x₁, x₂, x₃, x₄), w = (w₁, w₂), b: y₁ = w₁x₁ + w₂x₂ + b, ...

    >>> import numpy as np, convgrad as cg
    >>> x = np.array([[[0.0, 1.0, 2.0, 3.0]]])
    >>> w = np.array([[[1.0, 2.0]]])
    >>> cg.conv(x, w, np.array([0.5]))
    array([[[2.5, 5.5, 8.5]]])
    >>> cg.conv(np.ones((2, 4, 11, 28)), np.ones((6, 2, 3, 2)), groups=2, stride=(2, 1), padding="valid").shape
    (2, 6, 5, 27)
    """
    return _conv("conv", x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm)


def conv1d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", algorithm="auto"):
    """:func:`conv` for x ``(N, C_in, L)`` only.

    >>> import numpy as np, convgrad as cg
    >>> cg.conv1d(np.ones((1, 2, 10)), np.ones((3, 2, 4)), padding="same").shape
    (1, 3, 10)
    """
    return _conv("conv1d", x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, nd=1)


def conv2d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", algorithm="auto"):
    """:func:`conv` for x ``(N, C_in, H, W)`` only.

    >>> import numpy as np, convgrad as cg
    >>> cg.conv2d(np.ones((1, 3, 9, 7)), np.ones((4, 3, 3, 3)), padding=1, padding_mode="reflect").shape
    (1, 4, 9, 7)
    """
    return _conv("conv2d", x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, nd=2)


def conv3d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", algorithm="auto"):
    """:func:`conv` for x ``(N, C_in, D, H, W)`` only.

    >>> import numpy as np, convgrad as cg
    >>> cg.conv3d(np.ones((1, 2, 5, 6, 7)), np.ones((4, 2, 3, 3, 3)), stride=2).shape
    (1, 4, 2, 2, 3)
    """
    return _conv("conv3d", x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, nd=3)


def conv_backward(
    dy, x, weight, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", bias=True, algorithm="auto"
):
    """Gradients of :func:`conv`: ``(dx, dweight, dbias)`` given dy = ∂L/∂y.

    dy ``(N, C_out, *O)``, x ``(N, C_in, *L)``, weight ``(C_out, C_in // groups, *k)``
    -> dx like x, dweight like weight, dbias ``(C_out,)`` (None when ``bias=False``).
    The keywords are those of the forward call. Input elements that no window reaches get zero
    gradient; with ``padding_mode`` other than zeros, an element copied into the padding receives
    the gradient of every copy.

    The notes' 1-D example with dL/dy = (1, 1, 1): dx = (w₁, w₁ + w₂, w₁ + w₂, w₂),
    dw = (x₁ + x₂ + x₃, x₂ + x₃ + x₄), db = 3.

    >>> import numpy as np, convgrad as cg
    >>> x = np.array([[[0.0, 1.0, 2.0, 3.0]]])
    >>> w = np.array([[[1.0, 2.0]]])
    >>> dx, dw, db = cg.conv_backward(np.ones((1, 1, 3)), x, w)
    >>> dx, dw, db
    (array([[[1., 3., 3., 2.]]]), array([[[3., 6.]]]), array([3.]))
    """
    return backward_pass("conv_backward", dy, x, weight, stride, padding, dilation, groups, padding_mode, bias, algorithm)


def backward_pass(fn, dy, x, weight, stride, padding, dilation, groups, padding_mode, bias, algorithm, need_dx=True,
                  allow_object=False, saved=None):
    """:func:`conv_backward`, optionally without dx (None): a network's first layer needs no input gradient.

    ``allow_object``: symbolic arrays (the explain module), which only the naive loops take. ``saved``:
    what the forward kept in the dict it was given (see :func:`_conv`).
    """
    dy = as_array(fn, "dy", dy, allow_object)
    g, x, weight, _ = conv_geometry(
        fn, x, weight, None, stride, padding, dilation, groups, padding_mode, allow_object=allow_object, dtype_of=(dy,)
    )
    need_db = wants_bias(fn, bias, g.out_channels)
    dy = grad_output(fn, dy, g.y_shape, g.dtype)
    dx, dw, db = run_backward(select(fn, algorithm, g), dy, x, weight, g, need_dx, True, need_db, saved)
    return _cast(dx, g.result_dtype), _cast(dw, g.result_dtype), _cast(db, g.result_dtype)


def conv_transpose(
    x, weight, bias=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1, algorithm="auto"
):
    """Transposed convolution (the input gradient of :func:`conv`), as ``torch.nn.functional.conv_transpose*d``.

    x ``(N, C_in, *L)``, weight ``(C_in, C_out // groups, *k)``, bias ``(C_out,)`` or None
    -> y ``(N, C_out, *O)``, per dim
    ``O = (L - 1)*stride - lo - hi + dilation*(k - 1) + output_padding + 1``.
    ``padding`` is an int, one per dim or one ``(lo, hi)`` pair per dim (it crops the full output);
    ``output_padding`` (smaller than stride or dilation) adds rows at the end.

    >>> import numpy as np, convgrad as cg
    >>> cg.conv_transpose(np.array([[[1.0, 2.0]]]), np.array([[[1.0, 10.0, 100.0]]]), stride=2)
    array([[[  1.,  10., 102.,  20., 200.]]])
    >>> cg.conv_transpose(np.ones((1, 4, 5, 6)), np.ones((4, 3, 3, 3)), stride=2, padding=1, output_padding=1).shape
    (1, 3, 10, 12)
    """
    fn = "conv_transpose"
    g, x, weight, bias = transpose_geometry(fn, x, weight, bias, stride, padding, output_padding, dilation, groups)
    y, _, _ = run_backward(select(fn, algorithm, g), x, None, weight, g, True, False, False, None)
    return add_bias(y, bias).astype(g.result_dtype, copy=False)


def conv_transpose_backward(
    dy, x, weight, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1, bias=True, algorithm="auto"
):
    """Gradients of :func:`conv_transpose`: ``(dx, dweight, dbias)`` given dy = ∂L/∂y.

    dy ``(N, C_out, *O)``, x ``(N, C_in, *L)``, weight ``(C_in, C_out // groups, *k)``
    -> dx like x (a forward convolution of dy), dweight like weight, dbias ``(C_out,)`` or None.

    >>> import numpy as np, convgrad as cg
    >>> dx, dw, db = cg.conv_transpose_backward(np.ones((1, 1, 5)), np.array([[[1.0, 2.0]]]),
    ...                                         np.array([[[1.0, 10.0, 100.0]]]), stride=2)
    >>> dx, dw, db
    (array([[[111., 111.]]]), array([[[3., 3., 3.]]]), array([5.]))
    """
    return transpose_backward_pass("conv_transpose_backward", dy, x, weight, stride, padding, output_padding, dilation,
                                   groups, bias, algorithm)


def transpose_backward_pass(fn, dy, x, weight, stride, padding, output_padding, dilation, groups, bias, algorithm,
                            need_dx=True):
    """:func:`conv_transpose_backward`, optionally without dx (None)."""
    dy = as_array(fn, "dy", dy)
    g, x, weight, _ = transpose_geometry(
        fn, x, weight, None, stride, padding, output_padding, dilation, groups, dtype_of=(dy,)
    )
    need_db = wants_bias(fn, bias, g.in_channels)
    dy = grad_output(fn, dy, g.x_shape, g.dtype)
    chosen = select(fn, algorithm, g)
    # the transposed output is the input of the underlying convolution, whose output is x
    dx = run_forward(chosen, dy, weight, None, g, None) if need_dx else None
    _, dw, _ = run_backward(chosen, x, dy, weight, g, False, True, False, None)
    db = bias_grad(dy) if need_db else None
    return _cast(dx, g.result_dtype), _cast(dw, g.result_dtype), _cast(db, g.result_dtype)
