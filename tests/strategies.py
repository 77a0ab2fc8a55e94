"""Hypothesis strategies for convolution and pooling configurations.

They cover every option (padding forms and modes, stride, dilation, groups including depthwise,
bias or none, 1-3 spatial dims) with non-square shapes, batch of 1, and sizes where the stride does
not divide the span. The padding pairs a case expects are computed here, independently of convgrad.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st


def examples(n: int) -> int:
    """``n`` hypothesis examples, times ``CONVGRAD_TEST_SCALE`` (default 1) for longer local runs."""
    return max(1, int(n * float(os.environ.get("CONVGRAD_TEST_SCALE", "1"))))


MODES = ("zeros", "reflect", "replicate", "circular")
GENERAL = ("naive", "gemm", "as_forward")  # handle every configuration, symbols included
ALGORITHMS = GENERAL + ("fft", "pointwise", "depthwise")  # the last two: 1x1 and depthwise convolutions only


@dataclass
class Case:
    """One configuration: input and weight shapes, whether there is a bias, the keyword arguments."""

    x_shape: tuple
    w_shape: tuple
    bias: bool
    kwargs: dict = field(default_factory=dict)
    b_size: int = 0
    pairs: list = field(default_factory=list)  # the (lo, hi) padding per dim the arguments mean

    def arrays(self, rng: np.random.Generator):
        x = rng.normal(size=self.x_shape)
        w = rng.normal(size=self.w_shape)
        b = rng.normal(size=self.b_size) if self.bias else None
        return x, w, b


def _ints(draw, nd, lo, hi):
    return [draw(st.integers(lo, hi)) for _ in range(nd)]


def _as_arg(draw, values):
    """An int when every dim agrees (sometimes), else a tuple: both spellings get exercised."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return tuple(values)


def supports(case, algorithm: str, transposed: bool = False) -> bool:
    """Whether convgrad's ``algorithm`` takes this configuration (the others refuse it by name)."""
    from convgrad._args import conv_geometry, transpose_geometry
    from convgrad.conv.dispatch import ALGORITHMS as REGISTRY

    if algorithm == "auto":
        return True
    x, w = np.zeros(case.x_shape), np.zeros(case.w_shape)
    if transposed:
        options = {"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1, **case.kwargs}
        g = transpose_geometry("t", x, w, None, *(options[k] for k in ("stride", "padding", "output_padding",
                                                                       "dilation", "groups")))[0]
    else:
        options = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "padding_mode": "zeros", **case.kwargs}
        g = conv_geometry("c", x, w, None, *(options[k] for k in ("stride", "padding", "dilation", "groups",
                                                                   "padding_mode")))[0]
    return REGISTRY[algorithm].supports(g) is None


