"""convgrad.explain: the notes' worked examples equation by equation, other configurations against
convgrad's numeric convolution, and every output format rendered by a real renderer."""

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import examples

import convgrad as cg
from convgrad.explain import VerificationError, derive, explain

S = sympy.Symbol


def test_notes_1d_example_equation_by_equation():
    d = derive(4, 2)
    x1, x2, x3, x4 = S("x_1"), S("x_2"), S("x_3"), S("x_4")
    w1, w2, b = S("w_1"), S("w_2"), S("b")
    dy1, dy2, dy3 = S("dy_1"), S("dy_2"), S("dy_3")
    assert list(d.x) == [x1, x2, x3, x4] and list(d.w) == [w1, w2] and list(d.dy) == [dy1, dy2, dy3]
    expected_y = [w1 * x1 + w2 * x2 + b, w1 * x2 + w2 * x3 + b, w1 * x3 + w2 * x4 + b]
    assert [sympy.expand(a - e) for a, e in zip(d.y, expected_y)] == [0, 0, 0]
    assert sympy.expand(d.db - (dy1 + dy2 + dy3)) == 0
    assert sympy.expand(d.dw[0] - (x1 * dy1 + x2 * dy2 + x3 * dy3)) == 0
    assert sympy.expand(d.dw[1] - (x2 * dy1 + x3 * dy2 + x4 * dy3)) == 0
    expected_dx = [w1 * dy1,
                   w2 * dy1 + w1 * dy2,
                   w2 * dy2 + w1 * dy3,   # the notes write w3 for w1 here
                   w2 * dy3]              # and w3 for w2 here
    assert [sympy.expand(a - e) for a, e in zip(d.dx, expected_dx)] == [0, 0, 0, 0]
    assert d.jacobian == sympy.Matrix([[w1, w2, 0, 0], [0, w1, w2, 0], [0, 0, w1, w2]])
    # dx = [0, dy1, dy2, dy3, 0] * [w2, w1] (the notes drop the leading 0)
    assert list(d.as_forward["dy_padded"]) == [0, dy1, dy2, dy3, 0]
    assert list(d.as_forward["w_rotated"]) == [w2, w1]
    assert d.verify() is True


def test_notes_2d_example_equation_by_equation():
    d = derive("4x4", "2x2")
    x = lambda i, j: S(f"x_{i}_{j}")  # noqa: E731 (1-based, as the notes)
    w = lambda k, l: S(f"w_{k}_{l}")  # noqa: E731
    dy = lambda i, j: S(f"dy_{i}_{j}")  # noqa: E731
    b = S("b")
    assert sympy.expand(d.y[0, 0] - (w(1, 1) * x(1, 1) + w(1, 2) * x(1, 2) + w(2, 1) * x(2, 1) + w(2, 2) * x(2, 2) + b)) == 0
    assert sympy.expand(d.y[0, 1] - (w(1, 1) * x(1, 2) + w(1, 2) * x(1, 3) + w(2, 1) * x(2, 2) + w(2, 2) * x(2, 3) + b)) == 0
    assert sympy.expand(d.y[1, 0] - (w(1, 1) * x(2, 1) + w(1, 2) * x(2, 2) + w(2, 1) * x(3, 1) + w(2, 2) * x(3, 2) + b)) == 0
    dw12 = (x(1, 2) * dy(1, 1) + x(1, 3) * dy(1, 2) + x(1, 4) * dy(1, 3) + x(2, 2) * dy(2, 1) + x(2, 3) * dy(2, 2)
            + x(2, 4) * dy(2, 3) + x(3, 2) * dy(3, 1) + x(3, 3) * dy(3, 2) + x(3, 4) * dy(3, 3))
    assert sympy.expand(d.dw[0, 1] - dw12) == 0
    assert sympy.expand(d.dx[0, 0] - w(1, 1) * dy(1, 1)) == 0
    assert sympy.expand(d.dx[3, 3] - w(2, 2) * dy(3, 3)) == 0
    assert sympy.expand(d.dx[1, 1] - (w(2, 2) * dy(1, 1) + w(2, 1) * dy(1, 2) + w(1, 2) * dy(2, 1) + w(1, 1) * dy(2, 2))) == 0
    assert sympy.expand(d.db - sum(dy(i, j) for i in range(1, 4) for j in range(1, 4))) == 0
    # every entry by the notes' general formulas
    for i in range(1, 4):
        for j in range(1, 4):
            y_ij = sum(w(k, l) * x(i + k - 1, j + l - 1) for k in (1, 2) for l in (1, 2)) + b
            assert sympy.expand(d.y[i - 1, j - 1] - y_ij) == 0
    for m in (1, 2):
        for n in (1, 2):
            assert sympy.expand(d.dw[m - 1, n - 1] - sum(dy(i, j) * x(i + m - 1, j + n - 1)
                                                         for i in range(1, 4) for j in range(1, 4))) == 0
    for m in range(1, 5):
        for n in range(1, 5):
            dx_mn = sum(w(m - i + 1, n - j + 1) * dy(i, j) for i in range(1, 4) for j in range(1, 4)
                        if 1 <= m - i + 1 <= 2 and 1 <= n - j + 1 <= 2)
            assert sympy.expand(d.dx[m - 1, n - 1] - dx_mn) == 0
    # dx = pad(dy) * rot180(W), dy zero-padded by k - 1 = 1 on every side
    assert d.as_forward["dy_padded"].shape == (5, 5) and d.as_forward["dy_padded"][0].tolist() == [0] * 5
    assert d.as_forward["w_rotated"].tolist() == [[w(2, 2), w(2, 1)], [w(1, 2), w(1, 1)]]
    assert d.verify() is True


