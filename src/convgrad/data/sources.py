"""The datasets: generated or shipped by packages (digits, mnist1d), or read from standard files (mnist, cifar10).

Nothing is downloaded. MNIST's IDX files and CIFAR-10's python batches are read from a directory
the user names; when they are absent the error names the files expected.
"""

from __future__ import annotations

import gzip
import pathlib
import pickle
import random
import struct

import numpy as np

from .dataset import Dataset

DIGITS = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _standardise(x_train, x_test, mean, std):
    """Scale per channel with fixed statistics: ``(x − mean) / std``, float32."""
    shape = (1, -1) + (1,) * (x_train.ndim - 2)
    mean, std = np.asarray(mean, np.float32).reshape(shape), np.asarray(std, np.float32).reshape(shape)
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def digits() -> Dataset:
    """scikit-learn's bundled 8×8 handwritten digits (1797 images): x ``(N, 1, 8, 8)`` in [0, 1].

    A fixed stratified split: 80% train (1437), 20% test (360), ``random_state=0``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return Dataset("digits", x_train, y_train, x_test, y_test, DIGITS)


def mnist1d() -> Dataset:
    """MNIST-1D generated locally by the mnist1d package with its default arguments (seed 42).

    4000 train and 1000 test signals of length 40: x ``(N, 1, 40)``. The package's generator seeds
    Python's and NumPy's global random state; both are restored afterwards.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    saved = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
    as_x = lambda a: np.asarray(a, np.float32)[:, None, :]  # noqa: E731
    return Dataset("mnist1d", as_x(data["x"]), np.asarray(data["y"], np.int64), as_x(data["x_test"]),
                   np.asarray(data["y_test"], np.int64), DIGITS)


# --- MNIST: IDX files -------------------------------------------------------------------------

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path) -> np.ndarray:
    """An IDX file (gzipped or not) as an array: magic ``00 00 <type> <ndim>``, big-endian sizes, data."""
    path = pathlib.Path(path)
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - 4 - 4 * ndim != expected:
        raise ValueError(f"{path}: expected {expected} bytes of data for shape {dims}, got {len(raw) - 4 - 4 * ndim}")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(dims)


def _find(data_dir: pathlib.Path, stem: str) -> pathlib.Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def _require_dir(name: str, data_dir) -> pathlib.Path:
    if data_dir is None:
        raise FileNotFoundError(f"dataset {name!r} is read from files: give their directory with --data-dir")
    path = pathlib.Path(data_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"dataset {name!r}: data directory {str(path)!r} does not exist")
    return path


def mnist(data_dir) -> Dataset:
    """MNIST from its four IDX files in ``data_dir`` (``.gz`` or not): x ``(N, 1, 28, 28)`` standardised."""
    path = _require_dir("mnist", data_dir)
    found = {key: _find(path, stem) for key, stem in MNIST_FILES.items()}
    missing = [MNIST_FILES[k] for k, f in found.items() if f is None]
    if missing:
        raise FileNotFoundError(f"dataset 'mnist': {str(path)!r} lacks {', '.join(m + '[.gz]' for m in missing)}")
    arrays = {key: read_idx(f) for key, f in found.items()}
    x_train, x_test = (arrays[k].astype(np.float32)[:, None] / 255.0 for k in ("x_train", "x_test"))
    x_train, x_test = _standardise(x_train, x_test, [0.1307], [0.3081])
    return Dataset("mnist", x_train, arrays["y_train"].astype(np.int64), x_test, arrays["y_test"].astype(np.int64), DIGITS)


# --- CIFAR-10: python pickle batches ------------------------------------------------------------

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batch dicts and NumPy arrays only: no other class can be loaded (no code runs)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR-10 batch refers to {module}.{name}, which a data batch never needs")


def _read_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as handle:
        batch = _BatchUnpickler(handle, encoding="bytes").load()
    data = np.asarray(batch[b"data"] if b"data" in batch else batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"] if b"labels" in batch else batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"{path}: expected 'data' (N, 3072) and N 'labels', got data {data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def cifar10(data_dir) -> Dataset:
    """CIFAR-10 from its python batches (data_batch_1..5, test_batch) in ``data_dir`` or its
    ``cifar-10-batches-py`` subdirectory: x ``(N, 3, 32, 32)`` standardised per channel."""
    path = _require_dir("cifar10", data_dir)
    if (path / "cifar-10-batches-py").is_dir():
        path = path / "cifar-10-batches-py"
    names = CIFAR10_TRAIN + ("test_batch",)
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"dataset 'cifar10': {str(path)!r} lacks {', '.join(missing)}")
    train = [_read_batch(path / n) for n in CIFAR10_TRAIN]
    x_test, y_test = _read_batch(path / "test_batch")
    x_train = np.concatenate([x for x, _ in train]).astype(np.float32) / 255.0
    x_train, x_test = _standardise(x_train, x_test.astype(np.float32) / 255.0,
                                   [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])
    return Dataset("cifar10", x_train, np.concatenate([y for _, y in train]), x_test, y_test, CIFAR10_CLASSES)
