"""The training loop: determinism, exact resume (end of epoch and mid-epoch Ctrl-C), divergence stop."""

import os
import signal

import numpy as np
import pytest

import convgrad as cg
from convgrad import checkpoint, data, models, optim
from convgrad.train import Trainer, TrainingDiverged, TrainingInterrupted, confusion_matrix, evaluate


def small_digits():
    d = data.load("digits")
    return data.Dataset("digits", d.x_train[:160], d.y_train[:160], d.x_test[:64], d.y_test[:64], d.classes)


def make_trainer(path=None, seed=0, trainer_class=Trainer):
    cg.manual_seed(seed)
    model = models.digits_cnn()  # BatchNorm (running statistics) and Dropout (random masks): both must resume
    opt = optim.Adam(model.parameters(), lr=1e-3)
    sched = optim.StepLR(opt, step_size=1, gamma=0.7)
    return trainer_class(model, opt, small_digits(), batch_size=32, seed=seed, scheduler=sched,
                         checkpoint_path=path, progress_bar=False, log=lambda line: None)


def without_time(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def assert_same_run(a, b):
    assert without_time(a.progress.history) == without_time(b.progress.history)
    for (k, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert np.array_equal(x, y), k
    assert a.optimizer.param_groups[0]["lr"] == b.optimizer.param_groups[0]["lr"]


def test_same_seed_same_numbers():
    a, b = make_trainer(), make_trainer()
    a.fit(2)
    b.fit(2)
    assert_same_run(a, b)
    c = make_trainer(seed=1)
    c.fit(2)
    assert without_time(c.progress.history) != without_time(a.progress.history)


def test_resume_from_an_epoch_checkpoint_equals_an_uninterrupted_run(tmp_path):
    straight = make_trainer()
    straight.fit(3)
    first = make_trainer(tmp_path / "m.npz")
    first.fit(2)
    resumed = make_trainer(seed=123)  # a different seed: everything must come from the checkpoint
    resumed.restore(checkpoint.load(tmp_path / "m.npz"))
    resumed.fit(3)
    assert_same_run(straight, resumed)


class InterruptAt(Trainer):
    """Sends itself Ctrl-C (SIGINT) during a given step, as a user would."""

    at_step = 13

    def _step(self, xb, yb):
        super()._step(xb, yb)
        self.steps_taken = getattr(self, "steps_taken", 0) + 1
        if self.steps_taken == self.at_step:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_the_exact_point_and_resume_continues_identically(tmp_path):
    straight = make_trainer()
    straight.fit(3)
    interrupted = make_trainer(tmp_path / "m.npz", trainer_class=InterruptAt)
    before = signal.getsignal(signal.SIGINT)  # Python's default handler, or SIG_IGN under nohup
    with pytest.raises(TrainingInterrupted, match="epoch 3 after step 3"):  # 5 steps per epoch: step 13 is epoch 3
        interrupted.fit(3)
    saved = checkpoint.load(tmp_path / "m.npz").training["progress"]
    assert (saved["epoch"], saved["step"]) == (2, 3)
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored
    resumed = make_trainer(seed=7)
    resumed.restore(checkpoint.load(tmp_path / "m.npz"))
    resumed.fit(3)
    assert_same_run(straight, resumed)


class PoisonAt(Trainer):
    """Makes the loss NaN at a given step, as a diverging run would."""

    def _step(self, xb, yb):
        self.count = getattr(self, "count", 0) + 1
        if self.count == 8:  # epoch 2, step 3
            xb = np.full_like(xb, np.nan)
        super()._step(xb, yb)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path / "m.npz", trainer_class=PoisonAt)
    with pytest.raises(TrainingDiverged, match=r"loss became nan in epoch 2 at step 3; the last good checkpoint is"):
        trainer.fit(3)
    kept = checkpoint.load(tmp_path / "m.npz")
    assert kept.training["progress"]["epoch"] == 1
    model = kept.build_model()
    assert all(np.isfinite(v).all() for v in model.state_dict().values())


def test_evaluate_and_confusion_matrix():
    trainer = make_trainer()
    trainer.fit(1)
    d = trainer.data
    loss, accuracy, predictions = evaluate(trainer.model, d.x_test, d.y_test, batch_size=10)
    matrix = confusion_matrix(d.y_test, predictions, 10)
    assert matrix.sum() == len(d.y_test) and np.trace(matrix) == round(accuracy * len(d.y_test))
    assert accuracy == trainer.progress.history[-1]["test_accuracy"]
    assert loss == pytest.approx(trainer.progress.history[-1]["test_loss"], rel=1e-5)


ALLOCATION_PROBE = """
import ctypes, sys
import numpy as np
from convgrad import _allocator

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2

def mmapped_by(size):
    before = libc.mallinfo2().hblkhd
    block = np.ones(size, dtype=np.uint8)
    return libc.mallinfo2().hblkhd - before

first = mmapped_by(20 * 2**20)
applied = _allocator.keep_freed_memory()
print(first, applied, _allocator.keep_freed_memory(), mmapped_by(20 * 2**20), mmapped_by(30 * 2**20))
"""


def _has_mallinfo2() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except (OSError, TypeError):  # no C library to open this way (Windows)
        return False


@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc's mallinfo2 (2.33+)")
def test_training_loop_keeps_freed_memory_for_the_next_step():
    """glibc's own statistics, in a fresh process: by default a 20 MiB array gets fresh mmapped pages;
    after keep_freed_memory (which the training loop calls) arrays up to 32 MiB come from the heap."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", ALLOCATION_PROBE], capture_output=True, text=True, check=True).stdout
    first, applied, again, after, larger = out.split()
    assert int(first) >= 20 * 2**20 and applied == again == "True" and int(after) == 0 and int(larger) == 0


def test_keep_freed_memory_does_nothing_without_glibc(monkeypatch):
    from convgrad import _allocator

    monkeypatch.setattr(_allocator, "_state", {"applied": False})
    monkeypatch.setattr(_allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert _allocator.keep_freed_memory() is False


def test_fit_sets_up_the_allocator_first(monkeypatch):
    import convgrad.train as train

    calls = []
    monkeypatch.setattr(train, "keep_freed_memory", lambda: calls.append("called") or True)
    make_trainer().fit(1)
    assert calls == ["called"]
