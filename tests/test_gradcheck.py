"""Every analytic gradient against central differences in float64, with random upstream gradients."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import ALGORITHMS, conv_cases, examples, pool_cases, transpose_cases

import convgrad as cg
from convgrad.gradcheck import numerical_gradient, rel_error

TOL = 1e-8


def test_numerical_gradient_of_a_known_function():
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    numeric = numerical_gradient(lambda x: np.sin(x) * x, x, dy)
    assert rel_error(numeric, (np.cos(x) * x + np.sin(x)) * dy) < 1e-8


def test_numerical_gradient_leaves_its_input_alone_and_checks_shapes():
    x = np.array([1.0, 2.0])
    numerical_gradient(lambda x: x**2, x, np.ones(2))
    np.testing.assert_array_equal(x, [1.0, 2.0])
    with pytest.raises(ValueError, match="dy"):
        numerical_gradient(lambda x: x.sum(), x, np.ones(2))
    with pytest.raises(ValueError, match="h"):
        numerical_gradient(lambda x: x, x, np.ones(2), h=0)


def test_rel_error():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0
    assert rel_error(np.array([1.0, -3.0]), np.array([1.0, -1.0])) == pytest.approx(2 / 4)  # max difference 2, largest |a| + |b| 4
    assert rel_error(np.array([0.0]), np.array([1e-12])) == pytest.approx(1e-4)  # the 1e-8 floor
    with pytest.raises(ValueError, match="shape"):
        rel_error(np.zeros(2), np.zeros(3))


def _check(analytic, f, at, dy):
    # central differences carry the rounding of f (1e-16 of the size of its terms, summed over the
    # dy-weighted outputs) divided by the step (1e-5): a floor of 1e-10 times the size of f·dy, or of
    # dy where the outputs are near zero but their terms are not (FFT's rounding of an output of
    # order 1 is not: a 3-D case whose true gradient is exactly zero gave 1.3e-10), decides where the
    # gradient is tiny (a 1-element case with a gradient of 6e-5 missed the relative bound by 7e-12)
    # or exactly zero
    numeric = numerical_gradient(f, at, dy)
    floor = 1e-10 * max(1.0, float(np.abs(f(at) * dy).sum()), float(np.abs(dy).sum()))
    assert rel_error(analytic, numeric) < TOL or np.abs(analytic - numeric).max() < floor


def _check_layer(forward, backward, case, algorithm, seed):
    """dx, dw and db of a convolution-like layer against central differences (bias always present)."""
    rng = np.random.default_rng(seed)
    x, w, _ = case.arrays(rng)
    b = rng.normal(size=case.b_size)
    kw = dict(case.kwargs, algorithm=algorithm)
    dy = rng.normal(size=forward(x, w, b, **kw).shape)
    dx, dw, db = backward(dy, x, w, **kw)
    _check(dx, lambda x_: forward(x_, w, b, **kw), x, dy)
    _check(dw, lambda w_: forward(x, w_, b, **kw), w, dy)
    _check(db, lambda b_: forward(x, w, b_, **kw), b, dy)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=examples(60))
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_conv_gradients_numerically(algorithm, data, seed):
    case = data.draw(conv_cases(max_extra=2, algorithm=algorithm))
    _check_layer(cg.conv, cg.conv_backward, case, algorithm, seed)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=examples(60))
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_conv_transpose_gradients_numerically(algorithm, data, seed):
    case = data.draw(transpose_cases(nds=(1, 2), algorithm=algorithm))
    _check_layer(cg.conv_transpose, cg.conv_transpose_backward, case, algorithm, seed)


def _distinct(rng, shape):
    """Values at least 0.01 apart, so that a ±1e-5 step never changes which element is a maximum."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.01 + rng.uniform(0, 1e-3, size=shape)


@settings(max_examples=examples(120))
@given(case=pool_cases("max"), seed=st.integers(0, 2**32 - 1))
def test_max_pool_gradient_numerically(case, seed):
    rng = np.random.default_rng(seed)
    x = _distinct(rng, case.x_shape)
    dy = rng.normal(size=cg.max_pool(x, **case.kwargs).shape)
    _check(cg.max_pool_backward(dy, x, **case.kwargs), lambda x_: cg.max_pool(x_, **case.kwargs), x, dy)


@settings(max_examples=examples(120))
@given(case=pool_cases("avg"), seed=st.integers(0, 2**32 - 1))
def test_avg_pool_gradient_numerically(case, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=case.x_shape)
    dy = rng.normal(size=cg.avg_pool(x, **case.kwargs).shape)
    _check(cg.avg_pool_backward(dy, x, **case.kwargs), lambda x_: cg.avg_pool(x_, **case.kwargs), x, dy)
