"""``convgrad verify``: every convolution algorithm checked against numerical gradients, on this machine.

For a set of configurations chosen to catch the classic bugs (non-square shapes, per-dim stride and
padding, strides that do not divide the span, groups, dilation, every padding mode, 1-3 spatial
dims), each algorithm's forward is compared with the notes' loops and its dx, dW and db with central
differences of ``L = Σ y · dy`` for a random dy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, TextIO

import numpy as np

from .conv import ALGORITHMS, conv, conv_backward
from .gradcheck import numerical_gradient, rel_error

TOLERANCE = 1e-8


@dataclass(frozen=True)
class Check:
    name: str
    x_shape: tuple
    w_shape: tuple
    options: dict


CHECKS = (
    Check("1-D, the notes' example", (1, 1, 4), (1, 1, 2), {}),
    Check("1-D, stride 3, dilation 2, reflect", (2, 3, 13), (4, 3, 3), dict(stride=3, dilation=2, padding=2, padding_mode="reflect")),
    Check("2-D, 4x4 and 2x2, the notes' example", (1, 1, 4, 4), (1, 1, 2, 2), {}),
    Check("2-D, H != W, per-dim stride, (lo, hi) padding", (2, 2, 7, 10), (3, 2, 3, 2), dict(stride=(2, 3), padding=((1, 0), (2, 1)))),
    Check("2-D, groups 2, dilation (2, 1), circular", (1, 4, 6, 7), (6, 2, 3, 3), dict(groups=2, dilation=(2, 1), padding=1, padding_mode="circular")),
    Check("2-D, depthwise, 'same', replicate", (2, 3, 5, 6), (3, 1, 4, 3), dict(groups=3, padding="same", padding_mode="replicate")),
    Check("3-D, stride (1, 2, 2), padding 1", (1, 2, 4, 5, 6), (2, 2, 2, 3, 3), dict(stride=(1, 2, 2), padding=1)),
)


@dataclass(frozen=True)
class Outcome:
    check: str
    algorithm: str
    errors: dict

    @property
    def passed(self) -> bool:
        return all(e < TOLERANCE for e in self.errors.values())


def run_check(check: Check, algorithm: str, seed: int = 0) -> Outcome:
    """Relative errors of y (against the naive loops) and dx, dW, db (against central differences)."""
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=check.x_shape), rng.normal(size=check.w_shape), rng.normal(size=check.w_shape[0])
    kw = dict(check.options, algorithm=algorithm)
    y = conv(x, w, b, **kw)
    dy = rng.normal(size=y.shape)
    dx, dw, db = conv_backward(dy, x, w, **kw)
    errors = {
        "y": rel_error(y, conv(x, w, b, **dict(kw, algorithm="naive"))),
        "dx": rel_error(dx, numerical_gradient(lambda v: conv(v, w, b, **kw), x, dy)),
        "dW": rel_error(dw, numerical_gradient(lambda v: conv(x, v, b, **kw), w, dy)),
        "db": rel_error(db, numerical_gradient(lambda v: conv(x, w, v, **kw), b, dy)),
    }
    return Outcome(check.name, algorithm, errors)


def run(algorithms: Iterable[str] = tuple(ALGORITHMS), seed: int = 0, out: TextIO | None = None) -> bool:
    """Run every check for every algorithm, print a table to ``out``; True when all pass."""
    write = (lambda line: print(line, file=out)) if out is not None else print
    write(f"{'configuration':<48} {'algorithm':<11} {'y':>8} {'dx':>8} {'dW':>8} {'db':>8}  result")
    ok = True
    for check in CHECKS:
        for name in algorithms:
            outcome = run_check(check, name, seed)
            ok &= outcome.passed
            cells = " ".join(f"{e:8.1e}" for e in outcome.errors.values())
            write(f"{check.name:<48} {name:<11} {cells}  {'ok' if outcome.passed else 'FAIL'}")
    write(f"relative errors must stay below {TOLERANCE:g}: {'all passed' if ok else 'FAILURES above'}")
    return ok
