"""The course notes' worked examples (SEED-NOTES.md), entry by entry, with their slips corrected.

1-D: x = (x1, x2, x3, x4), w = (w1, w2), bias b, stride 1, no padding; y has 3 entries.
2-D: x 4×4, w 2×2, no padding, stride 1; y is 3×3.
Indices below are the notes' 1-based ones, translated to 0-based arrays by subtracting 1.
"""

import numpy as np
import pytest
from strategies import GENERAL as ALGORITHMS  # the notes' examples: the algorithms that take every case

import convgrad as cg
from convgrad.gradcheck import rel_error


@pytest.fixture
def one_d():
    rng = np.random.default_rng(147)
    x, w, b, dy = rng.normal(size=4), rng.normal(size=2), rng.normal(), rng.normal(size=3)
    return x, w, b, dy


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_1d_forward(one_d, algorithm):
    (x1, x2, x3, x4), (w1, w2), b, _ = one_d
    y = cg.conv(np.array(one_d[0])[None, None], one_d[1][None, None], np.array([b]), algorithm=algorithm)[0, 0]
    np.testing.assert_allclose(y, [w1 * x1 + w2 * x2 + b, w1 * x2 + w2 * x3 + b, w1 * x3 + w2 * x4 + b], rtol=1e-14)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_1d_backward_entry_by_entry(one_d, algorithm):
    x, w, b, dy = one_d
    (x1, x2, x3, x4), (w1, w2), (dy1, dy2, dy3) = x, w, dy
    dx, dw, db = cg.conv_backward(dy[None, None], x[None, None], w[None, None], algorithm=algorithm)
    assert db[0] == pytest.approx(dy1 + dy2 + dy3, rel=1e-14)  # db = Σ dL/dy_j
    np.testing.assert_allclose(dw[0, 0], [x1 * dy1 + x2 * dy2 + x3 * dy3,   # dw1
                                          x2 * dy1 + x3 * dy2 + x4 * dy3],  # dw2
                               rtol=1e-14)
    np.testing.assert_allclose(dx[0, 0], [w1 * dy1,               # dx1
                                          w2 * dy1 + w1 * dy2,    # dx2 = ∂y1/∂x2·dy1 + ∂y2/∂x2·dy2
                                          w2 * dy2 + w1 * dy3,    # dx3 (the notes write w3 for w1)
                                          w2 * dy3],              # dx4 (the notes write w3 for w2)
                               rtol=1e-14)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_1d_matrix_and_vector_forms(one_d, algorithm):
    x, w, _, dy = one_d
    (x1, x2, x3, x4), (w1, w2) = x, w
    dx, dw, _ = cg.conv_backward(dy[None, None], x[None, None], w[None, None], algorithm=algorithm)
    dy_dw = np.array([[x1, x2], [x2, x3], [x3, x4]])             # ∂y/∂w, 3×2
    dy_dx = np.array([[w1, w2, 0, 0], [0, w1, w2, 0], [0, 0, w1, w2]])  # ∂y/∂x, 3×4
    np.testing.assert_allclose(dw[0, 0], dy_dw.T @ dy, rtol=1e-14)
    np.testing.assert_allclose(dx[0, 0], dy_dx.T @ dy, rtol=1e-14)
    # dx = [0, dy1, dy2, dy3, 0] * [w2, w1], * sliding without flipping (the notes drop the leading 0)
    np.testing.assert_allclose(dx[0, 0], np.correlate(np.pad(dy, 1), w[::-1], "valid"), rtol=1e-14)


@pytest.fixture
def two_d():
    rng = np.random.default_rng(247)
    return rng.normal(size=(4, 4)), rng.normal(size=(2, 2)), rng.normal(), rng.normal(size=(3, 3))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_2d_forward_equations(two_d, algorithm):
    x, w, b, _ = two_d
    y = cg.conv(x[None, None], w[None, None], np.array([b]), algorithm=algorithm)[0, 0]
    # y_ij = Σ_k Σ_l w_kl · x_{i+k-1, j+l-1} + b
    expected = [[sum(w[k, l] * x[i + k, j + l] for k in range(2) for l in range(2)) + b for j in range(3)] for i in range(3)]
    np.testing.assert_allclose(y, expected, rtol=1e-14)
    assert y[0, 0] == pytest.approx(w[0, 0] * x[0, 0] + w[0, 1] * x[0, 1] + w[1, 0] * x[1, 0] + w[1, 1] * x[1, 1] + b)
    assert y[0, 1] == pytest.approx(w[0, 0] * x[0, 1] + w[0, 1] * x[0, 2] + w[1, 0] * x[1, 1] + w[1, 1] * x[1, 2] + b)
    assert y[1, 0] == pytest.approx(w[0, 0] * x[1, 0] + w[0, 1] * x[1, 1] + w[1, 0] * x[2, 0] + w[1, 1] * x[2, 1] + b)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_2d_backward_as_forward_convolutions(two_d, algorithm):
    x, w, _, dy = two_d
    dx, dw, db = cg.conv_backward(dy[None, None], x[None, None], w[None, None], algorithm=algorithm)
    assert db[0] == pytest.approx(dy.sum(), rel=1e-14)
    # dW_mn = Σ_ij dy_ij · x_{i+m-1, j+n-1}, e.g. the notes' dw12
    dw12 = sum(x[i, j + 1] * dy[i, j] for i in range(3) for j in range(3))
    assert dw[0, 0, 0, 1] == pytest.approx(dw12, rel=1e-14)
    # dW = x ⋆ dy: the input correlated with the upstream gradient, by conv itself
    assert rel_error(dw[0, 0], cg.conv(x[None, None], dy[None, None])[0, 0]) < 1e-14
    # dx = pad(dy) ∗ rot180(W), dy zero-padded by k - 1 = 1 on every side
    padded = np.pad(dy, 1)
    assert padded.shape == (5, 5)
    assert rel_error(dx[0, 0], cg.conv(padded[None, None], w[::-1, ::-1][None, None])[0, 0]) < 1e-14
    # dx_mn = Σ_ij W_{m-i+1, n-j+1} · dy_ij over the (i, j) where the kernel index is valid
    dx_loop = [[sum(w[m - i, n - j] * dy[i, j] for i in range(3) for j in range(3) if 0 <= m - i < 2 and 0 <= n - j < 2)
                for n in range(4)] for m in range(4)]
    np.testing.assert_allclose(dx[0, 0], dx_loop, rtol=1e-13)
