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


def _products(dtype):
    """(a, b, out) views as gemm's callers pass them: transposed operands, a window of columns, rows spaced out."""
    rng = np.random.default_rng(4)

    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    wide = normal(2, 7, 40)
    return {
        "2-D": (normal(5, 7), normal(7, 9), np.zeros((5, 9), dtype)),
        "columns window, out rows spaced": (normal(3, 7), wide[0, :, 6:31], normal(3, 40)[:, 2:27]),
        "a transposed": (normal(7, 4).T, normal(7, 6), normal(4, 6)),
        "b transposed": (normal(4, 7), normal(6, 7).T, normal(4, 6)),
        "groups": (normal(2, 3, 7), wide[:, :, 3:20], normal(2, 3, 17)),
        "one row, one column": (normal(1, 7), normal(7, 1), normal(1, 1)),
        "long reduction": (normal(6, 3000), normal(3000, 5), normal(6, 5)),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(_products(np.float64)))
def test_matmul_add_adds_the_product(name, dtype):
    """``out += a @ b`` by BLAS (where NumPy's has gemm) on every layout gemm passes, against NumPy in float64."""
    a, b, out = _products(dtype)[name]
    expected = out.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    assert _blas.matmul_add(a, b, out) == _blas.available(dtype, "gemm")
    np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-11)


@pytest.mark.parametrize("name, a, b, out", [
    ("integers", np.ones((2, 3), np.int64), np.ones((3, 4), np.int64), np.ones((2, 4), np.int64)),
    ("dtypes differ", np.ones((2, 3), np.float32), np.ones((3, 4)), np.ones((2, 4))),
    ("columns strided", np.ones((2, 6))[:, ::2], np.ones((3, 4)), np.ones((2, 4))),
    ("out columns strided", np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 8))[:, ::2]),
    ("a broadcast over b's stack", np.arange(6.0).reshape(2, 3), np.ones((2, 3, 4)), np.ones((2, 2, 4))),
])
def test_matmul_add_falls_back_to_numpy(name, a, b, out):
    """What BLAS cannot take is added by NumPy (False), with the same result."""
    expected = out + a @ b
    assert not _blas.matmul_add(a, b, out)
    np.testing.assert_array_equal(out, expected)


def test_matmul_add_into_its_own_operand_falls_back():
    """``out`` that is also an operand: NumPy's matmul makes its temporary first, so the old values are read."""
    x = np.arange(9.0).reshape(3, 3)
    expected = x + x @ x
    assert not _blas.matmul_add(x, x, x)
    np.testing.assert_array_equal(x, expected)


class _Routine:
    """Stands for a ctypes function: takes argtypes and restype, returns ``value`` when called."""

    def __init__(self, value=None):
        self.value = value

    def __call__(self, *args):
        return self.value


@pytest.mark.parametrize("config, prefix, suffix, integer", [
    (b"OpenBLAS 0.3.31 DYNAMIC_ARCH NO_AFFINITY Haswell", "", "", "c_int"),
    (b"OpenBLAS 0.3.31 USE64BITINT DYNAMIC_ARCH", "", "", "c_int64"),
    (b"OpenBLAS 0.3.31 DYNAMIC_ARCH", "scipy_", "64_", "c_int64"),
])
def test_routines_are_typed_by_the_librarys_integer_width(config, prefix, suffix, integer):
    """A 32-bit-integer build gets 32-bit sizes; ``USE64BITINT`` or the ``64_`` suffix, 64-bit ones
    (a wrong width would pass garbage sizes to BLAS)."""
    import ctypes
    from types import SimpleNamespace

    names = {f"{prefix}openblas_get_config{suffix}": _Routine(config)}
    names.update({f"{prefix}cblas_{t}{r}{suffix}": _Routine() for t in "sd" for r in ("omatcopy", "gemm")})
    routines = _blas._bind(SimpleNamespace(**names), prefix, suffix)
    assert len(routines) == 4
    width = getattr(ctypes, integer)
    assert all(routine.argtypes[-1] is width for routine in routines.values())
    assert routines[("gemm", np.dtype(np.float32))].argtypes[6] is ctypes.c_float
    assert routines[("omatcopy", np.dtype(np.float64))].argtypes[4] is ctypes.c_double
    del names[f"{prefix}cblas_dgemm{suffix}"]
    assert _blas._bind(SimpleNamespace(**names), prefix, suffix) == {}  # one missing: none taken


def test_kernels_name_the_family_threadpoolctl_reports():
    """``kernels()`` is the family NumPy's OpenBLAS runs, as threadpoolctl (an independent reader of
    the same library) reports it; "" where NumPy's BLAS is not OpenBLAS."""
    import os

    from threadpoolctl import threadpool_info

    numpy_files = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy")  # numpy/, numpy.libs/
    found = [lib["architecture"] for lib in threadpool_info()
             if lib.get("internal_api") == "openblas" and lib["filepath"].startswith(numpy_files)]
    if _blas.available(np.float32):
        assert found and _blas.kernels() == found[0].lower() != ""
    else:
        assert _blas.kernels() == ""


@pytest.mark.parametrize("library, expected", [
    ({"openblas_get_corename": _Routine(b"SkylakeX")}, "skylakex"),
    ({"openblas_get_corename": _Routine(b"Haswell ")}, "haswell"),
    ({"openblas_get_corename": _Routine(None)}, ""),
    ({}, ""),  # no such routine
])
def test_kernels_read_openblas_corename(library, expected, monkeypatch):
    """The core name is read from the library :func:`_blas._library` found, lower case and stripped; ""
    where the library has no such routine or gives no name."""
    from types import SimpleNamespace

    monkeypatch.setattr(_blas, "_library", lambda: (SimpleNamespace(**library), "", "", {}))
    _blas.kernels.cache_clear()
    try:
        assert _blas.kernels() == expected
    finally:
        _blas.kernels.cache_clear()
