"""The training loop: mini-batch steps with progress bars, evaluation each epoch, checkpoints, resume.

A run is deterministic: the caller seeds parameter initialisation (``convgrad.manual_seed``), the
trainer owns the generator its dropout masks come from (seeded by ``seed``, installed as convgrad's
global generator only while it trains), and each epoch's batch order is a function of (seed, epoch). A checkpoint is
written at the end of every epoch; Ctrl-C finishes the current step, writes one for the exact point
reached, and stops. Resuming from either continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import checkpoint as ckpt
from ._allocator import keep_freed_memory
from ._random import using
from .data import Batches, Dataset
from .nn import CrossEntropyLoss, Module


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C: a checkpoint of the exact point reached was written."""


@dataclass
class Progress:
    """Where a run is: completed epochs, steps done in the current one, its running sums, the history."""

    epoch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)
    rng: dict | None = None  # the state of the trainer's generator (dropout masks) at this point

    def reset_epoch(self) -> None:
        self.step, self.loss_sum, self.correct, self.seen, self.seconds = 0, 0.0, 0, 0, 0.0


def evaluate(model: Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> tuple[float, float, np.ndarray]:
    """(mean loss, accuracy, predictions) of ``model`` in eval mode on ``(x, y)``."""
    model.eval()
    loss_fn, total, predictions = CrossEntropyLoss(), 0.0, []
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        total += loss_fn(logits, y[start : start + batch_size]) * len(logits)
        predictions.append(np.argmax(logits, axis=1))
    predictions = np.concatenate(predictions) if predictions else np.zeros(0, np.int64)
    return total / max(len(x), 1), float(np.mean(predictions == y)) if len(y) else 0.0, predictions


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """``(classes, classes)`` counts: row = true class, column = predicted class."""
    counts = np.bincount(np.asarray(labels) * classes + np.asarray(predictions), minlength=classes * classes)
    return counts.reshape(classes, classes).astype(np.int64)


class _DeferredInterrupt:
    """Turns Ctrl-C into a flag checked between steps, so a step is never left half-applied."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, lambda *_: setattr(self, "requested", True))
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


class Trainer:
    """Trains ``model`` on ``data`` with ``optimizer``; writes a checkpoint to ``checkpoint_path`` each epoch."""

    def __init__(self, model: Module, optimizer, data: Dataset, *, batch_size: int, seed: int = 0, shuffle: bool = True,
                 scheduler=None, checkpoint_path=None, meta: dict | None = None, progress_bar: bool = True,
                 log=print) -> None:
        self.model, self.optimizer, self.data, self.scheduler = model, optimizer, data, scheduler
        self.batches = Batches(data.x_train, data.y_train, batch_size, shuffle=shuffle, seed=seed)
        self.loss_fn = CrossEntropyLoss()
        self.checkpoint_path, self.meta = checkpoint_path, dict(meta or {})
        self.progress_bar, self.log = progress_bar, log
        self.progress = Progress()
        self.rng = np.random.default_rng([seed, 0xD0])  # dropout masks: a stream of its own

    # --- checkpoints ------------------------------------------------------------------------
    def save(self) -> None:
        if self.checkpoint_path is None:
            return
        self.progress.rng = self.rng.bit_generator.state
        training = {**self.meta, "batch_size": self.batches.batch_size, "seed": self.batches.seed,
                    "shuffle": self.batches.shuffle, "progress": asdict(self.progress)}
        ckpt.save(self.checkpoint_path, self.model, self.optimizer, self.scheduler, training)

    def restore(self, checkpoint: ckpt.Checkpoint) -> None:
        """Continue from ``checkpoint``: weights, optimizer, scheduler, progress and the dropout generator."""
        saved = checkpoint.training
        if saved.get("batch_size", self.batches.batch_size) != self.batches.batch_size:
            raise ckpt.CheckpointError(f"checkpoint {checkpoint.path} was trained with batch size "
                                       f"{saved['batch_size']}, not {self.batches.batch_size}")
        self.batches.seed = saved.get("seed", self.batches.seed)  # the batch order continues as it was
        self.batches.shuffle = saved.get("shuffle", self.batches.shuffle)
        checkpoint.restore_model(self.model)
        checkpoint.restore_optimizer(self.optimizer)
        if self.scheduler is not None and "scheduler" in checkpoint.meta:
            self.scheduler.load_state_dict(checkpoint.meta["scheduler"])
        self.progress = Progress(**saved["progress"])
        if self.progress.rng is not None:
            self.rng.bit_generator.state = self.progress.rng

    # --- the loop ---------------------------------------------------------------------------
    def fit(self, epochs: int) -> list[dict]:
        """Train until ``epochs`` epochs are complete; returns the history (one dict per epoch).
        glibc's malloc is first set to reuse the memory each step frees (:func:`keep_freed_memory`)."""
        keep_freed_memory()
        interrupt = _DeferredInterrupt()
        with interrupt.installed(), using(self.rng):
            while self.progress.epoch < epochs:
                self._run_epoch(epochs, interrupt)
                self._end_epoch(epochs)
        return self.progress.history

    def _run_epoch(self, epochs: int, interrupt: _DeferredInterrupt) -> None:
        from tqdm import tqdm

        p = self.progress
        self.model.train()
        self.model._expect_input_grad(False)  # as _step's backward: every step alike, resumed or not
        bar = tqdm(total=len(self.batches), initial=p.step, desc=f"epoch {p.epoch + 1}/{epochs}", leave=False,
                   disable=None if self.progress_bar else True, unit="batch")
        started = time.perf_counter()
        try:
            for xb, yb in self.batches.epoch(p.epoch, start=p.step):
                self._step(xb, yb)
                bar.update(1)
                bar.set_postfix(loss=f"{p.loss_sum / p.seen:.4f}", acc=f"{p.correct / p.seen:.4f}", refresh=False)
                if interrupt.requested:
                    p.seconds += time.perf_counter() - started
                    self.save()
                    raise TrainingInterrupted(f"interrupted in epoch {p.epoch + 1} after step {p.step}")
        finally:
            bar.close()
        p.seconds += time.perf_counter() - started

    def _step(self, xb: np.ndarray, yb: np.ndarray) -> None:
        p = self.progress
        logits = self.model(xb)
        loss = self.loss_fn(logits, yb)
        if not math.isfinite(loss):
            kept = f"; the last good checkpoint is {self.checkpoint_path}" if self.checkpoint_path else ""
            raise TrainingDiverged(f"loss became {loss} in epoch {p.epoch + 1} at step {p.step + 1}{kept}")
        self.optimizer.zero_grad()
        self.model.backward(self.loss_fn.backward(), input_grad=False)
        self.optimizer.step()
        p.step += 1
        p.loss_sum += loss * len(yb)
        p.correct += int(np.sum(np.argmax(logits, axis=1) == yb))
        p.seen += len(yb)

    def _end_epoch(self, epochs: int) -> None:
        p = self.progress
        started = time.perf_counter()
        test_loss, test_accuracy, _ = evaluate(self.model, self.data.x_test, self.data.y_test)
        record = {"epoch": p.epoch + 1, "train_loss": p.loss_sum / max(p.seen, 1),
                  "train_accuracy": p.correct / max(p.seen, 1), "test_loss": test_loss,
                  "test_accuracy": test_accuracy, "seconds": p.seconds + time.perf_counter() - started}
        p.history.append(record)
        self.log(f"epoch {record['epoch']:>3}/{epochs}  train loss {record['train_loss']:.4f} "
                 f"acc {record['train_accuracy']:.4f}  test loss {test_loss:.4f} acc {test_accuracy:.4f}  "
                 f"({record['seconds']:.1f}s)")
        if self.scheduler is not None:
            self.scheduler.step()
        p.epoch += 1
        p.reset_epoch()
        self.save()
