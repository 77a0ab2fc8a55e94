"""Loss modules: call with (prediction, target) to get a float; ``backward()`` returns the prediction's gradient."""

from __future__ import annotations

from .. import ops
from .module import Module


class CrossEntropyLoss(Module):
    """Softmax cross-entropy with mean reduction, as ``torch.nn.CrossEntropyLoss`` (class-index targets).

    >>> import numpy as np
    >>> loss = CrossEntropyLoss()
    >>> round(loss(np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([0, 1])), 4)
    0.1269
    >>> loss.backward().round(4)
    array([[-0.0596,  0.0596],
           [ 0.0596, -0.0596]])
    """

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        self._config = dict(label_smoothing=label_smoothing)
        self.label_smoothing = label_smoothing

    def __call__(self, logits, labels):
        return self.forward(logits, labels)

    def forward(self, logits, labels):
        self._saved = (logits, labels)
        return ops.cross_entropy(logits, labels, self.label_smoothing)

    def backward(self, dloss=1.0):
        return ops.cross_entropy_backward(*self._saved, self.label_smoothing) * dloss


class MSELoss(Module):
    """Mean squared error, as ``torch.nn.MSELoss``."""

    def __call__(self, prediction, target):
        return self.forward(prediction, target)

    def forward(self, prediction, target):
        self._saved = (prediction, target)
        return ops.mse(prediction, target)

    def backward(self, dloss=1.0):
        return ops.mse_backward(*self._saved) * dloss