CONFIGS = [
    dict(input_size=7, kernel_size=3, stride=2, padding=1),
    dict(input_size=9, kernel_size=2, stride=3, padding=((2, 0),), dilation=3),
    dict(input_size="5x6", kernel_size="3x2", stride=(2, 1), padding=((1, 0), 1), dilation=(1, 2)),
    dict(input_size="4x5", kernel_size="2x3", padding="same"),
    dict(input_size="6x4", kernel_size="3x1", stride=(3, 2), dilation=(2, 1)),
]


def _against_numeric(d, seed):
    """Substitute random numbers into the symbolic y, dx, dw, db and compare with conv / conv_backward."""
    rng = np.random.default_rng(seed)
    values = {s: rng.normal() for s in (*d.x.ravel(), *d.w.ravel(), d.b, *d.dy.ravel())}
    numeric = lambda array: np.vectorize(lambda e: float(sympy.sympify(e).subs(values)))(array)  # noqa: E731
    x, w = numeric(d.x)[None, None], numeric(d.w)[None, None]
    dy = numeric(d.dy)[None, None]
    kw = dict(stride=d.stride, padding=d.pads, dilation=d.dilation)
    y = cg.conv(x, w, np.array([values[d.b]]), **kw)
    dx, dw, db = cg.conv_backward(dy, x, w, **kw)
    np.testing.assert_allclose(numeric(d.y), y[0, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(numeric(d.dx), dx[0, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(numeric(d.dw), dw[0, 0], rtol=1e-12, atol=1e-12)
    assert float(d.db.subs(values)) == pytest.approx(db[0], rel=1e-12)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_configurations_agree_with_conv_and_verify(config):
    d = derive(**config)
    _against_numeric(d, seed=1)
    assert d.verify() is True


@settings(max_examples=examples(15))
@given(nd=st.sampled_from([1, 2]), data=st.data())
def test_random_configurations_verify(nd, data):
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(nd))
    stride = tuple(data.draw(st.integers(1, 3)) for _ in range(nd))
    padding = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in range(nd))
    sizes = tuple(max(1, dl * (k - 1) + 1 - lo - hi) + data.draw(st.integers(0, 3))
                  for k, dl, (lo, hi) in zip(kernel, dilation, padding))
    d = derive(sizes, kernel, stride, padding, dilation)
    _against_numeric(d, seed=2)
    assert d.verify()


def test_verify_names_the_first_failing_entry():
    d = derive(4, 2)
    d.dx[2] = d.dx[2] + S("w_1")
    with pytest.raises(VerificationError, match=r"dx\(3,\): the chain rule gives"):
        d.verify()
    d = derive(4, 2)
    d.y[1] = d.y[1] + 1
    with pytest.raises(VerificationError, match=r"y\(2,\)"):
        d.verify()


@pytest.mark.parametrize("args, message", [
    (("13", 2), "too large to read"),
    (("12x12", "2x2"), "too many to read"),
    (("4x4x4", "2x2x2"), "1-D or 2-D"),
    (("4x4", 2), "2-D kernel for a 2-D input"),
    (("4", "5"), "does not fit"),
    (("four", 2), "like 4 or 4x4"),
])
def test_unreadable_or_invalid_sizes_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        derive(*args)


def test_names_take_a_separator_once_an_index_passes_nine():
    text = explain("2x11", "1x2")
    assert "x₁,₁₀" in text and "x₁₉" in text and "x₂,₁₁" in text
    assert "∂L/∂y₁,₁₀" in text


def test_text_document_walks_the_notes_path():
    text = explain(4, 2)
    for line in ["L′ = ⌊(L + pₗₒ + pₕᵢ − d·(k − 1) − 1) / s⌋ + 1 = ⌊(4 + 0 + 0 − 1·(2 − 1) − 1) / 1⌋ + 1 = 3",
                 "y₁ = w₁·x₁ + w₂·x₂ + b", "db = ∂L/∂y₁ + ∂L/∂y₂ + ∂L/∂y₃",
                 "dw₁ = x₁·∂L/∂y₁ + x₂·∂L/∂y₂ + x₃·∂L/∂y₃", "dx₃ = w₂·∂L/∂y₂ + w₁·∂L/∂y₃", "∂y/∂x =", "Verified"]:
        assert line in text, line
    lines = text.splitlines()
    equals = [line.index("=") for line in lines if line.lstrip().startswith("dx₁") or line.lstrip().startswith("dx₂")]
    assert len(set(equals)) == 1  # aligned columns


def test_markdown_structure(tmp_path):
    markdown = explain("3x3", "2x2", padding=1, format="markdown")
    assert markdown.startswith("# Convolution of a 3×3 input")
    assert "## Forward pass" in markdown and markdown.count("$$") % 2 == 0
    assert r"\begin{aligned}" in markdown and r"\begin{bmatrix}" in markdown
