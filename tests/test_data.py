"""Datasets and batching: the bundled and generated ones, and the file loaders on small files written here."""

import gzip
import pickle
import random
import struct

import numpy as np
import pytest

from convgrad import data


def test_digits_split_is_fixed_and_stratified():
    d = data.load("digits")
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert 0 <= d.x_train.min() and d.x_train.max() <= 1
    counts = np.bincount(d.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class (~180 per class)
    assert np.array_equal(d.y_test, data.digits().y_test)  # the same split every time


def test_mnist1d_is_the_papers_dataset_and_leaves_global_random_state_alone():
    np.random.seed(123)
    random.seed(123)
    before = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    d = data.mnist1d()
    assert (np.random.random(), random.random()) == before
    assert d.x_train.shape == (4000, 1, 40) and d.x_test.shape == (1000, 1, 40)
    assert abs(float(d.x_train.mean())) < 0.05 and abs(float(d.x_train.std()) - 1) < 0.05
    assert sorted(np.unique(d.y_train)) == list(range(10))
    from mnist1d.data import get_dataset_args, make_dataset
    reference = make_dataset(get_dataset_args())  # the package's own generator, default arguments
    np.testing.assert_allclose(d.x_test[:, 0], reference["x_test"], rtol=1e-6)
    np.testing.assert_array_equal(d.y_test, reference["y_test"])


def test_cached_datasets_are_read_only():
    with pytest.raises(ValueError):
        data.load("digits").x_train[0, 0, 0, 0] = 1


def _write_idx(path, array, gz):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    (gzip.open if gz else open)(path, "wb").write(header + array.tobytes())


def write_mnist(directory, n_train=64, n_test=32, gz=True, seed=0):
    """A small MNIST in the real IDX format; digit d is drawn as a bright row at height 2d."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
        images[np.arange(n), 2 * labels + 4, :] = 255
        _write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", images, gz)
        _write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", labels, gz)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    d = data.load("mnist", tmp_path)
    assert d.x_train.shape == (64, 1, 28, 28) and d.x_test.shape == (32, 1, 28, 28)
    raw = data.read_idx(tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else "")))
    np.testing.assert_allclose(d.x_train[:, 0], (raw / 255.0 - 0.1307) / 0.3081, rtol=1e-5)
    assert d.y_train.dtype == np.int64 and d.y_train.max() < 10


def test_idx_reads_other_dtypes_and_refuses_bad_files(tmp_path):
    values = np.arange(6, dtype=">f4").reshape(2, 3)
    _write_idx(tmp_path / "floats", values, gz=False)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "floats"), values)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes((tmp_path / "floats").read_bytes()[:-3])
    with pytest.raises(ValueError, match="expected 24 bytes"):
        data.read_idx(tmp_path / "short")


def test_missing_files_are_named(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\[\.gz\]"):
        data.load("mnist", tmp_path)
    with pytest.raises(FileNotFoundError, match="data_batch_1.*test_batch"):
        data.load("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load("mnist", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        data.load("cifar10")


def write_cifar(directory, per_batch=20, seed=0):
    """Small CIFAR-10 python batches in the real format: dicts with bytes keys, uint8 data (N, 3072)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, size=per_batch)
        images = rng.integers(0, 60, size=(per_batch, 3, 32, 32)).astype(np.uint8)
        images[np.arange(per_batch), labels % 3, :, :] = 250  # the class shows in one colour channel
        batch = {b"batch_label": name.encode(), b"labels": labels.tolist(),
                 b"data": images.reshape(per_batch, 3072), b"filenames": [b"x.png"] * per_batch}
        with open(directory / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)


def test_cifar10_batches(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    d = data.load("cifar10", tmp_path)
    assert d.x_train.shape == (100, 3, 32, 32) and d.x_test.shape == (20, 3, 32, 32)
    assert d.classes[0] == "airplane" and d.x_train.dtype == np.float32
    assert abs(float(d.x_train[:, 0].max()) - (250 / 255 - 0.4914) / 0.2470) < 1e-5


def test_cifar10_loader_runs_no_code_from_the_file(tmp_path):
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "test_batch", "wb") as handle:
        pickle.dump({b"data": Evil(), b"labels": []}, handle)
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        data.load("cifar10", tmp_path)


def test_batches_are_seeded_cover_every_example_and_drop_last():
    x, y = np.arange(10).reshape(10, 1), np.arange(10)
    batches = data.Batches(x, y, batch_size=4, seed=3)
    epoch0 = [yb.tolist() for _, yb in batches.epoch(0)]
    assert sorted(sum(epoch0, [])) == list(range(10)) and [len(b) for b in epoch0] == [4, 4, 2]
    assert epoch0 == [yb.tolist() for _, yb in data.Batches(x, y, 4, seed=3).epoch(0)]
    assert epoch0 != [yb.tolist() for _, yb in batches.epoch(1)]
    assert [yb.tolist() for _, yb in batches.epoch(0, start=2)] == epoch0[2:]
    assert [len(b) for _, b in data.Batches(x, y, 4, drop_last=True).epoch(0)] == [4, 4]
    assert [b.tolist() for _, b in data.Batches(x, y, 5, shuffle=False).epoch(0)] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    with pytest.raises(ValueError, match="batch_size"):
        data.Batches(x, y, 0)
    with pytest.raises(ValueError, match="labels"):
        data.Batches(x, y[:5], 2)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset"):
        data.load("imagenet")
