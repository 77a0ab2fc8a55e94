"""Losses with mean reduction: softmax cross-entropy (optional label smoothing) and mean squared error."""

from __future__ import annotations

import numpy as np

from .._args import as_array, float_dtypes, shape_str


def log_softmax(logits, axis=1):
    """``logits − logsumexp(logits)`` along ``axis``, computed stably (the maximum is subtracted first)."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _check_labels(fn, logits, labels):
    logits, labels = as_array(fn, "logits", logits), np.asarray(labels)
    if logits.ndim < 2:
        raise ValueError(f"{fn}: expected logits of shape (N, classes, *), got logits of shape {shape_str(logits.shape)}")
    expected = logits.shape[:1] + logits.shape[2:]
    if labels.shape != expected:
        raise ValueError(f"{fn}: expected labels of shape {shape_str(expected)}, got labels of shape {shape_str(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{fn}: expected integer class labels, got labels of dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"{fn}: expected labels in [0, {logits.shape[1]}), got values from {labels.min()} to {labels.max()}")
    return logits, labels


def _targets(logits, labels, label_smoothing):
    """The target distribution ``(1 − ε)·onehot + ε/K`` per example, shaped like logits."""
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: expected 0 <= label_smoothing <= 1, got label_smoothing={label_smoothing!r}")
    k = logits.shape[1]
    onehot = np.moveaxis(np.eye(k, dtype=logits.dtype)[labels], -1, 1)
    return (1 - label_smoothing) * onehot + label_smoothing / k


def cross_entropy(logits, labels, label_smoothing=0.0):
    """Mean over examples of ``−Σ_k t_k log softmax(logits)_k``, t the (smoothed) one-hot target.

    logits ``(N, K)`` or ``(N, K, *)``, labels ``(N,)`` or ``(N, *)`` integers in [0, K) -> float.

    >>> round(cross_entropy(np.array([[0.0, 0.0]]), np.array([1])), 6)  # log 2
    0.693147
    """
    logits, labels = _check_labels("cross_entropy", logits, labels)
    logits = logits.astype(float_dtypes(logits)[0], copy=False)
    per_example = -(_targets(logits, labels, label_smoothing) * log_softmax(logits)).sum(axis=1)
    return float(per_example.mean())


def cross_entropy_backward(logits, labels, label_smoothing=0.0):
    """∂ cross_entropy / ∂ logits = (softmax(logits) − t) / (number of examples), shaped like logits."""
    logits, labels = _check_labels("cross_entropy_backward", logits, labels)
    compute, result = float_dtypes(logits)
    logits = logits.astype(compute, copy=False)
    grad = (np.exp(log_softmax(logits)) - _targets(logits, labels, label_smoothing)) / labels.size
    return grad.astype(result, copy=False)


def mse(prediction, target):
    """Mean of ``(prediction − target)²`` over every element -> float."""
    prediction, target = as_array("mse", "prediction", prediction), as_array("mse", "target", target)
    if prediction.shape != target.shape:
        raise ValueError(f"mse: expected target of shape {shape_str(prediction.shape)}, got target of shape {shape_str(target.shape)}")
    return float(np.mean((prediction - target) ** 2))


def mse_backward(prediction, target):
    """∂ mse / ∂ prediction = 2 (prediction − target) / (number of elements)."""
    prediction, target = as_array("mse_backward", "prediction", prediction), as_array("mse_backward", "target", target)
    dtype = float_dtypes(prediction, target)[1]
    return (2 * (prediction - target) / prediction.size).astype(dtype, copy=False)
