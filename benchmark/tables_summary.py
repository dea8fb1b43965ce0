"""Multi-metric summary tables: one row per (target, sampler@budget), metrics side by side.

The per-metric tables of :mod:`benchmark.tables` put targets in columns; a paper table such as
Table 2 (BLR datasets × samplers: accuracy, test log-likelihood, KSD with its floor, posterior
moment errors, NFE, wall-clock) puts *metrics* in columns instead. A layout in
:data:`SUMMARY_LAYOUTS` names its metrics; :func:`write_summaries` writes
``<layout>.md``/``.tex`` for each layout whose first metric the store holds, so stores of
other families are untouched. Cells reuse :func:`benchmark.tables.aggregate` and its marks
(bold = significantly best for that target and metric, † = below the floor), and the cost
columns are means over seeds of the stored timings:

* ``NFE``: target evaluations per particle while sampling (0 for a neural generator pass;
  minibatch evaluations count their share ``m/N``);
* ``train evals``: target evaluations (rows) during neural training, total;
* ``sample s`` / ``train s``: sampling and training wall-clock seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.formatting import cell_text, latex_escape, render_latex, render_markdown
from benchmark.metrics import METRICS
from benchmark.runner import REFERENCE_LABEL
from benchmark.tables import aggregate, natural_key, row_key, row_label

#: Layout name -> metrics in column order (the first one decides whether it is written).
SUMMARY_LAYOUTS: dict[str, tuple[str, ...]] = {
    "table2_blr": ("accuracy", "test_loglik", "ksd", "mean_error", "std_error"),
}
COST_COLUMNS = {"nfe": "NFE", "train_nfe": "train evals", "sample_seconds": "sample s",
                "train_seconds": "train s"}


def _cost_text(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3g}"


def summary_table(rows: pd.DataFrame, metrics: tuple[str, ...],
                  style: str = "markdown") -> pd.DataFrame:
    """Rows ``target | sampler@budget`` (floor row last per target), metric and cost columns.

    Args:
        rows: result rows of a store.
        metrics: metric columns, in order (those absent from ``rows`` are left out).
        style: ``markdown`` or ``latex`` cell text.
    """
    present = [m for m in metrics if m in set(rows["metric"])]
    summary = aggregate(rows[rows["metric"].isin(present)])
    costs = rows.drop_duplicates("cell_id").copy()
    for column in COST_COLUMNS:
        costs[column] = pd.to_numeric(costs[column], errors="coerce").astype(float)
    costs = costs.groupby(["target", "sampler", "budget"])[list(COST_COLUMNS)].mean()
    keys = sorted({(t, s, int(b)) for t, s, b in
                   zip(summary["target"], summary["sampler"], summary["budget"], strict=True)},
                  key=lambda key: (natural_key(key[0]), row_key(key[1], key[2])))
    records = []
    for target, sampler, budget in keys:
        record = {"target": target, "sampler@budget": row_label(sampler, budget)}
        for metric in present:
            match = summary[summary["target"].eq(target) & summary["sampler"].eq(sampler)
                            & summary["budget"].eq(budget) & summary["metric"].eq(metric)]
            record[METRICS[metric].pretty_name if metric in METRICS else metric] = (
                cell_text(match.iloc[0], style) if len(match) else "")
        cost = (costs.loc[(target, sampler, budget)] if (target, sampler, budget) in costs.index
                else pd.Series(np.nan, index=list(COST_COLUMNS)))
        for column, header in COST_COLUMNS.items():
            record[header] = "" if sampler == REFERENCE_LABEL else _cost_text(float(cost[column]))
        records.append(record)
    return pd.DataFrame(records).set_index(["target", "sampler@budget"]) if records else (
        pd.DataFrame())


def summary_caption(rows: pd.DataFrame, name: str, metrics: tuple[str, ...]) -> str:
    seeds = sorted(rows["seed"].unique())
    sizes = ", ".join(str(n) for n in sorted(rows["n"].astype(int).unique()))
    directions = "; ".join(
        f"{METRICS[m].pretty_name} {'lower' if METRICS[m].lower_is_better else 'higher'} is "
        f"better" for m in metrics if m in METRICS and m in set(rows["metric"]))
    return (f"{name}: mean ± s.e. over {len(seeds)} seed(s), n = {sizes} samples per cell "
            f"({directions}). Bold: significantly best for its target and metric (paired over "
            f"seeds, two standard errors); †: below the reference floor; 'reference (floor)': "
            f"the metric on n reference draws. NFE: target evaluations per particle while "
            f"sampling (minibatch evaluations count m/N); train evals: target evaluations "
            f"during training (rows); sample s / train s: wall-clock seconds, mean over seeds.")


def write_summaries(rows: pd.DataFrame, directory: Path) -> dict[str, str]:
    """Write ``<layout>.md``/``.tex`` for each applicable layout; returns the Markdown texts."""
    texts = {}
    stored = set(rows["metric"])
    for name, metrics in SUMMARY_LAYOUTS.items():
        if metrics[0] not in stored:
            continue
        caption = summary_caption(rows, name, metrics)
        table = summary_table(rows, metrics, "markdown")
        texts[name] = f"{caption}\n\n{render_markdown(table.reset_index().set_index('target'))}\n"
        (directory / f"{name}.md").write_bytes(texts[name].encode())
        latex = summary_table(rows, metrics, "latex").reset_index()
        (directory / f"{name}.tex").write_bytes(
            render_latex(latex.set_index("target"), latex_escape(caption),
                         f"tab:{name}").encode())
    return texts
