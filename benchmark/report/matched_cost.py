"""Matched cost: the best quality each sampler reaches within a cost budget per sample.

The "100x cheaper" claim of a one-step sampler is a statement at matched quality and cost, so
this view fixes the cost and reads off the quality. For each target and sampler (its label,
all budgets together) and for each cost budget ``B``, the entry is the best mean quality over
the sampler's budgets whose cost per sample is at most ``B``; ``–`` when none is that cheap. The
quality metric is the target's own
(:func:`benchmark.report.time_to_quality.quality_metrics`: energy distance against exact samples
where the target has them, else FID against data; lower is better), named in each row. Two cost
axes:

* **target evaluations per sample** (``EVALUATION_BUDGETS``): an iterative sampler's NFE per
  sample (every leapfrog gradient, every replica); a neural sampler's sampling NFE (0, 1 with
  the final denoising step, K for PIS in its score form) — shown twice: *sampling only*, and
  *amortised*, adding its training evaluations + Hessian-vector products spread over
  ``AMORTISED_OVER`` samples;
* **wall-clock seconds per 1,000 samples** (``SECONDS_BUDGETS``), the same two ways with the
  training seconds amortised likewise. Seconds depend on the machine and on parallel load
  (see the store's ``device`` and ``worker`` columns): compare them within one store.

Each entry also names the budget that reached it (``@K``), so a reader can find the cell in the
per-metric tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.report.aggregate import natural_key
from benchmark.report.formatting import render_markdown
from benchmark.report.time_to_quality import METRIC_CHOICE, quality_and_costs

#: Target evaluations per sample.
EVALUATION_BUDGETS: tuple[float, ...] = (1, 10, 100, 1_000, 10_000)
#: Wall-clock seconds per 1,000 samples.
SECONDS_BUDGETS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
#: Samples a neural sampler's training cost is spread over in the amortised rows.
AMORTISED_OVER = 10_000
TABLE_NAME = "matched_cost"


def cost_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (target, sampler, budget) of every target with a quality metric: ``metric`` (the
    target's), ``mean`` quality and its costs per sample, one row per cost mode
    (``"sampling"`` for every sampler, ``"amortised"`` also for neural ones), with
    ``evaluations`` (per sample) and ``seconds`` (per 1,000 samples); the other columns of
    :func:`~benchmark.report.time_to_quality.quality_and_costs` ride along.

    The one source of both the table and the ``quality_vs_cost`` / ``quality_vs_seconds``
    figures (:mod:`benchmark.report.plots_matched_cost`), so the figure's points are the
    candidates the table chooses among. Empty without a sampler cell of a target with a
    quality metric."""
    frame = quality_and_costs(rows)
    if frame.empty:
        return frame
    neural = frame["train_seconds"].notna()
    nfe = frame["nfe"].fillna(0.0)
    per_thousand = 1000.0 * frame["per_sample"]
    sampling = frame.assign(mode="sampling", evaluations=nfe, seconds=per_thousand)
    trained = frame[neural]
    amortised = trained.assign(
        mode="amortised",
        evaluations=nfe[neural] + trained["train_evals"].fillna(0.0) / AMORTISED_OVER,
        seconds=per_thousand[neural] + 1000.0 * trained["train_seconds"] / AMORTISED_OVER)
    return pd.concat([sampling, amortised], ignore_index=True)


def best_within(frame: pd.DataFrame, column: str, budgets: tuple[float, ...]) -> pd.DataFrame:
    """Per (target, sampler, mode): the target's quality ``metric`` and, for each budget, the
    best finite mean whose ``column`` cost is at most the budget, as text ``value (@K)``; ``–``
    when none is."""
    records = []
    for (target, sampler, mode), group in frame.groupby(["target", "sampler", "mode"],
                                                        sort=False):
        # One metric per target (cost_frame), so the budgets compare like with like.
        record = {"target": target, "sampler": sampler, "cost": mode,
                  "metric": group["metric"].iloc[0]}
        group = group[np.isfinite(group["mean"]) & np.isfinite(group[column])]
        for budget in budgets:
            within = group[group[column] <= budget * (1 + 1e-9)]
            if within.empty:
                record[_budget_label(budget)] = "–"
                continue
            best = within.loc[within["mean"].idxmin()]
            record[_budget_label(budget)] = f"{best['mean']:.3g} (@{int(best['budget'])})"
        records.append(record)
    table = pd.DataFrame(records)
    if table.empty:
        return table
    order = [(natural_key(str(t)), natural_key(str(s)), m != "sampling")
             for t, s, m in zip(table["target"], table["sampler"], table["cost"], strict=True)]
    table = table.assign(_key=order).sort_values("_key", kind="mergesort").drop(columns="_key")
    # Iterative samplers have no training to amortise: their "sampling" row is their only one.
    table["cost"] = table["cost"].map({"sampling": "sampling", "amortised":
                                       f"+ training / {AMORTISED_OVER:,}"})
    return table.set_index("target")


def _budget_label(budget: float) -> str:
    return f"≤ {budget:g}"


def matched_cost_table(rows: pd.DataFrame) -> str | None:
    """The Markdown of both views (module docstring), or None without a target with a quality
    metric."""
    frame = cost_frame(rows)
    if frame.empty:
        return None
    matrices = ", ".join(sorted(rows["matrix"].unique()))
    parts = []
    for column, budgets, unit in (("evaluations", EVALUATION_BUDGETS,
                                   "target evaluations per sample"),
                                  ("seconds", SECONDS_BUDGETS, "seconds per 1,000 samples")):
        table = best_within(frame, column, budgets)
        caption = (f"Matched cost [matrix {matrices}]: {METRIC_CHOICE}. Per target and "
                   f"sampler, the best mean quality over its budgets costing at most the "
                   f"column's {unit} (@K: the budget that reached it; –: none that cheap). "
                   f"Neural samplers twice: sampling only, and with their training cost "
                   f"(evaluations + HVPs, or seconds) spread over {AMORTISED_OVER:,} samples.")
        parts.append(f"{caption}\n\n{render_markdown(table)}\n")
    return "\n".join(parts)


__all__ = ["AMORTISED_OVER", "EVALUATION_BUDGETS", "SECONDS_BUDGETS", "TABLE_NAME",
           "best_within", "cost_frame", "matched_cost_table"]
