"""``convgrad explain``: the notes' derivation, generated and proven for any small configuration.

>>> from convgrad.explain import derive, explain
>>> print(explain(4, 2).splitlines()[0])
Convolution of a length-4 input with a length-2 kernel
"""

from .derivation import Derivation, VerificationError, derive
from .document import build
from .render import FORMATS, render


def explain(input_size, kernel_size, stride=1, padding=0, dilation=1, format="text") -> str:
    """The derivation for this configuration, verified, as a document in ``format`` (see :data:`FORMATS`)."""
    if format not in FORMATS:
        raise ValueError(f"explain: expected format one of {FORMATS}, got {format!r}")
    derivation = derive(input_size, kernel_size, stride, padding, dilation)
    derivation.verify()
    return render(build(derivation), format)


__all__ = ["Derivation", "VerificationError", "derive", "explain", "render", "build", "FORMATS"]
