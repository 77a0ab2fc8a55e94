"""Built-in models and the default training recipe of each dataset.

Each builder takes the input shape of one example ``(C, *spatial)`` and the number of classes, and
refuses an input it was not designed for (a 2-D model on 1-D signals, say) with a ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import nn


def _spatial(name: str, input_shape, nd: int, what: str) -> tuple[int, ...]:
    if len(input_shape) != nd + 1:
        raise ValueError(f"model {name!r} expects {what}, got examples of shape {tuple(input_shape)}")
    return tuple(input_shape[1:])


def mnist1d_cnn(input_shape=(1, 40), classes=10) -> nn.Sequential:
    """The MNIST-1D paper's CNN: three strided Conv1d (25 channels) with ReLU, then Linear(125, 10)."""
    (length,) = _spatial("mnist1d-cnn", input_shape, 1, "1-D signals (C, L)")
    if length != 40:
        raise ValueError(f"model 'mnist1d-cnn' expects signals of length 40, got length {length}")
    return nn.Sequential(
        nn.Conv1d(input_shape[0], 25, 5, stride=2, padding=1), nn.ReLU(),   # 40 -> 19
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),               # 19 -> 10
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),               # 10 -> 5
        nn.Flatten(), nn.Linear(125, classes),
    )


def digits_cnn(input_shape=(1, 8, 8), classes=10) -> nn.Sequential:
    """A small 2-D CNN for 8×8 images: two conv–BN–ReLU blocks with max pooling, dropout, a linear head."""
    height, width = _spatial("digits-cnn", input_shape, 2, "2-D images (C, H, W)")
    if (height, width) != (8, 8):
        raise ValueError(f"model 'digits-cnn' expects 8x8 images, got {height}x{width}")
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),   # 8 -> 4
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),   # 4 -> 2
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 2 * 2, classes),
    )


def lenet5(input_shape=(1, 28, 28), classes=10) -> nn.Sequential:
    """LeNet-5 with ReLU and max pooling, for 28×28 (MNIST) or 32×32 (CIFAR-10) images."""
    height, width = _spatial("lenet5", input_shape, 2, "2-D images (C, H, W)")
    if (height, width) not in ((28, 28), (32, 32)):
        raise ValueError(f"model 'lenet5' expects 28x28 or 32x32 images, got {height}x{width}")
    side = ((height - 4) // 2 - 4) // 2  # 28 -> 24 -> 12 -> 8 -> 4; 32 -> 28 -> 14 -> 10 -> 5
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, classes),
    )


MODELS = {"mnist1d-cnn": mnist1d_cnn, "digits-cnn": digits_cnn, "lenet5": lenet5}


def build(name: str, input_shape, classes: int) -> nn.Module:
    """The model called ``name`` for examples of ``input_shape``; ValueError if unknown or unsuitable."""
    if name not in MODELS:
        raise ValueError(f"model: expected one of {tuple(MODELS)}, got {name!r}")
    return MODELS[name](tuple(input_shape), classes)


@dataclass(frozen=True)
class Recipe:
    """How a dataset is trained by default."""

    model: str
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float = 0.0
    momentum: float = 0.9  # for SGD
    shuffle: bool = True  # a new batch order each epoch, or the training set in order every epoch


RECIPES = {
    "digits": Recipe("digits-cnn", epochs=15, batch_size=32, optimizer="adam", lr=1e-3),
    # the MNIST-1D paper's recipe: Adam, lr 1e-2, batch 100, 8000 steps = 200 epochs of 4000 examples,
    # its training loop walking the (already shuffled) training set in order
    "mnist1d": Recipe("mnist1d-cnn", epochs=200, batch_size=100, optimizer="adam", lr=1e-2, shuffle=False),
    "mnist": Recipe("lenet5", epochs=5, batch_size=64, optimizer="adam", lr=1e-3),
    "cifar10": Recipe("lenet5", epochs=15, batch_size=64, optimizer="sgd", lr=1e-2, weight_decay=5e-4),
}
