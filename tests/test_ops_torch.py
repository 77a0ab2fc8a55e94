"""The non-convolution ops against PyTorch in float64, and against central differences."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convgrad import ops
from convgrad.gradcheck import numerical_gradient, rel_error

TOL = 1e-10


def _t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(shape, bias, rng):
    x, w, b = rng.normal(size=shape), rng.normal(size=(4, 7)), rng.normal(size=4) if bias else None
    dy = rng.normal(size=shape[:-1] + (4,))
    xt, wt, bt = _t(x), _t(w), _t(b) if bias else None
    yt = F.linear(xt, wt, bt)
    yt.backward(torch.tensor(dy))
    assert rel_error(ops.linear(x, w, b), yt.detach().numpy()) < TOL
    dx, dw, db = ops.linear_backward(dy, x, w, bias=bias)
    assert rel_error(dx, xt.grad.numpy()) < TOL and rel_error(dw, wt.grad.numpy()) < TOL
    assert (db is None) if not bias else rel_error(db, bt.grad.numpy()) < TOL


ACTIVATIONS = [
    (ops.relu, ops.relu_backward, F.relu),
    (lambda x: ops.leaky_relu(x, 0.2), lambda dy, x: ops.leaky_relu_backward(dy, x, 0.2), lambda t: F.leaky_relu(t, 0.2)),
]


@pytest.mark.parametrize("op, back, ref", ACTIVATIONS)
def test_activations(op, back, ref, rng):
    x = rng.normal(size=(3, 4, 5))
    x[0, 0, :2] = 0.0  # the kink: PyTorch's gradient there is 0 (relu) or the slope (leaky)
    x[1, 1, :2] = [np.nan, -np.nan]  # not ≤ 0: PyTorch passes dy (relu) or slope·dy (leaky)
    dy = rng.normal(size=x.shape)
    xt = _t(x)
    yt = ref(xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(op(x), yt.detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(back(dy, x), xt.grad.numpy(), rtol=1e-14)


@pytest.mark.parametrize("shape, transposed", [((2, 8192), False), ((3, 5000), False), ((3, 5000), True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_relu_large(shape, transposed, dtype, rng):
    """ReLU compares a contiguous array with blocks of zeros (``ZERO_BLOCK``: whole blocks, a rest, and
    a transposed array that takes the plain path), with NaN, ±0 and infinities spread over every block,
    against PyTorch in the same dtype."""
    x = rng.normal(size=shape).astype(dtype)
    for start, value in enumerate([np.nan, -0.0, 0.0, np.inf, -np.inf]):
        x.reshape(-1)[start::997] = value
    x = x.T if transposed else x
    y = ops.relu(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, F.relu(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize("slope", [0.2, 1.0, 1.5, -0.3, 0.0, float("inf")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leaky_relu_slopes(slope, dtype, rng):
    """``max(x, slope·x)`` (``min`` above 1) against PyTorch in the same dtype for every kind of slope,
    with NaN, zero and infinities."""
    x = rng.normal(size=(4, 300)).astype(dtype)
    x[0, :4] = [np.nan, 0.0, np.inf, -np.inf]
    y = ops.leaky_relu(x, slope)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, F.leaky_relu(torch.from_numpy(x), slope).numpy())


def test_flatten_round_trip(rng):
    x = rng.normal(size=(2, 3, 4, 5))
    assert np.array_equal(ops.flatten(x), torch.flatten(torch.tensor(x), 1).numpy())
    assert ops.flatten(x, 0, 1).shape == (6, 4, 5) and ops.flatten(x, -2).shape == (2, 3, 20)
    assert np.array_equal(ops.flatten_backward(ops.flatten(x), x.shape), x)
    with pytest.raises(ValueError, match="start_dim"):
        ops.flatten(x, 2, 1)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm(shape, training, affine, rng):
    x, dy = rng.normal(size=shape) * 2 + 1, rng.normal(size=shape)
    w, b = (rng.normal(size=3), rng.normal(size=3)) if affine else (None, None)
    rm, rv = rng.normal(size=3), rng.uniform(0.5, 2, size=3)
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    xt, wt, bt = _t(x), _t(w) if affine else None, _t(b) if affine else None
    yt = F.batch_norm(xt, rm_t, rv_t, wt, bt, training=training, momentum=0.1, eps=1e-5)
    yt.backward(torch.tensor(dy))
    rm0, rv0 = rm.copy(), rv.copy()
    y = ops.batch_norm(x, w, b, rm, rv, training=training, momentum=0.1, eps=1e-5)
    assert rel_error(y, yt.detach().numpy()) < TOL
    assert rel_error(rm, rm_t.numpy()) < TOL and rel_error(rv, rv_t.numpy()) < TOL  # running stats, unbiased var
    dx, dw, db = ops.batch_norm_backward(dy, x, w, rm0, rv0, training=training, eps=1e-5)
    assert rel_error(dx, xt.grad.numpy()) < TOL
    if affine:
        assert rel_error(dw, wt.grad.numpy()) < TOL and rel_error(db, bt.grad.numpy()) < TOL
    else:
        assert dw is None and db is None


@pytest.mark.parametrize("offset", [50, 10_000])
def test_batch_norm_float32_over_many_values_stays_accurate(offset, rng):
    """float32 statistics over 2^18 values per channel whose mean is 50 or 10⁴ times their spread,
    against PyTorch in float64 on the same float32 inputs: the corrected two-pass statistics keep y and
    dx within 1.5e-7, dweight and dbias within 2e-6 (measured here: at most 6.5e-8 and 9.5e-7; PyTorch's
    own float32: 6.1e-6 and 7e-4 at 10⁴. A plain two-pass mean gave dweight 2.3e-5 at 50; dropping δ
    from dx gave dx 2.1e-7 at 10⁴)."""
    x = (rng.normal(size=(256, 4, 32, 32)) + offset).astype(np.float32)
    dy, w, b = rng.normal(size=x.shape).astype(np.float32), rng.normal(size=4), rng.normal(size=4)
    w, b = w.astype(np.float32), b.astype(np.float32)
    xt, wt, bt = _t(x.astype(np.float64)), _t(w.astype(np.float64)), _t(b.astype(np.float64))
    yt = F.batch_norm(xt, None, None, wt, bt, training=True)
    yt.backward(torch.tensor(dy, dtype=torch.float64))
    y = ops.batch_norm(x, w, b)
    dx, dw, db = ops.batch_norm_backward(dy, x, w)
    assert y.dtype == dx.dtype == np.float32
    assert rel_error(y, yt.detach().numpy()) < 1.5e-7 and rel_error(dx, xt.grad.numpy()) < 1.5e-7
    assert rel_error(dw, wt.grad.numpy()) < 2e-6 and rel_error(db, bt.grad.numpy()) < 2e-6


def test_batch_norm_of_a_strided_view_matches_a_copy(rng):
    """x and dy as non-contiguous views (channels not adjacent in memory) give the contiguous results (up
    to the order of the sums)."""
    base, dbase = rng.normal(size=(5, 6, 4, 3)), rng.normal(size=(5, 6, 4, 3))
    x, dy = base.transpose(0, 3, 1, 2), dbase.transpose(0, 3, 1, 2)  # (5, 3, 6, 4)
    w, b = rng.normal(size=3), rng.normal(size=3)
    assert rel_error(ops.batch_norm(x, w, b), ops.batch_norm(np.ascontiguousarray(x), w, b)) < 1e-14
    got = ops.batch_norm_backward(dy, x, w)
    want = ops.batch_norm_backward(np.ascontiguousarray(dy), np.ascontiguousarray(x), w)
    assert all(rel_error(g, v) < 1e-14 for g, v in zip(got, want))  # the same up to the order of the sums


def test_batch_norm_constants_as_rows_or_columns_agree(rng, monkeypatch):
    """Per-channel constants broadcast as (C, S) rows (small planes) or as (C, 1) (past ROW_ELEMENTS):
    the same element-wise arithmetic, bit for bit, training and evaluation."""
    from convgrad.ops import norm

    x, dy = rng.normal(size=(4, 3, 5, 6)) * 2 + 1, rng.normal(size=(4, 3, 5, 6))
    w, b, rm, rv = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, size=3)
    for training in (True, False):
        def run():
            y = ops.batch_norm(x, w, b, rm.copy(), rv.copy(), training=training)
            return (y,) + tuple(ops.batch_norm_backward(dy, x, w, rm, rv, training=training))

        rows = run()
        monkeypatch.setattr(norm, "ROW_ELEMENTS", 1)
        columns = run()
        monkeypatch.undo()
        assert all(np.array_equal(r, c) for r, c in zip(rows, columns))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float64, np.float64), (np.float32, np.float64)])
def test_batch_norm_backward_reuses_the_forwards_statistics(training, dtypes, rng):
    """A module's backward reuses its forward's statistics (three passes fewer): the same results as
    recomputing them, bit for bit; statistics in another dtype than the backward's (dy float64 against
    a float32 forward) are recomputed."""
    from convgrad.ops import norm

    x = (rng.normal(size=(4, 3, 5, 6)) * 2 + 1).astype(dtypes[0])
    dy = rng.normal(size=x.shape).astype(dtypes[1])
    w, b, rm, rv = (a.astype(dtypes[0]) for a in (rng.normal(size=3), rng.normal(size=3), rng.normal(size=3),
                                                   rng.uniform(0.5, 2, size=3)))
    y, statistics = norm.forward_with_statistics(x, w, b, rm.copy(), rv.copy(), training, 0.1, 1e-5)
    assert statistics[2].dtype == dtypes[0]
    assert np.array_equal(y, ops.batch_norm(x, w, b, rm.copy(), rv.copy(), training=training))
    reused = norm.backward_with_statistics(dy, x, w, rm, rv, training, 1e-5, statistics)
    recomputed = ops.batch_norm_backward(dy, x, w, rm, rv, training=training)
    assert all(np.array_equal(r, c) for r, c in zip(reused, recomputed))


def test_batch_norm_gradient_numerically(rng):
    x, w, b, dy = rng.normal(size=(3, 2, 4)), rng.normal(size=2), rng.normal(size=2), rng.normal(size=(3, 2, 4))
    dx, dw, db = ops.batch_norm_backward(dy, x, w)
    assert rel_error(dx, numerical_gradient(lambda v: ops.batch_norm(v, w, b), x, dy)) < 1e-8
    assert rel_error(dw, numerical_gradient(lambda v: ops.batch_norm(x, v, b), w, dy)) < 1e-8
    assert rel_error(db, numerical_gradient(lambda v: ops.batch_norm(x, w, v), b, dy)) < 1e-8


def test_batch_norm_needs_more_than_one_value_per_channel():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ops.batch_norm(np.ones((1, 3)), training=True)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 6)])
def test_cross_entropy(smoothing, shape, rng):
    logits = rng.normal(size=shape) * 3
    labels = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
    lt = _t(logits)
    loss_t = F.cross_entropy(lt, torch.tensor(labels), label_smoothing=smoothing)
    loss_t.backward()
    assert abs(ops.cross_entropy(logits, labels, smoothing) - loss_t.item()) < 1e-12
    assert rel_error(ops.cross_entropy_backward(logits, labels, smoothing), lt.grad.numpy()) < TOL


def test_cross_entropy_is_stable_for_large_logits():
    logits = np.array([[1000.0, 0.0], [0.0, -1000.0]])
    assert ops.cross_entropy(logits, np.array([0, 1])) == pytest.approx(500.0)
    assert np.isfinite(ops.cross_entropy_backward(logits, np.array([0, 1]))).all()


@pytest.mark.parametrize("labels, error", [(np.array([0, 5]), ValueError), (np.array([0.0, 1.0]), TypeError),
                                           (np.array([0]), ValueError)])
def test_cross_entropy_label_errors(labels, error):
    with pytest.raises(error, match="labels"):
        ops.cross_entropy(np.zeros((2, 5)), labels)


def test_mse(rng):
    p, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    pt = _t(p)
    loss = F.mse_loss(pt, torch.tensor(t))
    loss.backward()
    assert abs(ops.mse(p, t) - loss.item()) < 1e-13
    assert rel_error(ops.mse_backward(p, t), pt.grad.numpy()) < TOL


def test_dropout(rng):
    x = rng.normal(size=(200, 50))
    y, mask = ops.dropout(x, 0.3, rng=np.random.default_rng(5))
    kept = mask != 0
    assert abs(kept.mean() - 0.7) < 0.01                      # each element kept with probability 1 - p
    np.testing.assert_allclose(y[kept], x[kept] / 0.7)       # inverted: kept elements scaled by 1/(1-p)
    assert np.all(y[~kept] == 0)
    y2, _ = ops.dropout(x, 0.3, rng=np.random.default_rng(5))
    assert np.array_equal(y, y2)                              # the same seed gives the same mask
    dy = rng.normal(size=x.shape)
    np.testing.assert_allclose(ops.dropout_backward(dy, mask), np.where(kept, dy / 0.7, 0))
    assert ops.dropout(x, 0.3, training=False)[1] is None and ops.dropout(x, 0.0)[1] is None
    assert np.all(ops.dropout(x, 1.0)[0] == 0)
    with pytest.raises(ValueError, match="p"):
        ops.dropout(x, 1.5)


def test_float32_stays_float32(rng):
    x = rng.normal(size=(4, 3, 5)).astype(np.float32)
    w = rng.normal(size=(2, 5)).astype(np.float32)
    assert ops.linear(x, w).dtype == np.float32
    assert all(a.dtype == np.float32 for a in ops.linear_backward(np.ones((4, 3, 2), np.float32), x, w))
    assert ops.relu(x).dtype == ops.leaky_relu(x).dtype == np.float32
    assert ops.batch_norm(x, np.ones(3, np.float32), np.zeros(3, np.float32)).dtype == np.float32
    assert ops.batch_norm_backward(x, x, np.ones(3, np.float32))[0].dtype == np.float32
    assert ops.cross_entropy_backward(x[:, :, 0], np.zeros(4, int)).dtype == np.float32
    assert ops.dropout(x, 0.5)[0].dtype == np.float32


def test_batch_norm_evaluation_in_float32_subtracts_the_mean_first(rng):
    """Evaluation computes ``(x − μ)·γ/σ + β``: with a running mean a thousand times the spread of x, float32
    results stay within 1e-6 of PyTorch in float64 (measured 2.7e-7). The two-pass form PyTorch's CPU
    kernel uses, ``x·γ/σ + (β − μ·γ/σ)``, ran 0.71-0.79x as long here but erred by 6.2e-5 (PyTorch's own
    float32: 2.9e-5)."""
    x = (rng.normal(size=(64, 4, 8, 8)) + 1000).astype(np.float32)
    w, b = rng.normal(size=4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    rm, rv = (1000 + rng.normal(size=4) * 0.1).astype(np.float32), rng.uniform(0.5, 2, size=4).astype(np.float32)
    y = ops.batch_norm(x, w, b, rm, rv, training=False)
    xt, rmt, rvt, wt, bt = (torch.tensor(a, dtype=torch.float64) for a in (x, rm, rv, w, b))
    exact = F.batch_norm(xt, rmt, rvt, wt, bt, training=False).numpy()
    assert y.dtype == np.float32 and np.abs(y - exact).max() < 1e-6
