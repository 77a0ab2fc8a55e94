"""convgrad's global random generator: parameter initialisation and dropout masks draw from it.

``manual_seed(s)`` makes both reproducible, as ``torch.manual_seed`` does for PyTorch.

>>> import convgrad as cg
>>> cg.manual_seed(0); a = cg.nn.Linear(3, 2).weight.data
>>> cg.manual_seed(0); b = cg.nn.Linear(3, 2).weight.data
>>> bool((a == b).all())
True
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

_state = {"generator": np.random.default_rng()}


def manual_seed(seed: int) -> None:
    """Re-seed the global generator.

    >>> import convgrad as cg
    >>> cg.manual_seed(3); first = cg.nn.Conv2d(1, 2, 3).weight.data
    >>> cg.manual_seed(3); bool((cg.nn.Conv2d(1, 2, 3).weight.data == first).all())
    True
    """
    _state["generator"] = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The global generator (its state can be saved and restored through ``bit_generator.state``)."""
    return _state["generator"]


@contextlib.contextmanager
def using(rng: np.random.Generator) -> Iterator[np.random.Generator]:
    """Make ``rng`` the global generator inside the block (a trainer's own stream), then restore."""
    previous = _state["generator"]
    _state["generator"] = rng
    try:
        yield rng
    finally:
        _state["generator"] = previous
