"""What a training run leaves behind: metrics.json, curves.png and confusion.png."""

from __future__ import annotations

import json
import pathlib

import numpy as np


def write_metrics(path, *, dataset: str, model: str, epochs: int, test_accuracy: float, history: list,
                  confusion: np.ndarray, **extra) -> pathlib.Path:
    """``metrics.json``: dataset, model, epochs, final test_accuracy (0-1), history, confusion_matrix."""
    path = pathlib.Path(path)
    record = {"dataset": dataset, "model": model, "epochs": epochs, "test_accuracy": test_accuracy,
              "history": history, "confusion_matrix": np.asarray(confusion).tolist(), **extra}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_curves(path, history: list) -> pathlib.Path:
    """Loss and accuracy per epoch, train and test, side by side."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key in ((left, "loss"), (right, "accuracy")):
        axis.plot(epochs, [h[f"train_{key}"] for h in history], label="train")
        axis.plot(epochs, [h[f"test_{key}"] for h in history], label="test")
        axis.set_xlabel("epoch")
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return pathlib.Path(path)


def plot_confusion(path, matrix: np.ndarray, classes) -> pathlib.Path:
    """The confusion matrix with its counts (rows: true class, columns: predicted)."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    fig, axis = plt.subplots(figsize=(6, 5.5))
    image = axis.imshow(matrix, cmap="Blues")
    ticks = range(len(classes))
    axis.set_xticks(ticks, classes, rotation=45, ha="right")
    axis.set_yticks(ticks, classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        axis.text(j, i, str(count), ha="center", va="center", fontsize=8,
                  color="white" if count > matrix.max() / 2 else "black")
    fig.colorbar(image, ax=axis)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return pathlib.Path(path)


def format_confusion(matrix: np.ndarray, classes) -> str:
    """The confusion matrix as aligned text, one row per true class."""
    matrix = np.asarray(matrix)
    names = [str(c) for c in classes]
    width = max(max(len(n) for n in names), len(str(matrix.max())))
    lines = [" " * (width + 2) + " ".join(n.rjust(width) for n in names) + "   (columns: predicted)"]
    lines += [name.rjust(width) + "  " + " ".join(str(v).rjust(width) for v in row) for name, row in zip(names, matrix)]
    return "\n".join(lines)
