"""Renderers of a derivation's document: Unicode text, Markdown, LaTeX and self-contained HTML (MathML).

The mathematics is written once (``convgrad.explain.math``); each format here is a small function
per node type: text lays nodes out as boxes of lines (so matrices sit side by side), LaTeX writes
``bmatrix`` and ``align*``, MathML writes ``mtable`` and ``mfrac``.
"""

from __future__ import annotations

import html
import textwrap

from .document import Aligned, Formula, Heading, Para
from .math import Floor, Frac, Matrix, Num, Op, Prod, Sum, Sym, Word

FORMATS = ("text", "markdown", "latex", "html")
SUBSCRIPT = str.maketrans("0123456789,aehilmnoprstx", "₀₁₂₃₄₅₆₇₈₉,ₐₑₕᵢₗₘₙₒₚᵣₛₜₓ")
LABELS_TEXT = {"dy_label": "∂L/∂y", "jacobian": "∂y/∂x", "jacobian_t": "(∂y/∂x)ᵀ"}
LABELS_LATEX = {"dy_label": r"\frac{\partial L}{\partial y}", "jacobian": r"\frac{\partial y}{\partial x}",
                "jacobian_t": r"\left(\frac{\partial y}{\partial x}\right)^{\top}"}
OPS_LATEX = {"·": r"\cdot", "∗": r"\ast", "⋆": r"\star", "−": "-", ",": r",\quad"}


# --- text --------------------------------------------------------------------------------------

def _sub_text(parts: tuple[str, ...], separated: bool) -> str:
    return (",".join(parts) if separated else "".join(parts)).translate(SUBSCRIPT)


def _text_word(word: Word) -> str:
    if not word.sub:
        return word.text
    sub = word.sub.translate(SUBSCRIPT)
    return word.text + (sub if all(c != t for c, t in zip(sub, word.sub)) else "_" + word.sub)


def text_inline(n) -> str:
    """A node on one line."""
    if isinstance(n, Sym):
        if n.kind in LABELS_TEXT:
            return LABELS_TEXT[n.kind]
        sub = _sub_text(n.subscript, n.separated)
        return f"∂L/∂y{sub}" if n.kind == "dy" else n.kind + sub
    if isinstance(n, Num):
        return str(n.value)
    if isinstance(n, Word):
        return _text_word(n)
    if isinstance(n, Op):
        return n.text
    if isinstance(n, Prod):
        return "·".join(text_inline(f) for f in n.factors)
    if isinstance(n, Sum):
        return " + ".join(text_inline(t) for t in n.terms)
    if isinstance(n, Frac):
        return f"({_text_formula(n.numerator)}) / {_text_formula(n.denominator)}"
    if isinstance(n, Floor):
        return f"⌊{_text_formula(n.inner)}⌋"
    raise TypeError(f"cannot write {n!r} on one line")


SPACED = {"+", "−", "=", "∗", "⋆"}  # binary operators written with a space on each side


def _text_formula(parts) -> str:
    out = ""
    for p in parts:
        piece = text_inline(p)
        if isinstance(p, Op) and p.text in SPACED:
            out += f" {piece} "
        elif isinstance(p, Op) and p.text == ",":
            out += ", "
        else:
            out += piece
    return out