def _channels(draw, layout=None):
    """(groups, C_in // groups, C_out // groups): plain, grouped or depthwise (C_in/G = 1)."""
    layout = layout or draw(st.sampled_from(["plain", "grouped", "depthwise"]))
    if layout == "plain":
        return 1, draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if layout == "grouped":
        return draw(st.integers(2, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    return draw(st.integers(2, 4)), 1, draw(st.integers(1, 2))


def _padding(draw, nd, kernel, dilation, allow_strings=True):
    """(padding argument, [(lo, hi)] pairs it means, whether it forces stride 1)."""
    forms = ["int", "per_dim", "pairs"] + (["valid", "same"] if allow_strings else [])
    form = draw(st.sampled_from(forms))
    if form == "int":
        p = draw(st.integers(0, 2))
        return p, [(p, p)] * nd, False
    if form == "per_dim":
        ps = _ints(draw, nd, 0, 2)
        return tuple(ps), [(p, p) for p in ps], False
    if form == "pairs":
        pairs = [(draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd)]
        return tuple(pairs), pairs, False
    if form == "valid":
        return "valid", [(0, 0)] * nd, False
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return "same", [(t // 2, t - t // 2) for t in totals], True


def _min_length(lo, hi, k, d, mode):
    need = max(1, d * (k - 1) + 1 - lo - hi)
    if mode == "reflect":
        need = max(need, max(lo, hi) + 1)
    if mode == "circular":
        need = max(need, lo, hi)
    return need


@st.composite
def conv_cases(draw, nds=(1, 2, 3), modes=MODES, max_extra=4, algorithm=None):
    """Convolution configurations; ``algorithm="pointwise"`` or ``"depthwise"`` draws only what it takes."""
    nd = draw(st.sampled_from(nds))
    groups, cig, cog = _channels(draw, {"pointwise": "plain", "depthwise": "depthwise"}.get(algorithm))
    pointwise = algorithm == "pointwise"
    kernel = [1] * nd if pointwise else _ints(draw, nd, 1, 3 if nd < 3 else 2)
    dilation = _ints(draw, nd, 1, 2)
    padding, pairs, stride_one = (0, [(0, 0)] * nd, True) if pointwise else _padding(draw, nd, kernel, dilation)
    stride = [1] * nd if stride_one else _ints(draw, nd, 1, 3)
    mode = draw(st.sampled_from(modes))
    extra = max_extra if nd < 3 else 2
    lengths = [
        _min_length(lo, hi, k, d, mode) + draw(st.integers(0, extra + s))
        for (lo, hi), k, d, s in zip(pairs, kernel, dilation, stride)
    ]
    batch = draw(st.integers(1, 2))
    kwargs = dict(
        stride=_as_arg(draw, stride), padding=padding, dilation=_as_arg(draw, dilation), groups=groups,
        padding_mode=mode,
    )
    return Case(
        (batch, groups * cig, *lengths), (groups * cog, cig, *kernel), draw(st.booleans()), kwargs, groups * cog, pairs
    )


@st.composite
def transpose_cases(draw, nds=(1, 2, 3), algorithm=None):
    """Transposed-convolution configurations; for "pointwise"/"depthwise" only what the underlying
    convolution (C_out -> C_in) lets that algorithm take."""
    nd = draw(st.sampled_from(nds))
    groups, cig, cog = _channels(draw, {"pointwise": "plain", "depthwise": "grouped"}.get(algorithm))
    if algorithm == "depthwise":
        cog = 1  # the underlying convolution's input has one channel per group
    pointwise = algorithm == "pointwise"
    kernel = [1] * nd if pointwise else _ints(draw, nd, 1, 3 if nd < 3 else 2)
    dilation = _ints(draw, nd, 1, 2)
    stride = [1] * nd if pointwise else _ints(draw, nd, 1, 3)
    padding, pairs, _ = (0, [(0, 0)] * nd, None) if pointwise else _padding(draw, nd, kernel, dilation, allow_strings=False)
    output_padding = [0 if pointwise else draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
    lengths = []
    for (lo, hi), k, s, d, op in zip(pairs, kernel, stride, dilation, output_padding):
        # output (L-1)s - lo - hi + d(k-1) + op + 1 must be >= 1
        need = 1
        while (need - 1) * s - lo - hi + d * (k - 1) + op + 1 < 1:
            need += 1
        lengths.append(need + draw(st.integers(0, 3 if nd < 3 else 1)))
    kwargs = dict(
        stride=_as_arg(draw, stride), padding=padding, output_padding=_as_arg(draw, output_padding),
        dilation=_as_arg(draw, dilation), groups=groups,
    )
    batch = draw(st.integers(1, 2))
    return Case(
        (batch, groups * cig, *lengths), (groups * cig, cog, *kernel), draw(st.booleans()), kwargs, groups * cog
    )


def _every_window_meets_input(n, k, s, p, d):
    """False when, with dilation, some max-pool window holds padding only.

    PyTorch returns an index outside the input for such a window, and its max_pool3d backward then
    writes outside its buffer (a heap corruption seen with torch 2.13), so these cases cannot go to
    the oracle; tests/test_pool_torch.py checks convgrad's answer for them on its own.
    """
    span = n + 2 * p - d * (k - 1) - 1
    for ceil in (False, True):
        out = -(-span // s) + 1 if ceil else span // s + 1
        if ceil and (out - 1) * s >= n + p:
            out -= 1
        for o in range(out):
            if not any(0 <= o * s - p + j * d < n for j in range(k)):
                return False
    return True


@st.composite
def pool_cases(draw, kind, nds=(1, 2, 3)):
    nd = draw(st.sampled_from(nds))
    kernel = _ints(draw, nd, 1, 3)
    stride = None if draw(st.booleans()) else _as_arg(draw, _ints(draw, nd, 1, 3))
    padding = [draw(st.integers(0, k // 2)) for k in kernel]
    dilation = _ints(draw, nd, 1, 2) if kind == "max" else [1] * nd
    strides = kernel if stride is None else ([stride] * nd if isinstance(stride, int) else list(stride))
    # PyTorch's avg_pool3d alone refuses an input smaller than the kernel, padding or not
    smallest = [k if (kind, nd) == ("avg", 3) else 1 for k in kernel]
    lengths = [
        max(m, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, (4 if nd < 3 else 2) + s))
        for m, k, p, d, s in zip(smallest, kernel, padding, dilation, strides)
    ]
    assume(kind == "avg" or all(map(_every_window_meets_input, lengths, kernel, strides, padding, dilation)))
    kwargs = dict(kernel_size=_as_arg(draw, kernel), stride=stride, padding=_as_arg(draw, padding),
                  ceil_mode=draw(st.booleans()))
    if kind == "max":
        kwargs["dilation"] = _as_arg(draw, dilation)
    else:
        kwargs["count_include_pad"] = draw(st.booleans())
    return Case((draw(st.integers(1, 2)), draw(st.integers(1, 3)), *lengths), (), False, kwargs)
