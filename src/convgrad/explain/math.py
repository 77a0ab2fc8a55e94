"""A small model of the mathematics in a derivation, and its conversion from SymPy.

Nodes: :class:`Sym` (x₁₁, w₂, b, ∂L/∂y₃, and the labels y, dx, dw, db), :class:`Num`, :class:`Prod`,
:class:`Sum`, :class:`Matrix`, :class:`Frac`, :class:`Floor`, :class:`Word` (a plain identifier such
as H or s) and :class:`Op` (an operator between nodes of a formula). A formula is a tuple of nodes.
Each renderer in ``convgrad.explain.render`` turns these into text, LaTeX or MathML.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

KIND_ORDER = {"w": 0, "x": 1, "dy": 2, "b": 3}  # factor order in a product, as the notes write it


@dataclass(frozen=True)
class Sym:
    """A named, indexed quantity: kind x, w, b, dy (∂L/∂y), or a label y, dx, dw, db."""

    kind: str
    index: tuple[int, ...] = ()

    @property
    def subscript(self) -> tuple[str, ...]:
        return tuple(str(i) for i in self.index)

    @property
    def separated(self) -> bool:
        """Indices are separated by commas once one of them passes 9 (x₁,₁₀ rather than x₁₁₀)."""
        return any(i > 9 for i in self.index)


@dataclass(frozen=True)
class Num:
    value: int


@dataclass(frozen=True)
class Prod:
    factors: tuple


@dataclass(frozen=True)
class Sum:
    terms: tuple


@dataclass(frozen=True)
class Matrix:
    rows: tuple  # tuple of tuples of nodes


@dataclass(frozen=True)
class Frac:
    numerator: tuple  # a formula
    denominator: tuple


@dataclass(frozen=True)
class Floor:
    inner: tuple  # a formula


@dataclass(frozen=True)
class Word:
    """A plain identifier with an optional subscript word: H, W′, p_lo."""

    text: str
    sub: str = ""


@dataclass(frozen=True)
class Op:
    """An operator inside a formula: one of = + − · ∗ ⋆ ( ) and the like."""

    text: str


def _factor(symbol, names) -> object:
    if symbol.is_Number:
        return Num(int(symbol))
    name = names[symbol]
    return Sym(name.kind, name.index)


def _term_key(term: Prod | Sym | Num):
    """Order of terms as in the notes: by the upstream-gradient index, then kernel, then input; b last."""
    factors = term.factors if isinstance(term, Prod) else (term,)
    kinds = {f.kind: f.index for f in factors if isinstance(f, Sym)}
    return ("dy" not in kinds, kinds.get("dy", ()), "w" not in kinds and "x" not in kinds,
            kinds.get("w", ()), kinds.get("x", ()))


def node(expr, names: dict):
    """A SymPy expression (a sum of products of symbols) as a :class:`Sum` of :class:`Prod` in the notes' order."""
    expr = sympy.expand(expr)
    if expr == 0:
        return Num(0)
    terms = []
    for term in sympy.Add.make_args(expr):
        coefficient, factors = term.as_coeff_mul()
        parts = sorted((_factor(f, names) for f in factors), key=lambda f: KIND_ORDER.get(getattr(f, "kind", ""), 9))
        if coefficient != 1:
            parts.insert(0, Num(int(coefficient)))
        terms.append(parts[0] if len(parts) == 1 else Prod(tuple(parts)))
    terms.sort(key=_term_key)
    return terms[0] if len(terms) == 1 else Sum(tuple(terms))


def matrix(array: np.ndarray, names: dict, column: bool = True) -> Matrix:
    """An object array as a Matrix node; a 1-D array as a column (as the notes write vectors)."""
    array = np.asarray(array, dtype=object)
    if array.ndim == 1:
        array = array[:, None] if column else array[None, :]
    return Matrix(tuple(tuple(node(v, names) for v in row) for row in array))
