"""NumPy's own BLAS, reached for what NumPy does not expose: OpenBLAS's out-of-place transposing copy
``?omatcopy`` and gemm's β (``C += A @ B`` in one pass), and its thread count.

gemm's layout changes are 2-D transposes. NumPy copies a transposed view element by element down its
columns; OpenBLAS's ``somatcopy`` (one thread, blocked for the cache) took 0.35-0.5x as long on the
suite's shapes (µs: (64, 1024) 32 -> 13, (864, 64) 23 -> 8, (64, 16384) 525 -> 222, against
:func:`convgrad.conv.gemm._transposed`'s tiles). And NumPy's ``matmul`` always overwrites its output,
so a sum of products takes a temporary and an add per product (:func:`matmul_add`). No new
dependency: the library is the one NumPy loaded, found once per process (the OpenBLAS bundled in
NumPy's wheel, else one this process mapped), with its symbol prefix and suffix (``scipy_`` and ``64_``
in NumPy's wheels) and its integer width (its configuration says ``USE64BITINT`` for 64-bit). Where
there is none (NumPy built on another BLAS), each function falls back to NumPy or says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import threading
from typing import Iterator

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS's CblasRowMajor, CblasNoTrans, CblasTrans
NAMES = (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", ""))  # (prefix, suffix) as OpenBLAS builds name them


def _candidates() -> list[str]:
    """Paths of OpenBLAS libraries NumPy may use: those bundled with NumPy first, then any this process
    mapped, except SciPy's own copy (a second OpenBLAS, whose threads would compete with NumPy's)."""
    root = os.path.dirname(np.__file__)
    paths = []
    for pattern in ("../numpy.libs/*openblas*", ".dylibs/*openblas*", "../numpy/.libs/*openblas*"):
        paths += sorted(glob.glob(os.path.join(root, pattern)))
    try:
        with open("/proc/self/maps") as maps:
            mapped = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
        paths += sorted(path for path in mapped if "scipy.libs" not in path)
    except OSError:
        pass
    return paths


@functools.lru_cache(maxsize=1)
def _library() -> tuple:
    """(library, prefix, suffix, ``{(name, dtype): routine}``) for ``omatcopy`` and ``gemm`` of the first
    candidate library that has them, else ``(None, "", "", {})``."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in NAMES:
            found = _bind(lib, prefix, suffix)
            if found:
                return lib, prefix, suffix, found
    return None, "", "", {}


def _routines() -> dict:
    """``{(name, dtype): routine}`` of :func:`_library`."""
    return _library()[3]


def _bind(lib, prefix: str, suffix: str) -> dict:
    """The routines of ``lib`` under one naming, typed by the integer width its configuration reports."""
    letters = {np.dtype(np.float32): ("s", ctypes.c_float), np.dtype(np.float64): ("d", ctypes.c_double)}
    try:
        config = getattr(lib, f"{prefix}openblas_get_config{suffix}")
        routines = {(name, dtype): getattr(lib, f"{prefix}cblas_{letter}{name}{suffix}")
                    for dtype, (letter, _) in letters.items() for name in ("omatcopy", "gemm")}
    except AttributeError:
        return {}
    config.restype, config.argtypes = ctypes.c_char_p, []
    wide = suffix.startswith("64") or b"USE64BITINT" in (config() or b"")  # the 64_ suffix marks 64-bit builds
    integer = ctypes.c_int64 if wide else ctypes.c_int
    for (name, dtype), routine in routines.items():
        scalar, pointer, enum = letters[dtype][1], ctypes.c_void_p, ctypes.c_int
        routine.restype = None
        routine.argtypes = ([enum, enum, integer, integer, scalar, pointer, integer, pointer, integer] if name == "omatcopy"
                            else [enum, enum, enum, integer, integer, integer, scalar, pointer, integer, pointer, integer,
                                  scalar, pointer, integer])
    return routines


def available(dtype, name: str = "omatcopy") -> bool:
    """Whether NumPy's BLAS gave us ``name`` (``"omatcopy"``: :func:`transpose`; ``"gemm"``:
    :func:`matmul_add`) for ``dtype``."""
    return (name, np.dtype(dtype)) in _routines()


def transpose(source: np.ndarray, target: np.ndarray) -> bool:
    """``target (b, a) = source (a, b)ᵀ`` by NumPy's BLAS; True where done. False, target untouched,
    where the caller must copy: no such routine, another dtype, rows not contiguous, memory shared."""
    routine = _routines().get(("omatcopy", source.dtype))
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


