"""NumPy's own BLAS, reached for the one routine NumPy does not expose: OpenBLAS's out-of-place
transposing copy ``?omatcopy``.

gemm's layout changes are 2-D transposes. NumPy copies a transposed view element by element down its
columns; OpenBLAS's ``somatcopy`` (one thread, blocked for the cache) took 0.35-0.5x as long on the
suite's shapes (µs: (64, 1024) 32 -> 13, (864, 64) 23 -> 8, (64, 16384) 525 -> 222, against
:func:`convgrad.conv.gemm._transposed`'s tiles). No new dependency: the library is the one NumPy
loaded, found once per process (the OpenBLAS bundled in NumPy's wheel, else one this process mapped),
with its symbol prefix and suffix (``scipy_`` and ``64_`` in NumPy's wheels) and its integer width
(its configuration says ``USE64BITINT`` for 64-bit). Where there is none (NumPy built on another BLAS),
:func:`transpose` says so and the caller copies with NumPy.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os

import numpy as np

ROW_MAJOR, TRANS = 101, 112  # CBLAS's CblasRowMajor, CblasTrans
NAMES = (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", ""))  # (prefix, suffix) as OpenBLAS builds name them


def _candidates() -> list[str]:
    """Paths of OpenBLAS libraries NumPy may use: those bundled with NumPy first, then any this process mapped."""
    root = os.path.dirname(np.__file__)
    paths = []
    for pattern in ("../numpy.libs/*openblas*", ".dylibs/*openblas*", "../numpy/.libs/*openblas*"):
        paths += sorted(glob.glob(os.path.join(root, pattern)))
    try:
        with open("/proc/self/maps") as maps:
            paths += sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        pass
    return paths


@functools.lru_cache(maxsize=1)
def _routines() -> dict:
    """``{dtype: ?omatcopy}`` of the first candidate library that has them, else ``{}``."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in NAMES:
            found = _bind(lib, prefix, suffix)
            if found:
                return found
    return {}


def _bind(lib, prefix: str, suffix: str) -> dict:
    """``?omatcopy`` of ``lib`` under one naming, typed by the integer width its configuration reports."""
    try:
        config = getattr(lib, f"{prefix}openblas_get_config{suffix}")
        routines = {np.dtype(np.float32): getattr(lib, f"{prefix}cblas_somatcopy{suffix}"),
                    np.dtype(np.float64): getattr(lib, f"{prefix}cblas_domatcopy{suffix}")}
    except AttributeError:
        return {}
    config.restype, config.argtypes = ctypes.c_char_p, []
    integer = ctypes.c_int64 if b"USE64BITINT" in (config() or b"") else ctypes.c_int
    for dtype, routine in routines.items():
        scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
        routine.restype = None
        routine.argtypes = [ctypes.c_int, ctypes.c_int, integer, integer, scalar, ctypes.c_void_p, integer,
                            ctypes.c_void_p, integer]
    return routines


def available(dtype) -> bool:
    """Whether :func:`transpose` can copy arrays of ``dtype``."""
    return np.dtype(dtype) in _routines()


def transpose(source: np.ndarray, target: np.ndarray) -> bool:
    """``target (b, a) = source (a, b)ᵀ`` by NumPy's BLAS; True where done. False, target untouched,
    where the caller must copy: no such routine, another dtype, rows not contiguous, memory shared."""
    routine = _routines().get(source.dtype)
    if routine is None or target.dtype != source.dtype or source.ndim != 2 or target.shape != source.shape[::-1]:
        return False
    (a, b), size = source.shape, source.itemsize
    if a == 0 or b == 0:
        return True  # nothing to copy
    lda, ldb = _leading(source, size), _leading(target, size)
    if lda is None or ldb is None or not target.flags.writeable or np.may_share_memory(source, target):
        return False
    routine(ROW_MAJOR, TRANS, a, b, 1.0, source.ctypes.data, lda, target.ctypes.data, ldb)
    return True


def _leading(matrix: np.ndarray, size: int) -> int | None:
    """BLAS's leading dimension of a row-major matrix (elements between rows), or None where its rows are
    not contiguous or not evenly spaced forward in memory."""
    rows, columns = matrix.shape
    if columns > 1 and matrix.strides[1] != size:
        return None
    if rows == 1:
        return columns
    step, rest = divmod(matrix.strides[0], size)
    return step if rest == 0 and step >= columns else None
