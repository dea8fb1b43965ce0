"""Per-metric tables, and :func:`write_tables`, which writes every table of a store.

Tables are pure functions of the results store: rows in, formatted text out. One table per
metric: rows are sampler@budget (by sampler label, then budget; the floor row
``reference (floor)`` last), columns are target labels in natural order (``gaussian_d10`` <
``gaussian_d50`` < ``gaussian_d100``), so the same function gives Table 1 of a 2-D store and
the scaling table of a ``gaussian_d`` / ``funnel_d`` store. Each cell is mean ± standard error
over seeds with the marks (bold best, † below floor) of :mod:`benchmark.report.aggregate`.

:func:`write_tables` writes those (``ess`` in its own layout, :mod:`benchmark.report.ess`),
the summary tables (:mod:`benchmark.report.summary`), the
time-to-quality table (:mod:`benchmark.report.time_to_quality`), the matched-cost table
(:mod:`benchmark.report.matched_cost`), the training-quality table when training histories are
given (:mod:`benchmark.report.training_quality`), ``aggregate.csv`` and the list of planned
cells not run yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from benchmark.metrics.info import METRIC_INFO, lower_is_better
from benchmark.report.aggregate import (
    AGGREGATE_COLUMNS,
    FLOOR_ROW,
    aggregate,
    applicable_targets,
    natural_key,
    row_key,
    row_label,
)
from benchmark.report.ess import TABLE_NAME as ESS_TABLE
from benchmark.report.ess import render_ess
from benchmark.report.formatting import (
    TableStyle,
    cell_text,
    latex_escape,
    render_latex,
    render_markdown,
)
from benchmark.report.matched_cost import TABLE_NAME as MATCHED_COST
from benchmark.report.matched_cost import matched_cost_table
from benchmark.report.summary import write_summaries
from benchmark.report.time_to_quality import TABLE_NAME, time_to_quality_table
from benchmark.report.training_quality import TABLE_NAME as TRAINING_QUALITY
from benchmark.report.training_quality import training_quality_table
from benchmark.store import atomic_write_bytes

ROW_INDEX = "sampler@budget"
# Fixed float formatting of aggregate.csv: 12 significant digits hide last-bit differences of
# summation order while keeping every digit a table shows.
CSV_FLOAT_FORMAT = "%.12g"
MISSING_FILE = "missing.md"
#: Metrics with a layout of their own, written as ``<metric>.md`` / ``.tex`` in place of the
#: per-metric layout: ``(rows, style) -> text``.
OWN_LAYOUTS = {ESS_TABLE: render_ess}


def _metric_summary(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    return aggregate(rows[rows["metric"] == metric])


def metric_table(rows: pd.DataFrame, metric: str, style: TableStyle = "markdown") -> pd.DataFrame:
    """Samplers@budget × targets for one metric, as cell strings (see :func:`cell_text`).

    Args:
        rows: result rows (any metrics; only ``metric``'s are used).
        metric: metric name.
        style: ``markdown`` or ``latex`` cell text (index and column labels stay plain).

    Returns:
        Index ``sampler@budget`` (floor row last), one column per applicable target; empty
        when the metric has no rows or applies to no target.
    """
    summary = _metric_summary(rows, metric)
    targets = applicable_targets(summary) if not summary.empty else []
    if not targets:
        return pd.DataFrame()
    pairs = zip(summary["sampler"], summary["budget"], strict=True)
    keys = sorted({(sampler, int(budget)) for sampler, budget in pairs},
                  key=lambda key: row_key(*key))
    cells = {(row_label(r.sampler, r.budget), r.target): cell_text(pd.Series(r._asdict()), style)
             for r in summary.itertuples(index=False) if r.target in targets}
    labels = [row_label(*key) for key in keys]
    return pd.DataFrame([[cells.get((label, target), "") for target in targets]
                         for label in labels],
                        index=pd.Index(labels, name=ROW_INDEX), columns=targets)


def _span(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def caption(rows: pd.DataFrame, metric: str) -> str:
    """Plain-text caption: metric, direction, matrix, seeds, n, floor and the marks used."""
    subset = rows[rows["metric"] == metric]
    if subset.empty:
        return f"{metric}: no rows"
    summary = _metric_summary(rows, metric)
    entry = METRIC_INFO.get(metric)
    direction = {True: "lower is better", False: "higher is better", None: "direction unknown"}
    details = [metric, direction[lower_is_better(metric)]]
    matrices = sorted({str(m) for m in subset["matrix"].dropna()})
    if matrices:
        details.append(f"matrix {', '.join(matrices)}")
    title = f"{entry.pretty_name if entry else metric} [{'; '.join(details)}]"
    sizes = ", ".join(str(n) for n in sorted(subset["n"].astype(int).unique()))
    text = (f"{title}: mean ± s.e. over {_span(summary['num_seeds'].astype(int).tolist())} "
            f"seed(s), n = {sizes} samples per cell; '{FLOOR_ROW}' is the same statistic on "
            f"exact samples at the same n.")
    targets = set(applicable_targets(summary))
    shown = summary[summary["target"].isin(targets)]
    if lower_is_better(metric) is not None:
        text += (" Bold: best in its column, better than every other sampler@budget by more "
                 "than two standard errors of the paired per-seed difference (none is bold "
                 "where no entry is significantly best, or where the best is below the "
                 "floor).")
    if shown["below_floor"].any():
        text += (" †: mean below the floor by more than two combined standard errors (usually "
                 "missed tails or modes, not excellence).")
    partial = shown["num_ok"].gt(0) & (shown["num_diverged"] + shown["num_failed"]).gt(0)
    if partial.any():
        text += " 'x (k/m diverged)': mean over the seeds that did not diverge or fail."
    dropped = sorted(set(summary["target"]) - targets, key=natural_key)
    if dropped:
        text += f" Not applicable (omitted): {', '.join(dropped)}."
    return text


def render(rows: pd.DataFrame, metric: str, style: TableStyle = "markdown") -> str:
    """Caption and table of one metric as a complete Markdown or LaTeX text (ends in a newline).

    A metric of :data:`OWN_LAYOUTS` (``ess``: :mod:`benchmark.report.ess`) is rendered in its
    own layout.

    Args:
        rows: result rows.
        metric: metric name.
        style: ``markdown`` (caption paragraph, blank line, table) or ``latex`` (a booktabs
            ``table`` float with caption and label ``tab:<matrix>:<metric>``, see
            :func:`benchmark.report.formatting.render_latex`; one row "(no applicable target)" when
            the metric applies to no target).
    """
    if metric in OWN_LAYOUTS:
        return OWN_LAYOUTS[metric](rows, style)
    table = metric_table(rows, metric, style)
    text = caption(rows, metric)
    if style == "markdown":
        return f"{text}\n\n{render_markdown(table)}\n"
    if table.empty:  # still one complete float, so an \input of it compiles
        table = pd.DataFrame(index=pd.Index([], name=ROW_INDEX))
    matrices = sorted({str(m) for m in rows.loc[rows["metric"] == metric, "matrix"].dropna()})
    label = f"tab:{'+'.join(matrices)}:{metric}" if matrices else f"tab:{metric}"
    return render_latex(table, latex_escape(text), label)


def render_missing(rows: pd.DataFrame, plan: pd.DataFrame) -> str | None:
    """Markdown list of the planned cells (``ResultsStore.load_plan()``) with no stored row,
    one line per target and sampler@budget with its seeds; None when nothing is missing."""
    missing = plan[~plan["cell_id"].isin(set(rows["cell_id"]))]
    if missing.empty:
        return None
    groups = missing.groupby(["matrix", "target", "sampler", "budget"], sort=False)["seed"]
    table = pd.DataFrame(
        [{"matrix": matrix, "target": target, "sampler@budget": row_label(sampler, int(budget)),
          "seeds": ", ".join(str(seed) for seed in sorted(seeds)),
          "_key": (matrix, natural_key(str(target)), row_key(sampler, int(budget)))}
         for (matrix, target, sampler, budget), seeds in groups])
    table = table.sort_values("_key", kind="mergesort").drop(columns="_key").set_index("target")
    text = (f"Not run yet: {len(missing)} of {len(plan)} planned cells "
            f"({', '.join(sorted(plan['matrix'].unique()))}) have no rows in this store; the "
            f"tables leave them out. Rerunning the matrix's `run` command runs exactly these.")
    return f"{text}\n\n{render_markdown(table)}\n"


def write_tables(rows: pd.DataFrame, directory: str | Path,
                 metrics: Sequence[str] | None = None,
                 plan: pd.DataFrame | None = None,
                 history: pd.DataFrame | None = None) -> dict[str, str]:
    """Write ``<metric>.md`` and ``<metric>.tex`` per metric and ``aggregate.csv`` (all metrics),
    and, when ``plan`` lists cells with no rows, :data:`MISSING_FILE`.

    Byte-for-byte deterministic for the same rows: sorted groups, fixed float formatting,
    ``\\n`` line endings. Every file is written atomically
    (:func:`benchmark.store.atomic_write`).

    Args:
        rows: result rows (e.g. ``ResultsStore(root).load()``).
        directory: output directory (created).
        metrics: metrics to tabulate (default: every metric in ``rows``, sorted).
        plan: planned cells (``ResultsStore(root).load_plan()``); None or empty: no check.
        history: training histories of the rows' neural samplers (``ResultsStore(root).
            load_current()[1]``); None: no training-quality table.

    Returns:
        ``{metric: Markdown text}`` in the order tabulated, then ``{layout: Markdown text}``
        of the multi-metric layouts that apply (:mod:`benchmark.report.summary`), then
        ``{"missing": text}`` if planned cells are missing.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    texts = {}
    for metric in metrics or sorted(rows["metric"].unique()):
        texts[metric] = render(rows, metric, "markdown")
        atomic_write_bytes(directory / f"{metric}.md", texts[metric].encode())
        atomic_write_bytes(directory / f"{metric}.tex", render(rows, metric, "latex").encode())
    texts.update(write_summaries(rows, directory))  # summary layouts (Tables 2 and 3)
    training = training_quality_table(rows, history) if history is not None else None
    for name, text in ((TABLE_NAME, time_to_quality_table(rows)),
                       (MATCHED_COST, matched_cost_table(rows)),
                       (TRAINING_QUALITY, training)):
        if text is not None:
            texts[name] = text
            atomic_write_bytes(directory / f"{name}.md", text.encode())
    csv = aggregate(rows)[AGGREGATE_COLUMNS].to_csv(
        index=False, float_format=CSV_FLOAT_FORMAT, na_rep="nan", lineterminator="\n")
    atomic_write_bytes(directory / "aggregate.csv", csv.encode())
    missing = render_missing(rows, plan) if plan is not None and not plan.empty else None
    if missing is not None:
        texts["missing"] = missing
        atomic_write_bytes(directory / MISSING_FILE, missing.encode())
    else:  # a list from an earlier, less complete state of the store would mislead
        (directory / MISSING_FILE).unlink(missing_ok=True)
    return texts
