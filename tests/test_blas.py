"""The transposing copy taken from NumPy's own BLAS (``convgrad._blas``), against NumPy's transpose."""

import numpy as np
import pytest

from convgrad import _blas


def _numpy_blas_name() -> str:
    return np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"].lower()


def test_found_where_numpy_uses_openblas():
    """Where NumPy's BLAS is OpenBLAS (as in its wheels) the routine is found for float32 and float64."""
    if "openblas" in _numpy_blas_name():
        assert _blas.available(np.float32) and _blas.available(np.float64)
    else:  # another BLAS: no routine, and every transpose is left to the caller
        assert not _blas.available(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 4), (1, 5), (5, 1), (64, 1024), (1024, 64), (37, 3)])
def test_transpose_matches_numpy_with_rows_spaced_out(shape, dtype):
    """Source and target both views whose rows are further apart than their length (BLAS's leading
    dimensions): the result is NumPy's transpose, the columns between the rows untouched."""
    a, b = shape
    rng = np.random.default_rng(0)
    wide = rng.standard_normal((a, b + 5)).astype(dtype)
    source = wide[:, 2: 2 + b]
    out = np.full((b, a + 3), -7.0, dtype=dtype)
    target = out[:, 1: 1 + a]
    if not _blas.available(dtype):  # another BLAS: the caller copies
        assert not _blas.transpose(source, target) and np.all(out == -7)
        return
    assert _blas.transpose(source, target)
    np.testing.assert_array_equal(target, source.T)
    assert np.all(out[:, 0] == -7) and np.all(out[:, 1 + a:] == -7)


def _refusals():
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    return {
        "integers": (x.astype(np.int32), np.empty((6, 4), np.int32)),
        "dtypes differ": (x, np.empty((6, 4), np.float64)),
        "shape": (x, np.empty((4, 6), np.float32)),
        "columns strided": (x[:, ::2], np.empty((3, 4), np.float32)),
        "rows backwards": (x[::-1], np.empty((6, 4), np.float32)),
        "target columns strided": (x, np.empty((6, 8), np.float32)[:, ::2]),
        "memory shared": (x[:, :4], x.reshape(6, 4)),
        "read-only target": (x, np.lib.stride_tricks.as_strided(np.empty((6, 4), np.float32), writeable=False)),
        "3-D": (x.reshape(2, 2, 6), np.empty((6, 2, 2), np.float32)),
    }


@pytest.mark.parametrize("name", list(_refusals()))
def test_refuses_what_blas_cannot_describe_and_leaves_the_target(name):
    """False, target unchanged, where the caller must copy with NumPy."""
    source, target = _refusals()[name]
    before = target.copy()
    assert not _blas.transpose(source, target)
    np.testing.assert_array_equal(target, before)


def test_empty_is_done():
    assert _blas.transpose(np.empty((0, 3), np.float32), np.empty((3, 0), np.float32))