def matmul_add(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> bool:
    """``out (…, m, n) += a (…, m, k) @ b (…, k, n)``: by BLAS's gemm with β = 1 (no temporary, no second
    pass over out; True) where NumPy's BLAS has it, the dtypes are one float dtype, and every matrix is
    one BLAS can describe (rows or columns contiguous); else NumPy's ``matmul`` and an add (False).
    Measured, µs, against ``out += np.matmul(a, b)``: (64, 192) @ (192, 5424) 972 -> 820, (32, 96) @
    (96, 16384) 761 -> 647."""
    routine = _routines().get(("gemm", out.dtype))
    if routine is not None and a.dtype == b.dtype == out.dtype and _batch_alike(a, b, out):
        calls = [_gemm_call(a[i], b[i], out[i]) for i in np.ndindex(out.shape[:-2])]
        if all(call is not None for call in calls):
            for call in filter(None, calls):  # an empty product (()) adds nothing
                routine(*call)
            return True
    out += np.matmul(a, b)
    return False


def _batch_alike(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> bool:
    """Whether the three are stacks of matrices alike, ``(…, m, k)``, ``(…, k, n)`` and ``(…, m, n)``."""
    if not a.ndim == b.ndim == out.ndim >= 2:
        return False
    (m, n), k = out.shape[-2:], a.shape[-1]
    return a.shape[:-2] == b.shape[:-2] == out.shape[:-2] and a.shape[-2] == m and b.shape[-2:] == (k, n)


def _gemm_call(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple | None:
    """gemm's arguments for ``c += a @ b`` (2-D), ``()`` when there is nothing to add, None where BLAS
    cannot describe a matrix, c is read-only or shares memory with a or b."""
    (m, k), n, size = a.shape, c.shape[1], c.itemsize
    if m == 0 or n == 0 or k == 0:
        return ()
    ldc, A, B = _leading(c, size), _operand(a, size), _operand(b, size)
    if ldc is None or A is None or B is None or not c.flags.writeable:
        return None
    if np.may_share_memory(c, a) or np.may_share_memory(c, b):
        return None
    return (ROW_MAJOR, A[0], B[0], m, n, k, 1.0, a.ctypes.data, A[1], b.ctypes.data, B[1], 1.0, c.ctypes.data, ldc)


def _operand(matrix: np.ndarray, size: int) -> tuple | None:
    """(CBLAS transpose flag, leading dimension) of a row-major (r, c) matrix or of the transpose of one."""
    ld = _leading(matrix, size)
    if ld is not None:
        return NO_TRANS, ld
    ld = _leading(matrix.T, size)
    return None if ld is None else (TRANS, ld)


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


@functools.lru_cache(maxsize=1)
def kernels() -> str:
    """The kernel family NumPy's OpenBLAS runs (``openblas_get_corename``: "Haswell", "SkylakeX", ...,
    as OPENBLAS_CORETYPE may have forced it), lower case; "" where it cannot be known."""
    lib, prefix, suffix, _ = _library()
    try:
        name = getattr(lib, f"{prefix}openblas_get_corename{suffix}")
    except AttributeError:
        return ""
    name.restype, name.argtypes = ctypes.c_char_p, []
    return (name() or b"").decode("ascii", "replace").strip().lower()


@functools.lru_cache(maxsize=1)
def _thread_control() -> tuple | None:
    """(get, set) of :func:`_library`'s thread count, or None."""
    lib, prefix, suffix, _ = _library()
    try:
        get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
        put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}")
    except AttributeError:
        return None
    get.restype, get.argtypes = ctypes.c_int, []
    put.restype, put.argtypes = None, [ctypes.c_int]
    return get, put


def threads() -> int:
    """How many threads NumPy's BLAS runs a product on: OpenBLAS's count (outside :func:`one_thread`),
    1 where it cannot be known."""
    control = _thread_control()
    return max(1, control[0]()) if control is not None else 1


_lock = threading.Lock()
_held = {"count": 0, "threads": 1}


@contextlib.contextmanager
def one_thread() -> Iterator[bool]:
    """Every BLAS product runs on the thread that calls it, inside the block; yields whether it could
    be arranged. OpenBLAS's count is one setting for the whole process (its ``_local`` variant
    changes it too, in pthreads builds), so the blocks of several threads share it: the first to enter
    sets 1, the last to leave restores the count it found."""
    control = _thread_control()
    if control is None:
        yield False
        return
    with _lock:
        if _held["count"] == 0:
            _held["threads"] = control[0]()
            control[1](1)
        _held["count"] += 1
    try:
        yield True
    finally:
        with _lock:
            _held["count"] -= 1
            if _held["count"] == 0:
                control[1](_held["threads"])
