"""Transposed convolution forward and gradients against PyTorch in float64, for every algorithm."""

import numpy as np
import oracle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import ALGORITHMS, GENERAL, Case, examples, supports, transpose_cases

import convgrad as cg
from convgrad.gradcheck import rel_error

TOL = 1e-10


def check_against_torch(case: Case, algorithm: str, seed: int) -> None:
    oracle.check_layer(cg.conv_transpose, cg.conv_transpose_backward, oracle.conv_transpose, case, algorithm, seed, TOL)


@pytest.mark.parametrize("algorithm", ALGORITHMS + ("auto",))
@settings(max_examples=examples(180))
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_conv_transpose_matches_torch(algorithm, data, seed):
    check_against_torch(data.draw(transpose_cases(algorithm=None if algorithm == "auto" else algorithm)), algorithm, seed)


CLASSIC = {
    "upsample x2 2-D": Case((2, 4, 5, 6), (4, 3, 4, 4), True, dict(stride=2, padding=1)),
    "output_padding": Case((1, 4, 5, 6), (4, 3, 3, 3), True, dict(stride=2, padding=1, output_padding=1)),
    "output_padding < dilation only": Case((2, 2, 5), (2, 3, 2), True, dict(stride=1, output_padding=1, dilation=2)),
    "grouped, non-square": Case((2, 6, 4, 7), (6, 2, 3, 2), True, dict(stride=(2, 3), padding=(1, 0), groups=3)),
    "(lo, hi) pairs": Case((1, 2, 6, 5), (2, 2, 3, 3), False, dict(stride=2, padding=((2, 0), (1, 3)))),
    "3-D": Case((1, 2, 3, 4, 2), (2, 4, 2, 3, 2), True, dict(stride=(2, 1, 3), padding=(0, 1, 1), dilation=(1, 2, 1))),
    "1x1": Case((2, 4, 5, 3), (4, 6, 1, 1), True, dict()),
    "1x1, output_padding row no window reads": Case((2, 3, 4), (3, 2, 1), True, dict(output_padding=1, dilation=2)),
    "depthwise": Case((2, 6, 5, 4), (6, 1, 3, 3), True, dict(stride=2, padding=1, groups=6)),
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("name", CLASSIC)
def test_classic_shapes(name, algorithm):
    case = CLASSIC[name]
    case.b_size = case.w_shape[1] * case.kwargs.get("groups", 1)
    if supports(case, algorithm, transposed=True):
        check_against_torch(case, algorithm, seed=len(name))
    else:
        x, w, _ = case.arrays(np.random.default_rng(0))
        with pytest.raises(ValueError, match=f"algorithm='{algorithm}' cannot handle this case"):
            cg.conv_transpose(x, w, algorithm=algorithm, **case.kwargs)


@pytest.mark.parametrize("algorithm", GENERAL)
def test_transpose_is_the_input_gradient_of_conv(algorithm):
    rng = np.random.default_rng(1)
    kw = dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2)
    x, w = rng.normal(size=(2, 4, 9, 13)), rng.normal(size=(6, 2, 3, 3))
    dy = rng.normal(size=cg.conv(x, w, **kw).shape)
    dx, _, _ = cg.conv_backward(dy, x, w, **kw)
    # 9 rows -> 4 -> back to 9; 13 columns -> 5 -> 11, and output_padding 2 restores the 2 unread columns
    y = cg.conv_transpose(dy, w, output_padding=(0, 2), algorithm=algorithm, **kw)
    assert y.shape == x.shape
    assert rel_error(y, dx) < 1e-13
