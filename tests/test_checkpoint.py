"""Checkpoints: round trip, corruption and mismatch errors, atomic writes, no pickle."""

import zipfile

import numpy as np
import pytest

import convgrad as cg
from convgrad import checkpoint, models, nn, optim
from convgrad.checkpoint import CheckpointError


def _trained(seed=0):
    cg.manual_seed(seed)
    model = models.lenet5((1, 28, 28), 10)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x = np.random.default_rng(seed).normal(size=(4, 1, 28, 28)).astype(np.float32)
    loss = nn.CrossEntropyLoss()
    loss(model(x), np.arange(4))
    model.backward(loss.backward())
    opt.step()
    return model, opt


def test_round_trip_restores_architecture_weights_and_optimizer(tmp_path):
    model, opt = _trained()
    sched = optim.StepLR(opt, 2)
    checkpoint.save(tmp_path / "m.npz", model, opt, sched, {"epoch": 3, "note": "hello"})
    loaded = checkpoint.load(tmp_path / "m.npz")
    rebuilt = loaded.build_model()
    assert rebuilt.spec() == model.spec()
    for (k, a), (k2, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and np.array_equal(a, b)
    opt2 = optim.Adam(rebuilt.parameters(), lr=5.0)
    loaded.restore_optimizer(opt2)
    assert opt2.param_groups[0]["lr"] == 1e-3
    for s1, s2 in zip(opt.state, opt2.state):
        assert s1["step"] == s2["step"] and np.array_equal(s1["exp_avg"], s2["exp_avg"])
    assert loaded.training == {"epoch": 3, "note": "hello"} and loaded.meta["scheduler"]["last_epoch"] == 0


def test_loads_without_pickle(tmp_path):
    model, opt = _trained()
    checkpoint.save(tmp_path / "m.npz", model, opt)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:  # would raise on any object array
        assert "meta" in archive.files and "checksum" in archive.files


def test_corrupted_files_give_a_clear_error(tmp_path):
    model, opt = _trained()
    path = checkpoint.save(tmp_path / "m.npz", model, opt)
    raw = bytearray(path.read_bytes())
    # change one weight value inside the archive, keeping it a valid zip: the checksum catches it
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    weight = bytearray(members["model/0.weight.npy"])
    weight[-1] ^= 0xFF
    members["model/0.weight.npy"] = bytes(weight)
    with zipfile.ZipFile(tmp_path / "tampered.npz", "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    with pytest.raises(CheckpointError, match="checksum does not match"):
        checkpoint.load(tmp_path / "tampered.npz")
    (tmp_path / "truncated.npz").write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(CheckpointError, match="unreadable or corrupted"):
        checkpoint.load(tmp_path / "truncated.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path / "garbage.npz")
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a convgrad checkpoint"):
        checkpoint.load(tmp_path / "foreign.npz")
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.load(tmp_path / "absent.npz")


def test_mismatched_model_or_optimizer(tmp_path):
    model, opt = _trained()
    loaded = checkpoint.load(checkpoint.save(tmp_path / "m.npz", model, opt))
    with pytest.raises(CheckpointError, match="another architecture"):
        loaded.restore_model(models.lenet5((3, 32, 32), 10))
    with pytest.raises(CheckpointError, match="Adam state, not SGD"):
        loaded.restore_optimizer(optim.SGD(model.parameters()))


def test_writes_are_atomic(tmp_path, monkeypatch):
    model, opt = _trained()
    path = checkpoint.save(tmp_path / "m.npz", model, opt, training={"epoch": 1})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, model, opt, training={"epoch": 2})
    assert path.read_bytes() == before  # the old checkpoint is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # and no temporary file is left behind
    assert checkpoint.load(path).training == {"epoch": 1}
