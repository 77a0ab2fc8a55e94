"""dtype contract: float32 stays float32 end to end, float64 stays float64, integers become float64,
float16 comes back as float16; bool, complex, object and strings are refused."""

import numpy as np
import pytest
from strategies import ALGORITHMS

import convgrad as cg
from convgrad.gradcheck import rel_error

# per algorithm: weight shape and keywords of a convolution, and of a transposed convolution, that it takes
SETUPS = {
    "general": ((6, 2, 3, 2), dict(stride=(2, 1), padding=((1, 0), 1), dilation=(1, 2), groups=2),
                (4, 3, 3, 2), dict(stride=2, padding=1, output_padding=1, groups=2)),
    "pointwise": ((6, 4, 1, 1), {}, (4, 3, 1, 1), {}),
    "depthwise": ((8, 1, 3, 3), dict(stride=2, padding=1, groups=4),
                  (4, 1, 3, 3), dict(stride=2, padding=1, output_padding=1, groups=4)),
}


def _arrays(dtype, algorithm="naive", seed=0):
    rng = np.random.default_rng(seed)
    w_shape, _, wt_shape, _ = SETUPS.get(algorithm, SETUPS["general"])
    return (rng.normal(size=(2, 4, 9, 8)).astype(dtype), rng.normal(size=w_shape).astype(dtype),
            rng.normal(size=w_shape[0]).astype(dtype), rng.normal(size=wt_shape).astype(dtype))


def _every_result(x, w, b, wt, algorithm):
    """Every array every public function returns, for one set of inputs."""
    _, kw, _, tkw = SETUPS.get(algorithm, SETUPS["general"])
    y = cg.conv(x, w, b, algorithm=algorithm, **kw)
    yt = cg.conv_transpose(x, wt, algorithm=algorithm, **tkw)
    outputs = [y, *cg.conv_backward(np.ones_like(y), x, w, algorithm=algorithm, **kw), yt,
               *cg.conv_transpose_backward(np.ones_like(yt), x, wt, algorithm=algorithm, **tkw)[:2]]
    for op, back, pool_kw in ((cg.max_pool, cg.max_pool_backward, dict(kernel_size=3, stride=2, padding=1)),
                              (cg.avg_pool, cg.avg_pool_backward, dict(kernel_size=(2, 3), ceil_mode=True))):
        p = op(x, **pool_kw)
        outputs += [p, back(np.ones_like(p), x, **pool_kw)]
    return outputs


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_floats_keep_their_dtype(dtype, algorithm):
    for out in _every_result(*_arrays(dtype, algorithm), algorithm):
        assert out.dtype == dtype


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_float32_is_accurate(algorithm):
    reference = _every_result(*_arrays(np.float64, algorithm), algorithm)
    for got, want in zip(_every_result(*_arrays(np.float32, algorithm), algorithm), reference):
        assert rel_error(got, want) < 1e-5


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_integers_are_promoted_to_float64(algorithm):
    x, w, b, wt = (np.round(a * 3).astype(np.int64) for a in _arrays(np.float64, algorithm))
    outputs = _every_result(x, w, b, wt, algorithm)
    reference = _every_result(x.astype(float), w.astype(float), b.astype(float), wt.astype(float), algorithm)
    for got, want in zip(outputs, reference):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)


def test_mixed_dtypes_follow_numpy_result_type():
    x, w, b, _ = _arrays(np.float32)
    CONV_KW = SETUPS["general"][1]
    assert cg.conv(x, w.astype(np.float64), b, **CONV_KW).dtype == np.float64
    assert cg.conv(x, w, b.astype(np.float64), **CONV_KW).dtype == np.float64
    dy = np.ones(cg.conv(x, w, **CONV_KW).shape)  # float64 upstream gradient
    assert all(a.dtype == np.float64 for a in cg.conv_backward(dy, x, w, **CONV_KW))


@pytest.mark.parametrize("algorithm", ["gemm", "as_forward", "pointwise"])
def test_float32_matrix_products_run_in_float32(algorithm, monkeypatch):
    """The fast path must not compute in float64 and cast: every matmul it makes sees float32 operands."""
    seen = []
    real_matmul = np.matmul

    def spy(a, b, *args, **kwargs):
        seen.append((np.asarray(a).dtype, np.asarray(b).dtype))
        return real_matmul(a, b, *args, **kwargs)

    monkeypatch.setattr(np, "matmul", spy)
    _every_result(*_arrays(np.float32, algorithm), algorithm)
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
