"""The ESS table: ``tables/ess.md`` and ``ess.tex``, the layout of the ``ess`` metric.

``ess`` (docs/metrics.md#effective-sample-size) is a property of a sampler's chains and their
cost, so it gets its own layout in place of the generic per-metric one
(:func:`benchmark.report.tables.render` dispatches here): one row per target and
sampler@budget, the floor row last per target, with columns

* ``min ESS / evaluation``: mean ± s.e. over seeds of the metric, marked as every table marks
  (bold: significantly best of its target by the paired rule, higher is better);
* ``min ESS / s``: mean ± s.e. over seeds of ``value x n x NFE / sample_seconds``, i.e. the ESS
  per evaluation times the target evaluations per second of the cell's sampling of all ``n``
  chains: the ESS of the ``n`` chains per second of sampling, assuming independent chains
  (their ESS adds up) and sampling time proportional to evaluations over the run. Seconds
  depend on the machine and its load: compare them within one store;
* ``NFE`` (target evaluations per chain over the whole run) and ``sample s`` (seconds for
  ``n`` chains), means over seeds.

The floor row is the i.i.d. reference (exact draws charged one evaluation each); it has no
sampling cost, so its per-second, NFE and seconds columns are empty. Sampler@budget rows where
the metric does not apply on every seed (samplers that are not Markov chains) are left out and
named in the caption. Stores without ``ess`` rows get no ESS table, so their tables are
unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.metrics.info import METRIC_INFO, TRACE_CHAINS, TRACE_DRAWS
from benchmark.report.aggregate import aggregate, natural_key, row_key, row_label, standard_error
from benchmark.report.formatting import (
    TableStyle,
    cell_text,
    format_count,
    format_value,
    latex_escape,
    render_latex,
    render_markdown,
)
from benchmark.schema import REFERENCE_LABEL

METRIC = "ess"
TABLE_NAME = "ess"
ROW_HEADER = "sampler@budget"
KEY = ["target", "sampler", "budget"]


def _per_second(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (target, sampler, budget): ``per_second_mean``/``_se`` over the seeds with a finite
    ESS per second, and the mean ``nfe`` and ``sample_seconds`` of the cells."""
    frame = rows.copy()
    for column in ("value", "nfe", "n", "sample_seconds"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame["budget"] = frame["budget"].astype(int)
    rate = frame["value"] * frame["n"] * frame["nfe"] / frame["sample_seconds"]
    usable = frame["status"].eq("ok") & np.isfinite(rate) & frame["sample_seconds"].gt(0)
    frame["per_second"] = rate.where(usable)
    grouped = frame.groupby(KEY, sort=True).agg(
        per_second_mean=("per_second", "mean"), per_second_std=("per_second", "std"),
        per_second_count=("per_second", "count"), nfe=("nfe", "mean"),
        sample_seconds=("sample_seconds", "mean"))
    grouped["per_second_se"] = standard_error(grouped["per_second_std"],
                                              grouped["per_second_count"])
    return grouped


def ess_frame(rows: pd.DataFrame, style: TableStyle = "markdown"
              ) -> tuple[pd.DataFrame, list[str]]:
    """The table (index ``target``, ``sampler@budget``; cell strings in ``style``) and the
    labels of the sampler@budget rows left out because the metric does not apply to them.

    Args:
        rows: result rows of a store (any metrics; only ``ess``'s are used).
        style: ``markdown`` or ``latex`` cell text (the index stays plain).
    """
    subset = rows[rows["metric"].eq(METRIC)]
    if subset.empty:
        return pd.DataFrame(), []
    summary = aggregate(subset)
    costs = _per_second(subset)
    header = METRIC_INFO[METRIC].pretty_name
    records, omitted = [], []
    keys = sorted(zip(summary["target"], summary["sampler"], summary["budget"], strict=True),
                  key=lambda key: (natural_key(str(key[0])), row_key(key[1], key[2])))
    indexed = summary.set_index(KEY)
    for target, sampler, budget in keys:
        record = indexed.loc[(target, sampler, budget)]
        label = row_label(sampler, budget)
        if int(record["num_values"]) == 0 and bool(record["not_applicable"]):
            omitted.append(label)
            continue
        row = {"target": target, ROW_HEADER: label, header: cell_text(record, style)}
        cost = costs.loc[(target, sampler, int(budget))]
        if sampler == REFERENCE_LABEL:  # exact draws: no sampling cost
            row.update({"min ESS / s": "", "NFE": "", "sample s": ""})
        else:
            row["min ESS / s"] = format_value(float(cost["per_second_mean"]),
                                              float(cost["per_second_se"]), style=style)
            for column, value in (("NFE", cost["nfe"]), ("sample s", cost["sample_seconds"])):
                text = format_count(float(value))
                row[column] = latex_escape(text) if style == "latex" else text
        records.append(row)
    if not records:
        return pd.DataFrame(), sorted(set(omitted), key=natural_key)
    table = pd.DataFrame(records).set_index(["target", ROW_HEADER])
    return table, sorted(set(omitted), key=natural_key)


def ess_caption(rows: pd.DataFrame, omitted: list[str]) -> str:
    """Plain-text caption: the statistic, seeds, n, the columns, the floor, the marks, the
    omitted rows and the command that reproduces the store."""
    subset = rows[rows["metric"].eq(METRIC)]
    sampled = subset[~subset["sampler"].eq(REFERENCE_LABEL)]
    seeds = sorted(int(seed) for seed in (sampled if not sampled.empty else subset)["seed"]
                   .unique())
    sizes = ", ".join(str(n) for n in sorted(subset["n"].astype(int).unique()))
    matrices = sorted({str(m) for m in subset["matrix"].dropna()})
    text = (f"Effective sample size per target evaluation [{METRIC}; higher is better; matrix "
            f"{', '.join(matrices)}]: mean ± s.e. over {len(seeds)} seed(s) (seeds "
            f"{', '.join(map(str, seeds))}), n = {sizes} chains per cell. min ESS / evaluation: "
            f"the smallest ArviZ bulk ESS over coordinates of the first min({TRACE_CHAINS}, n) "
            f"chains over the second half of the run (the first half is warm-up; at most "
            f"{TRACE_DRAWS} draws per chain), divided by chains x target evaluations per chain "
            f"over that half. min ESS / s: the same times n x NFE / sample s, the ESS of all n "
            f"chains per second of sampling (independent chains; time proportional to "
            f"evaluations; compare seconds within one store). NFE: target evaluations per "
            f"chain over the whole run; sample s: seconds for n chains. "
            f"'reference (floor)': the statistic on i.i.d. exact draws of the same shape "
            f"charged one evaluation per draw (about 1, a little less through the minimum over "
            f"coordinates). Bold: best of its target by more than two standard errors of the "
            f"paired per-seed difference.")
    if omitted:
        text += f" Not Markov chains, no ESS (omitted): {', '.join(omitted)}."
    if len(matrices) == 1:
        text += (f" Reproduce: python -m benchmark run {matrices[0]} --out STORE (this "
                 f"store's folder), which writes these tables; python -m benchmark table "
                 f"STORE rewrites them from the stored rows.")
    return text


def render_ess(rows: pd.DataFrame, style: TableStyle = "markdown") -> str:
    """Caption and table as a complete Markdown text or LaTeX float (ends in a newline).

    Args:
        rows: result rows of a store.
        style: ``markdown`` (caption paragraph, blank line, table) or ``latex`` (a booktabs
            float labelled ``tab:<matrix>:ess``).
    """
    table, omitted = ess_frame(rows, style)
    caption = ess_caption(rows, omitted)
    if style == "markdown":
        body = render_markdown(table.reset_index().set_index("target") if not table.empty
                               else table)
        return f"{caption}\n\n{body}\n"
    matrices = sorted({str(m) for m in rows.loc[rows["metric"].eq(METRIC), "matrix"].dropna()})
    label = f"tab:{'+'.join(matrices)}:{METRIC}" if matrices else f"tab:{METRIC}"
    if table.empty:
        table = pd.DataFrame(index=pd.Index([], name=ROW_HEADER))
    return render_latex(table, latex_escape(caption), label)


__all__ = ["METRIC", "TABLE_NAME", "ess_caption", "ess_frame", "render_ess"]
