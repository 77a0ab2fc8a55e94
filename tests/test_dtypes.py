"""dtype contract: float32 stays float32 end to end, float64 stays float64, integers become float64,
float16 comes back as float16; bool, complex, object and strings are refused."""

import numpy as np
import pytest
from strategies import ALGORITHMS

import convgrad as cg
from convgrad.gradcheck import rel_error

CONV_KW = dict(stride=(2, 1), padding=((1, 0), 1), dilation=(1, 2), groups=2)
T_KW = dict(stride=2, padding=1, output_padding=1, groups=2)


def _arrays(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(2, 4, 9, 8)).astype(dtype), rng.normal(size=(6, 2, 3, 2)).astype(dtype),
            rng.normal(size=6).astype(dtype))


def _every_result(x, w, b, algorithm):
    """Every array every public function returns, for one set of inputs."""
    y = cg.conv(x, w, b, algorithm=algorithm, **CONV_KW)
    dy = np.ones_like(y)
    wt = np.ascontiguousarray(w[:4, :].reshape(4, 2, 3, 2)) if w.shape[0] >= 4 else w
    yt = cg.conv_transpose(x, wt, algorithm=algorithm, **T_KW)
    outputs = [y, *cg.conv_backward(dy, x, w, algorithm=algorithm, **CONV_KW), yt,
               *cg.conv_transpose_backward(np.ones_like(yt), x, wt, algorithm=algorithm, **T_KW)[:2]]
    for op, back, kw in ((cg.max_pool, cg.max_pool_backward, dict(kernel_size=3, stride=2, padding=1)),
                         (cg.avg_pool, cg.avg_pool_backward, dict(kernel_size=(2, 3), ceil_mode=True))):
        p = op(x, **kw)
        outputs += [p, back(np.ones_like(p), x, **kw)]
    return outputs


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_floats_keep_their_dtype(dtype, algorithm):
    for out in _every_result(*_arrays(dtype), algorithm):
        assert out.dtype == dtype


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_float32_is_accurate(algorithm):
    reference = _every_result(*_arrays(np.float64), algorithm)
    for got, want in zip(_every_result(*_arrays(np.float32), algorithm), reference):
        assert rel_error(got, want) < 1e-5


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_integers_are_promoted_to_float64(algorithm):
    x, w, b = (np.round(a * 3).astype(np.int64) for a in _arrays(np.float64))
    outputs = _every_result(x, w, b, algorithm)
    reference = _every_result(x.astype(float), w.astype(float), b.astype(float), algorithm)
    for got, want in zip(outputs, reference):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)


def test_mixed_dtypes_follow_numpy_result_type():
    x, w, b = _arrays(np.float32)
    assert cg.conv(x, w.astype(np.float64), b, **CONV_KW).dtype == np.float64
    assert cg.conv(x, w, b.astype(np.float64), **CONV_KW).dtype == np.float64
    dy = np.ones(cg.conv(x, w, **CONV_KW).shape)  # float64 upstream gradient
    assert all(a.dtype == np.float64 for a in cg.conv_backward(dy, x, w, **CONV_KW))


@pytest.mark.parametrize("algorithm", ["gemm", "as_forward"])
def test_float32_matrix_products_run_in_float32(algorithm, monkeypatch):
    """The fast path must not compute in float64 and cast: every matmul it makes sees float32 operands."""
    seen = []
    real_matmul = np.matmul

    def spy(a, b, *args, **kwargs):
        seen.append((np.asarray(a).dtype, np.asarray(b).dtype))
        return real_matmul(a, b, *args, **kwargs)

    monkeypatch.setattr(np, "matmul", spy)
    _every_result(*_arrays(np.float32), algorithm)
    assert seen and all(d == (np.float32, np.float32) for d in seen)


@pytest.mark.parametrize("bad, message", [
    (np.ones((1, 2, 5), dtype=bool), "bool"),
    (np.ones((1, 2, 5), dtype=complex), "complex"),
    (np.array([[["a"] * 5] * 2]), "<U1"),
    (np.empty((1, 2, 5), dtype=object), "object"),
])
def test_non_numeric_input_is_refused(bad, message):
    w = np.ones((3, 2, 2))
    calls = [
        lambda: cg.conv(bad, w), lambda: cg.conv(np.ones((1, 2, 5)), bad[:, :, :2].reshape(1, 2, 2)),
        lambda: cg.conv_backward(np.ones((1, 3, 4)), bad, w), lambda: cg.conv_transpose(bad, np.ones((2, 3, 2))),
        lambda: cg.max_pool(bad, 2), lambda: cg.avg_pool(bad, 2),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=message):
            call()