def _box(n) -> list[str]:
    """A node as lines of equal width; a matrix gets brackets, everything else one line."""
    if not isinstance(n, Matrix):
        return [text_inline(n)]
    cells = [[text_inline(c) for c in row] for row in n.rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(cells[0]))]
    lines = [" ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    if len(lines) == 1:
        return [f"[{lines[0]}]"]
    left = ["⎡"] + ["⎢"] * (len(lines) - 2) + ["⎣"]
    right = ["⎤"] + ["⎥"] * (len(lines) - 2) + ["⎦"]
    return [f"{a}{line}{b}" for a, line, b in zip(left, lines, right)]


def text_lines(parts) -> list[str]:
    """A formula laid out as boxes side by side, vertically centred; runs of one-line nodes are
    written as one piece so that operators get their usual spacing."""
    groups, run = [], []
    for p in parts:
        if isinstance(p, Matrix):
            if run:
                groups.append([_text_formula(run).strip()])
                run = []
            groups.append(_box(p))
        else:
            run.append(p)
    if run:
        groups.append([_text_formula(run).strip()])
    height = max(len(box) for box in groups)
    lines = [""] * height
    for number, box in enumerate(groups):
        top, width = (height - len(box)) // 2, max(len(s) for s in box)
        for row in range(height):
            piece = box[row - top] if top <= row < top + len(box) else ""
            lines[row] += (" " if number else "") + piece.ljust(width)
    return [line.rstrip() for line in lines]


def to_text(blocks) -> str:
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["", block.text, "=" * len(block.text) if not out else "-" * len(block.text)]
        elif isinstance(block, Para):
            out += [""] + textwrap.wrap(block.text, 100)
        elif isinstance(block, Formula):
            out += [""] + ["    " + line for line in text_lines(block.parts)]
        elif isinstance(block, Aligned):
            lefts = [_text_formula(lhs) for lhs, _ in block.rows]
            width = max(len(s) for s in lefts)
            out += [""] + [f"    {lhs.rjust(width)} = {_text_formula(rhs)}" for lhs, (_, rhs) in zip(lefts, block.rows)]
    return "\n".join(out).lstrip("\n") + "\n"


# --- LaTeX -------------------------------------------------------------------------------------

def _sub_latex(n: Sym) -> str:
    return ",".join(n.subscript) if n.separated else "".join(n.subscript)


def latex(n) -> str:
    if isinstance(n, Sym):
        if n.kind in LABELS_LATEX:
            return LABELS_LATEX[n.kind]
        if n.kind == "dy":
            return r"\frac{\partial L}{\partial y_{%s}}" % _sub_latex(n)
        base = {"dx": r"\mathit{dx}", "dw": r"\mathit{dw}", "db": r"\mathit{db}"}.get(n.kind, n.kind)
        return f"{base}_{{{_sub_latex(n)}}}" if n.index else base
    if isinstance(n, Num):
        return str(n.value)
    if isinstance(n, Word):
        base = n.text.replace("′", "'")
        return f"{base}_{{\\mathrm{{{n.sub}}}}}" if n.sub else base
    if isinstance(n, Op):
        return OPS_LATEX.get(n.text, n.text)
    if isinstance(n, Prod):
        return r" \, ".join(latex(f) for f in n.factors)
    if isinstance(n, Sum):
        return " + ".join(latex(t) for t in n.terms)
    if isinstance(n, Matrix):
        rows = r" \\ ".join(" & ".join(latex(c) for c in row) for row in n.rows)
        return r"\begin{bmatrix} " + rows + r" \end{bmatrix}"
    if isinstance(n, Frac):
        return r"\frac{%s}{%s}" % (latex_formula(n.numerator), latex_formula(n.denominator))
    if isinstance(n, Floor):
        return r"\left\lfloor %s \right\rfloor" % latex_formula(n.inner)
    raise TypeError(f"cannot write {n!r} in LaTeX")


def latex_formula(parts) -> str:
    return " ".join(latex(p) for p in parts)


def latex_aligned(block: Aligned, environment: str) -> str:
    rows = [f"{latex_formula(lhs)} &= {latex_formula(rhs)}" for lhs, rhs in block.rows]
    return f"\\begin{{{environment}}}\n" + " \\\\\n".join(rows) + f"\n\\end{{{environment}}}"


TEXT_TO_LATEX = {"∂": r"$\partial$", "⋆": r"$\star$", "∗": r"$\ast$", "·": r"$\cdot$", "×": r"$\times$",
                 "−": "-", "′": "'", "Σ": r"$\Sigma$", "°": r"$^\circ$", "&": r"\&", "%": r"\%", "_": r"\_",
                 "#": r"\#", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "$": r"\$", "\\": r"\textbackslash{}"}


def latex_text(text: str) -> str:
    """Plain text for pdflatex: special characters escaped, the few math symbols in math mode."""
    return "".join(TEXT_TO_LATEX.get(c, c) for c in text)


def to_latex(blocks) -> str:
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"\\section*{{{latex_text(block.text)}}}")
        elif isinstance(block, Para):
            body.append(latex_text(block.text))
        elif isinstance(block, Formula):
            body.append(f"\\[\n{latex_formula(block.parts)}\n\\]")
        elif isinstance(block, Aligned):
            body.append(latex_aligned(block, "align*"))
    return ("\\documentclass{article}\n\\usepackage{amsmath}\n\\setcounter{MaxMatrixCols}{30}\n"
            "\\begin{document}\n\n" + "\n\n".join(body) + "\n\n\\end{document}\n")


# --- Markdown ----------------------------------------------------------------------------------

def to_markdown(blocks) -> str:
    out, first = [], True
    for block in blocks:
        if isinstance(block, Heading):
            out.append(("# " if first else "## ") + block.text)
            first = False
        elif isinstance(block, Para):
            out.append(block.text.replace("*", r"\*").replace("_", r"\_"))
        elif isinstance(block, Formula):
            out.append(f"$$\n{latex_formula(block.parts)}\n$$")
        elif isinstance(block, Aligned):
            out.append(f"$$\n{latex_aligned(block, 'aligned')}\n$$")
    return "\n\n".join(out) + "\n"


# --- HTML with MathML --------------------------------------------------------------------------

