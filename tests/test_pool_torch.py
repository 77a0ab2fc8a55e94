"""Max and average pooling forward and gradients against PyTorch in float64."""

import numpy as np
import oracle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import examples, pool_cases

import convgrad as cg
from convgrad.gradcheck import rel_error

TOL = 1e-10


@settings(max_examples=examples(300))
@given(case=pool_cases("max"), seed=st.integers(0, 2**32 - 1), ties=st.booleans())
def test_max_pool_matches_torch(case, seed, ties):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=case.x_shape)
    if ties:  # few distinct values: many windows with tied maxima, the case that needs a rule
        x = np.round(x)
    y = cg.max_pool(x, **case.kwargs)
    dy = rng.normal(size=y.shape)
    ref_y, ref_dx = oracle.max_pool(x, dy, **case.kwargs)
    oracle.assert_matches(y, ref_y, TOL)
    oracle.assert_matches(cg.max_pool_backward(dy, x, **case.kwargs), ref_dx, TOL)


@settings(max_examples=examples(300))
@given(case=pool_cases("avg"), seed=st.integers(0, 2**32 - 1))
def test_avg_pool_matches_torch(case, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=case.x_shape)
    y = cg.avg_pool(x, **case.kwargs)
    dy = rng.normal(size=y.shape)
    ref_y, ref_dx = oracle.avg_pool(x, dy, **case.kwargs)
    assert y.shape == ref_y.shape and rel_error(y, ref_y) < TOL
    dx = cg.avg_pool_backward(dy, x, **case.kwargs)
    assert dx.shape == x.shape and rel_error(dx, ref_dx) < TOL


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool_nan_and_inf_as_torch(nd):
    rng = np.random.default_rng(nd)
    x = rng.normal(size=(2, 3) + (7,) * nd)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, flat.size // 6, replace=False)] = np.nan
    flat[rng.choice(flat.size, flat.size // 6, replace=False)] = -np.inf
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    y = cg.max_pool(x, **kw)
    dy = rng.normal(size=y.shape)
    ref_y, ref_dx = oracle.max_pool(x, dy, **kw)
    oracle.assert_matches(y, ref_y, 0.0 + 1e-300)
    oracle.assert_matches(cg.max_pool_backward(dy, x, **kw), ref_dx, TOL)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool_tiling_windows_ties_nan_and_inf_as_torch(nd):
    """Windows that tile x exactly (stride = kernel, no padding: LeNet's pools) are copied window-first;
    ties, NaN and -inf still go to the element PyTorch picks, in float32 as in float64."""
    rng = np.random.default_rng(10 + nd)
    kernel = (2, 3, 2)[:nd]
    x = np.round(rng.normal(size=(2, 3) + tuple(2 * k for k in kernel)))  # many tied maxima
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, flat.size // 8, replace=False)] = np.nan
    flat[rng.choice(flat.size, flat.size // 8, replace=False)] = -np.inf
    for dtype in (np.float64, np.float32):
        y = cg.max_pool(x.astype(dtype), kernel)
        dy = rng.normal(size=y.shape)
        ref_y, ref_dx = oracle.max_pool(x, dy, kernel_size=kernel)
        assert y.dtype == dtype
        oracle.assert_matches(y, ref_y, 0.0 + 1e-300)
        oracle.assert_matches(cg.max_pool_backward(dy.astype(dtype), x.astype(dtype), kernel), ref_dx, 1e-6)


def test_max_pool_all_minus_inf_window_keeps_its_first_input_element():
    x = np.full((1, 1, 5), -np.inf)
    dx = cg.max_pool_backward(np.array([[[1.0, 2.0, 4.0]]]), x, 3, stride=2, padding=1)
    # windows [-1, 0, 1], [1, 2, 3], [3, 4, 5]: padding is never chosen, the first input element is
    np.testing.assert_array_equal(dx, [[[1.0, 2.0, 0.0, 4.0, 0.0]]])
    _, ref_dx = oracle.max_pool(x, np.array([[[1.0, 2.0, 4.0]]]), kernel_size=3, stride=2, padding=1)
    np.testing.assert_array_equal(dx, ref_dx)


def test_avg_pool_ceil_mode_divisor_excludes_the_overhang():
    x = np.arange(6.0).reshape(1, 1, 6)
    y = cg.avg_pool(x, 3, stride=2, padding=1, ceil_mode=True)
    # the last window starts at 5 and covers 5, the padding 6 and the overhang 7: divisor 2
    np.testing.assert_allclose(y, [[[1 / 3, 2.0, 4.0, 2.5]]])


def test_max_pool_window_of_padding_only():
    # L = 1, kernel 2, dilation 2, padding 1: the only window reads positions -1 and 1, both padding.
    # Its maximum is -inf (PyTorch gives -inf too) and no input element receives its gradient.
    x = np.array([[[3.0]]])
    np.testing.assert_array_equal(cg.max_pool(x, 2, padding=1, dilation=2), [[[-np.inf]]])
    np.testing.assert_array_equal(cg.max_pool_backward(np.array([[[5.0]]]), x, 2, padding=1, dilation=2), [[[0.0]]])
