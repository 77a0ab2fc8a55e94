"""A dataset (train and test arrays) and a seeded batch iterator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np


@dataclass
class Dataset:
    """Images or signals ``x (N, C, *spatial)`` float32 and labels ``y (N,)`` int64, split into train and test."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C, *spatial)`` of one example."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train {self.x_train.shape}, test {self.x_test.shape}, "
                f"{len(self.classes)} classes)")


class Batches:
    """Mini-batches of ``(x, y)``; the order of epoch e is a function of ``(seed, e)`` alone.

    That makes a run reproducible and lets training resume mid-way on exactly the batches an
    uninterrupted run would have seen.

    >>> b = Batches(np.arange(10).reshape(10, 1), np.arange(10), batch_size=4, seed=0)
    >>> [yb.tolist() for _, yb in b.epoch(0)] == [yb.tolist() for _, yb in b.epoch(0)]
    True
    >>> len(b), len(Batches(np.zeros((10, 1)), np.zeros(10), 4, drop_last=True))
    (3, 2)
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False) -> None:
        if len(x) != len(y):
            raise ValueError(f"Batches: expected as many labels as examples, got {len(x)} examples and {len(y)} labels")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Batches: expected batch_size >= 1, got batch_size={batch_size!r}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        n = len(self.x)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of epoch ``epoch``, from batch index ``start`` on."""
        order = self.order(epoch)
        for i in range(start, len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[index], self.y[index]