def _mi(text: str) -> str:
    return f"<mi>{html.escape(text)}</mi>"


def _msub(base: str, parts: tuple[str, ...], separated: bool) -> str:
    inner = "<mo>,</mo>".join(f"<mn>{p}</mn>" for p in parts) if separated else f"<mn>{''.join(parts)}</mn>"
    return f"<msub>{base}<mrow>{inner}</mrow></msub>"


def _partial(numerator: str, denominator: str) -> str:
    return f"<mfrac><mrow><mo>∂</mo>{numerator}</mrow><mrow><mo>∂</mo>{denominator}</mrow></mfrac>"


def mathml(n) -> str:
    if isinstance(n, Sym):
        if n.kind == "dy_label":
            return _partial(_mi("L"), _mi("y"))
        if n.kind in ("jacobian", "jacobian_t"):
            frac = _partial(_mi("y"), _mi("x"))
            return frac if n.kind == "jacobian" else f"<msup><mrow><mo>(</mo>{frac}<mo>)</mo></mrow><mi>T</mi></msup>"
        if n.kind == "dy":
            return _partial(_mi("L"), _msub(_mi("y"), n.subscript, n.separated))
        return _msub(_mi(n.kind), n.subscript, n.separated) if n.index else _mi(n.kind)
    if isinstance(n, Num):
        return f"<mn>{n.value}</mn>"
    if isinstance(n, Word):
        return f"<msub>{_mi(n.text)}<mi>{html.escape(n.sub)}</mi></msub>" if n.sub else _mi(n.text)
    if isinstance(n, Op):
        return f"<mo>{html.escape(n.text)}</mo>"
    if isinstance(n, Prod):
        return "<mrow>" + "<mo>⋅</mo>".join(mathml(f) for f in n.factors) + "</mrow>"
    if isinstance(n, Sum):
        return "<mrow>" + "<mo>+</mo>".join(mathml(t) for t in n.terms) + "</mrow>"
    if isinstance(n, Matrix):
        rows = "".join("<mtr>" + "".join(f"<mtd>{mathml(c)}</mtd>" for c in row) + "</mtr>" for row in n.rows)
        return f"<mrow><mo>[</mo><mtable>{rows}</mtable><mo>]</mo></mrow>"
    if isinstance(n, Frac):
        return f"<mfrac>{mathml_formula(n.numerator)}{mathml_formula(n.denominator)}</mfrac>"
    if isinstance(n, Floor):
        return f"<mrow><mo>⌊</mo>{mathml_formula(n.inner)}<mo>⌋</mo></mrow>"
    raise TypeError(f"cannot write {n!r} in MathML")


def mathml_formula(parts) -> str:
    return "<mrow>" + "".join(mathml(p) for p in parts) + "</mrow>"


STYLE = """
body { font-family: Georgia, 'Times New Roman', serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #1d1d1f; background: #fdfdfb; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #333; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; color: #223; }
math[display=block] { margin: .8rem 0; overflow-x: auto; overflow-y: hidden; font-size: 1.1rem; }
mtable.equations mtd { padding: .15rem .2rem; }
mtable.equations mtd:first-child { text-align: right; }
mtable.equations mtd:last-child { text-align: left; }
p.verified { margin-top: 2rem; padding: .6rem .8rem; background: #eef7ee; border-left: 4px solid #3a7d3a; }
"""


def to_html(blocks) -> str:
    title = next((b.text for b in blocks if isinstance(b, Heading)), "convgrad explain")
    body, first = [], True
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{1 if first else 2}>{html.escape(block.text)}</h{1 if first else 2}>")
            first = False
        elif isinstance(block, Para):
            css = ' class="verified"' if block.text.startswith("Verified") else ""
            body.append(f"<p{css}>{html.escape(block.text)}</p>")
        elif isinstance(block, Formula):
            body.append(f'<math display="block">{mathml_formula(block.parts)}</math>')
        elif isinstance(block, Aligned):
            rows = "".join(
                f"<mtr><mtd columnalign=\"right\">{mathml_formula(lhs)}</mtd><mtd><mo>=</mo></mtd>"
                f"<mtd columnalign=\"left\">{mathml_formula(rhs)}</mtd></mtr>" for lhs, rhs in block.rows)
            body.append(f'<math display="block"><mtable class="equations">{rows}</mtable></math>')
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


RENDERERS = {"text": to_text, "markdown": to_markdown, "latex": to_latex, "html": to_html}


def render(blocks, format: str = "text") -> str:
    """The document in one of :data:`FORMATS`."""
    if format not in RENDERERS:
        raise ValueError(f"explain: expected format one of {FORMATS}, got {format!r}")
    return RENDERERS[format](blocks)
