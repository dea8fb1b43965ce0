"""Text of table cells and whole tables in two styles: Markdown (README, terminal) and LaTeX.

Everything here is a pure function of numbers and labels with fixed-width float formatting
(``%.3g`` means, ``%.2g`` standard errors), so the same store always renders the same bytes.

LaTeX output is for pdflatex (not only xelatex): every ``.tex`` is ASCII, a complete
``table`` float with exactly one ``\\caption`` that compiles with ``booktabs`` and ``graphicx``
loaded (:func:`render_latex`; ``tests/fast/test_latex_tables.py`` compiles the committed ones).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Literal

import pandas as pd

TableStyle = Literal["markdown", "latex"]
STYLES: tuple[str, ...] = ("markdown", "latex")

#: Appended to a cell whose mean lies below the reference floor (explained in the caption).
BELOW_FLOOR_MARK = {"markdown": "†", "latex": r"$^\dagger$"}

# Characters with a meaning in LaTeX text mode (or that pdflatex's default OT1 font encoding
# prints as something else: "<" as an inverted exclamation mark, "|" as a dash), and the
# non-ASCII characters our labels and captions use, with how to write them in pdflatex.
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"$<$", ">": r"$>$", "|": r"$|$",
    "±": r"$\pm$", "†": r"$^\dagger$", "√": r"$\surd$", "–": "--", "—": "---",
    "×": r"$\times$", "−": r"$-$", "·": r"$\cdot$", "≤": r"$\leq$", "≥": r"$\geq$",
    "≈": r"$\approx$", "→": r"$\to$", "∞": r"$\infty$", "‖": r"$\|$", "∇": r"$\nabla$",
    "²": r"$^2$", "³": r"$^3$", "½": r"$\frac{1}{2}$", "°": r"$^\circ$",
    "‘": "`", "’": "'", "“": "``", "”": "''", "…": r"\ldots{}", "\u00a0": "~",
    "α": r"$\alpha$", "β": r"$\beta$", "γ": r"$\gamma$", "δ": r"$\delta$",
    "ε": r"$\varepsilon$", "η": r"$\eta$", "θ": r"$\theta$", "λ": r"$\lambda$",
    "μ": r"$\mu$", "π": r"$\pi$", "ρ": r"$\rho$", "σ": r"$\sigma$", "τ": r"$\tau$",
    "φ": r"$\phi$", "ω": r"$\omega$", "Σ": r"$\Sigma$", "Δ": r"$\Delta$",
}
#: What a character with no pdflatex spelling above (and no ASCII base letter) becomes.
LATEX_UNKNOWN = "?"
# Characters allowed in a \label key as they are; anything else becomes "-".
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9:_+.\-]")


def check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown table style '{style}'; valid styles: {', '.join(STYLES)}")


def _latex_char(char: str) -> str:
    if char in _LATEX_SPECIAL:
        return _LATEX_SPECIAL[char]
    if char.isascii():
        return char
    # An accented letter keeps its base letter (é -> e); anything else cannot be typeset by
    # pdflatex without a package we do not load, so it becomes a visible placeholder.
    base = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
    if not base or not base.isprintable():
        return LATEX_UNKNOWN
    return "".join(_LATEX_SPECIAL.get(part, part) for part in base)


def latex_escape(text: str) -> str:
    """``text`` written literally in LaTeX text mode, in ASCII that pdflatex typesets: special
    characters escaped, the non-ASCII characters we use spelled as LaTeX commands, any other
    non-ASCII character reduced to its ASCII base letter or :data:`LATEX_UNKNOWN`."""
    return "".join(_latex_char(char) for char in text)


def _latex_number(text: str) -> str:
    # "4.6e-05" would typeset as "4.6e-05" with a hyphen; math mode gives 4.6 x 10^-5.
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa}\\times 10^{{{int(exponent)}}}"


def format_value(mean: float, se: float, digits: int = 3, style: TableStyle = "markdown") -> str:
    """``mean ± se`` with ``digits`` significant digits on the mean and two on the s.e.

    Args:
        mean: the mean over seeds; ``n/a`` when not finite.
        se: its standard error; omitted when not finite (a single seed).
        digits: significant digits of the mean.
        style: ``markdown`` (plain text) or ``latex`` (math mode, ``\\pm``, ``\\times 10^{k}``).
    """
    check_style(style)
    if not math.isfinite(mean):
        return "n/a"
    text = f"{mean:.{digits}g}"
    error = f"{se:.2g}" if math.isfinite(se) else None
    if style == "markdown":
        return text if error is None else f"{text} ± {error}"
    if error is None:
        return f"${_latex_number(text)}$"
    return f"${_latex_number(text)} \\pm {_latex_number(error)}$"


def format_count(value: float) -> str:
    """A cost figure with 3 significant digits: ``–`` when missing, ``never`` when infinite
    (a break-even that is never reached), plain digits up to 10^6 (``2701``, ``0.0123``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    value = float(value)
    if math.isinf(value):
        return "never"
    if abs(value) >= 100 and abs(value) < 1e6:
        return f"{value:.0f}"
    return f"{value:.3g}"


def format_ratio(value: float) -> str:
    """A speed-up ``t_base / t`` as ``×12.3`` (3 significant digits); ``–`` when missing."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"×{float(value):.3g}"


def bold(text: str, style: TableStyle) -> str:
    check_style(style)
    # \textbf alone leaves math mode (our numbers) in normal weight; \boldmath covers it.
    return f"**{text}**" if style == "markdown" else f"\\textbf{{\\boldmath {text}}}"


def cell_text(record: pd.Series, style: TableStyle = "markdown") -> str:
    """The text of one table cell from one row of :func:`benchmark.report.aggregate.aggregate`.

    ``diverged`` / ``failed`` when no seed produced samples; otherwise the mean ± s.e. of the
    seeds with a finite value, a note ``(k/m diverged)`` / ``(k/m failed)`` for the others,
    bold when it is the significant best of its column and a dagger when below the floor.

    Args:
        record: fields ``mean, se, num_seeds, num_ok, num_diverged, num_failed, num_values,
            below_floor, best``.
        style: ``markdown`` or ``latex``.
    """
    num_seeds = int(record["num_seeds"])
    num_diverged, num_failed = int(record["num_diverged"]), int(record["num_failed"])
    if int(record["num_ok"]) == 0:
        if not num_failed:
            return "diverged"
        if not num_diverged:
            return "failed"
        return f"diverged ({num_diverged}/{num_seeds}), failed ({num_failed}/{num_seeds})"
    text = format_value(float(record["mean"]), float(record["se"]), style=style)
    if bool(record["best"]):
        text = bold(text, style)
    if bool(record["below_floor"]):
        text += f" {BELOW_FLOOR_MARK[style]}"
    notes = [f"{count}/{num_seeds} {what}"
             for count, what in ((num_diverged, "diverged"), (num_failed, "failed")) if count]
    return f"{text} ({', '.join(notes)})" if notes else text


def render_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (index as the first column); ``(empty)`` if empty."""
    # No number parsing: tabulate would right-align columns whose cells all look numeric
    # (single seeds), so alignment would depend on the data.
    return table.to_markdown(disable_numparse=True) if not table.empty else "(empty)"


#: The tabular's width: its natural width, shrunk to the text width when wider (never enlarged,
#: so a narrow table keeps the document's font size); needs ``graphicx``.
LATEX_FIT_WIDTH = r"\ifdim\width>\linewidth\linewidth\else\width\fi"


def latex_label(key: str) -> str:
    """``key`` with every character unsafe in a ``\\label`` (not ``A-Za-z0-9:_+.-``) as ``-``."""
    return _LABEL_UNSAFE.sub("-", key)


def render_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """A complete booktabs (``\\toprule``/``\\midrule``/``\\bottomrule``) LaTeX table float.

    The float has exactly one ``\\caption`` and its ``tabular`` sits in a ``\\resizebox`` that
    shrinks it to ``\\linewidth`` when it is wider (:data:`LATEX_FIT_WIDTH`), so any number of
    columns fits the text width. It compiles under pdflatex with ``booktabs`` and ``graphicx``
    (``\\documentclass{article}\\usepackage{booktabs}\\usepackage{graphicx}``, then
    ``\\input`` the file inside the document). A table without rows gets one row
    "(no applicable target)".

    Args:
        table: cells already in LaTeX (see :func:`cell_text`); the index (every level: the
            leading columns) and the column labels are plain text and escaped here.
        caption: LaTeX caption text (already escaped).
        label: ``\\label`` key (characters unsafe in a key become ``-``).
    """
    plain = table.index.nlevels  # the leading columns, which hold plain-text row labels
    frame = table.reset_index()
    header = [latex_escape(str(column)) for column in frame.columns]
    lines = [" & ".join([*(latex_escape(str(name)) for name in row[:plain]),
                         *(str(cell) for cell in row[plain:])]) + r" \\"
             for row in frame.itertuples(index=False, name=None)]
    if not lines:
        lines = [rf"\multicolumn{{{len(header)}}}{{l}}{{(no applicable target)}} \\"]
    return "\n".join([
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{caption}}}",
        rf"\label{{{latex_label(label)}}}",
        rf"\resizebox{{{LATEX_FIT_WIDTH}}}{{!}}{{%",
        rf"\begin{{tabular}}{{{'l' * len(header)}}}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
        *lines,
        r"\bottomrule",
        r"\end{tabular}%",
        "}",
        r"\end{table}",
        "",
    ])
