"""Time-to-quality: ground-truth quality against cost, so a reader sees when a one-step sampler
has paid for its training.

The quality metric is the first of :data:`QUALITY_METRICS` a store holds (energy distance
against exact samples; FID against data for image stores). Costs come from the cost ledger
(:func:`benchmark.report.summary.cell_costs`): for an iterative sampler its budget K, NFE per
sample and sampling seconds; for a neural sampler its training seconds and training target
evaluations + HVPs, and its sampling seconds.

* **Table** ``time_to_quality.md`` (:func:`time_to_quality_table`): per target and
  sampler@budget, the quality (mean ± s.e. over seeds), its ratio to the floor, the costs, and
  for each neural row the *matched* iterative sampler — the iterative sampler@budget with the
  cheapest sampling per sample whose mean quality is at least as good — and the break-even
  number of samples ``N = T / (t_iter − t_neural)`` after which training (``T`` seconds) plus
  ``N`` one-step draws cost less than ``N`` draws of the matched sampler (``never`` when the
  neural draws are not cheaper; ``none`` matched when no iterative cell is as good).
* **Figure** ``time_to_quality``
  (:func:`benchmark.report.plots_time_to_quality.time_to_quality_figure`, from the same
  :func:`quality_and_costs`): per target, quality (log)
  against wall-clock seconds (log): iterative samplers as one line across their budgets
  (sampling seconds); neural samplers as their training curve (the ``<metric>_eval`` history
  rows on a fixed evaluation batch of min(n, 500) against as many exact samples, at the
  logged training seconds) ending in a hollow square at training + sampling seconds and the
  final quality at the full n; the floor (at n) dotted. The evaluation batch is smaller than
  n, so a curve's tail sits a little above its final point (energy distance is biased by
  about 1/n).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from benchmark.report.aggregate import aggregate, natural_key, row_key, row_label
from benchmark.report.formatting import cell_text, format_count, format_ratio, render_markdown
from benchmark.report.summary import cell_costs
from benchmark.schema import REFERENCE_LABEL

#: Quality metrics, in order of preference; the first one a store holds is used.
QUALITY_METRICS = ("energy_distance", "fid_data")
TABLE_NAME = "time_to_quality"


def quality_metric(rows: pd.DataFrame) -> str | None:
    """The first of :data:`QUALITY_METRICS` with rows in the store, or None."""
    present = set(rows["metric"].unique()) if not rows.empty else set()
    return next((metric for metric in QUALITY_METRICS if metric in present), None)


def _is_neural(costs: pd.Series) -> bool:
    return bool(np.isfinite(costs["train_seconds"]))


def quality_and_costs(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (target, sampler, budget) with the aggregate (``mean``, ``se``, marks),
    ``floor_mean``, the cell costs and ``train_evals`` (training NFE + HVPs), floor rows
    excluded."""
    summary = aggregate(rows[rows["metric"].eq(metric)])
    summary = summary[summary["sampler"].ne(REFERENCE_LABEL)]
    costs = cell_costs(rows[rows["sampler"].ne(REFERENCE_LABEL)])
    cells = rows.drop_duplicates("cell_id")
    hvp = (pd.to_numeric(cells["train_hvp"], errors="coerce").astype(float)
           .groupby([cells["target"], cells["sampler"], cells["budget"].astype(int)]).mean())
    costs["train_evals"] = costs["train_nfe"] + hvp.reindex(costs.index).fillna(0.0)
    summary = summary.assign(budget=summary["budget"].astype(int))
    # The aggregate's own n and NFE columns are the same figures; keep the cost ledger's.
    return summary.drop(columns=["n", "nfe"]).join(costs, on=["target", "sampler", "budget"])


def matched_iterative(frame: pd.DataFrame, record: pd.Series) -> pd.Series | None:
    """The iterative row of ``record``'s target with mean quality <= ``record``'s and the
    cheapest sampling per sample, or None."""
    candidates = frame[frame["target"].eq(record["target"]) & ~frame["train_seconds"].notna()
                       & (frame["mean"] <= record["mean"])]
    if candidates.empty or not np.isfinite(record["mean"]):
        return None
    return candidates.sort_values(["per_sample", "budget"]).iloc[0]


def time_to_quality_table(rows: pd.DataFrame) -> str | None:
    """The Markdown table described in the module docstring, or None without a quality metric
    or without a neural sampler."""
    metric = quality_metric(rows)
    if metric is None:
        return None
    frame = quality_and_costs(rows, metric)
    if frame.empty or not frame["train_seconds"].notna().any():
        return None
    records = []
    for _, record in frame.iterrows():
        neural = _is_neural(record)
        match = matched_iterative(frame, record) if neural else None
        if match is None:
            matched, break_even = ("none matched" if neural else ""), math.nan
        else:
            matched = row_label(match["sampler"], int(match["budget"]))
            gain = float(match["per_sample"] - record["per_sample"])
            break_even = record["train_seconds"] / gain if gain > 0 else math.inf
        records.append({
            "target": record["target"],
            "sampler@budget": row_label(record["sampler"], int(record["budget"])),
            metric: cell_text(record),
            "/ floor": format_ratio(record["mean"] / record["floor_mean"]),
            "NFE": format_count(record["nfe"]),
            "train evals": format_count(record["train_evals"]) if neural else "–",
            "train s": format_count(record["train_seconds"]),
            "sample s": format_count(record["sample_seconds"]),
            "matched iterative": matched,
            "break-even n": format_count(break_even) if neural and match is not None else "–",
            "_key": (natural_key(str(record["target"])),
                     row_key(record["sampler"], int(record["budget"]))),
        })
    table = (pd.DataFrame(records).sort_values("_key", kind="mergesort").drop(columns="_key")
             .set_index("target"))
    caption = (f"Time to quality [{metric}; matrix {', '.join(sorted(rows['matrix'].unique()))}]"
               f": mean ± s.e. over seeds, '/ floor' the ratio of the mean to the reference "
               f"floor at the same n. NFE: target evaluations per sample while sampling; train "
               f"evals: target evaluations + Hessian-vector products during neural training; "
               f"seconds are means over seeds. 'matched iterative': the iterative "
               f"sampler@budget with the cheapest sampling per sample whose mean {metric} is at "
               f"least as good; 'break-even n': samples after which training + sampling costs "
               f"less than sampling with it ('never' if the neural draws are not cheaper).")
    return f"{caption}\n\n{render_markdown(table)}\n"


__all__ = ["QUALITY_METRICS", "TABLE_NAME", "matched_iterative", "quality_and_costs",
           "quality_metric", "time_to_quality_table"]
