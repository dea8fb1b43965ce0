"""Time-to-quality: ground-truth quality against cost, so a reader sees when a one-step sampler
has paid for its training.

The quality metric is chosen per target (:func:`quality_metrics`): the first of
:data:`QUALITY_METRICS` with a finite value among the target's rows — energy distance against
exact samples where the target has them, else FID against data (an image energy-based model has
no exact samples, so its energy distance rows are NaN). One store can so mix both: ``paper-ebm``
reports energy distance for its exact-sample image targets and FID for its EBMs. Costs come from
the cost ledger (:func:`benchmark.report.summary.cell_costs`): for an iterative sampler its
budget K, NFE per sample and sampling seconds; for a neural sampler its training seconds and
training target evaluations + HVPs, and its sampling seconds.

* **Table** ``time_to_quality.md`` (:func:`time_to_quality_table`): per target and
  sampler@budget, the target's quality metric, the quality (mean ± s.e. over seeds), its ratio
  to the floor, the costs, and for each neural row the *matched* iterative sampler — the
  iterative sampler@budget of the same target with the cheapest sampling per sample whose mean
  quality is at least as good — and the break-even number of samples
  ``N = T / (t_iter − t_neural)`` after which training (``T`` seconds) plus ``N`` one-step draws
  cost less than ``N`` draws of the matched sampler (``never`` when the neural draws are not
  cheaper; ``none`` matched when no iterative cell is as good).
* **Figure** ``time_to_quality``
  (:func:`benchmark.report.plots_time_to_quality.time_to_quality_figure`, from the same
  :func:`quality_and_costs`): per target, its quality metric (log)
  against wall-clock seconds (log): iterative samplers as one line across their budgets
  (sampling seconds); neural samplers as their training curve (the ``<metric>_eval`` history
  rows of the target's metric on a fixed evaluation batch of min(n, 500) against as many exact
  samples, at the logged training seconds) ending in a hollow square at training + sampling
  seconds and the final quality at the full n; the floor (at n) dotted. The evaluation batch is
  smaller than n, so a curve's tail sits a little above its final point (energy distance is
  biased by about 1/n).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from benchmark.report.aggregate import aggregate, natural_key, row_key, row_label
from benchmark.report.formatting import cell_text, format_count, format_ratio, render_markdown
from benchmark.report.summary import cell_costs
from benchmark.schema import REFERENCE_LABEL

#: Quality metrics, in order of preference; each target uses the first one it has a finite
#: value of (:func:`quality_metrics`).
QUALITY_METRICS = ("energy_distance", "fid_data")
TABLE_NAME = "time_to_quality"
#: The captions' words on the quality metric (the tables' ``metric`` column).
METRIC_CHOICE = ("the quality metric is chosen per target ('metric' column), energy_distance "
                 "against exact samples where the target has them, else fid_data (FID against "
                 "data); lower is better")


def quality_metrics(rows: pd.DataFrame) -> dict[str, str]:
    """Per target, its quality metric: the first of :data:`QUALITY_METRICS` with at least one
    finite value of an ok cell among the target's rows (sampler or floor cells).

    Per target, not per store: an image EBM has no exact samples, so its ``energy_distance``
    rows are NaN and its quality is ``fid_data``, while an exact-sample target of the same store
    is judged by energy distance. A value of a cell that did not sample fine does not count, as
    in :func:`~benchmark.report.aggregate.aggregate`.

    Returns:
        Target label → metric, in natural target order; targets without any such metric are
        left out.
    """
    if rows.empty:
        return {}
    values = pd.to_numeric(rows["value"], errors="coerce").astype(float)
    usable = rows[rows["metric"].isin(QUALITY_METRICS) & rows["status"].eq("ok")
                  & np.isfinite(values)]
    present = usable.groupby("target")["metric"].agg(set)
    return {target: next(metric for metric in QUALITY_METRICS if metric in present[target])
            for target in sorted(present.index, key=natural_key)}


def _is_neural(costs: pd.Series) -> bool:
    return bool(np.isfinite(costs["train_seconds"]))


def quality_and_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (target, sampler, budget) of every target with a quality metric
    (:func:`quality_metrics`), floor rows excluded: ``metric`` (the target's quality metric,
    which ``mean``, ``se`` and ``floor_mean`` are of), the aggregate (``mean``, ``se``, marks),
    ``floor_mean``, the cell costs and ``train_evals`` (training NFE + HVPs)."""
    metrics = quality_metrics(rows)
    # Each target's rows of its own metric only: one metric per target, so every comparison
    # within a target (matched iterative, best within a budget) compares like with like.
    summary = aggregate(rows[rows["metric"].eq(rows["target"].map(metrics))])
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
    """The Markdown table described in the module docstring, or None without a target with a
    quality metric or without a neural sampler."""
    frame = quality_and_costs(rows)
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
            "metric": record["metric"],
            "quality": cell_text(record),
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
    caption = (f"Time to quality [matrix {', '.join(sorted(rows['matrix'].unique()))}]: "
               f"{METRIC_CHOICE}. 'quality': mean ± s.e. over seeds, "
               f"'/ floor' the ratio of the mean to the reference floor at the same n. NFE: "
               f"target evaluations per sample while sampling; train evals: target evaluations "
               f"+ Hessian-vector products during neural training; seconds are means over "
               f"seeds. 'matched iterative': the iterative sampler@budget of the same target "
               f"with the cheapest sampling per sample whose mean quality is at least as good; "
               f"'break-even n': samples after which training + sampling costs less than "
               f"sampling with it ('never' if the neural draws are not cheaper).")
    return f"{caption}\n\n{render_markdown(table)}\n"


__all__ = ["METRIC_CHOICE", "QUALITY_METRICS", "TABLE_NAME", "matched_iterative",
           "quality_and_costs", "quality_metrics", "time_to_quality_table"]
