"""Text of table cells and whole tables in two styles: Markdown (README, terminal) and LaTeX.

Everything here is a pure function of numbers and labels with fixed-width float formatting
(``%.3g`` means, ``%.2g`` standard errors), so the same store always renders the same bytes.
"""

from __future__ import annotations

import math
from typing import Literal

import pandas as pd

TableStyle = Literal["markdown", "latex"]
STYLES: tuple[str, ...] = ("markdown", "latex")

#: Appended to a cell whose mean lies below the reference floor (explained in the caption).
BELOW_FLOOR_MARK = {"markdown": "†", "latex": r"$^\dagger$"}

# Characters with a meaning in LaTeX text mode, and how to write them literally.
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "†": r"$^\dagger$", "√": r"$\surd$", "–": "--", "×": r"$\times$",
}


def check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown table style '{style}'; valid styles: {', '.join(STYLES)}")


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters written literally (labels, captions)."""
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


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
    """The text of one table cell from one row of :func:`benchmark.tables.aggregate`.

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


def render_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs (``\\toprule``/``\\midrule``/``\\bottomrule``) LaTeX table float.

    Args:
        table: cells already in LaTeX (see :func:`cell_text`); index and column labels are
            plain text and escaped here.
        caption: LaTeX caption text (already escaped).
        label: ``\\label`` key.
    """
    frame = table.reset_index()
    frame.columns = [latex_escape(str(column)) for column in frame.columns]
    frame.iloc[:, 0] = [latex_escape(str(value)) for value in frame.iloc[:, 0]]
    return frame.to_latex(index=False, escape=False, caption=caption, label=label,
                          position="t", column_format="l" * frame.shape[1])
