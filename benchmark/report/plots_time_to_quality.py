"""The ``time_to_quality`` figure: ground-truth quality against wall-clock seconds per target.

The figure of :mod:`benchmark.report.time_to_quality` (which says what is plotted and why), drawn
from the same :func:`~benchmark.report.time_to_quality.quality_and_costs` as its table, plus the
training curves of the store's history. Kept apart from the table so that writing tables never
imports matplotlib.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.report.aggregate import aggregate, natural_key
from benchmark.report.plots_common import (
    MissingData,
    PlotData,
    facet_grid,
    figure_style,
    shared_legend,
)
from benchmark.report.time_to_quality import QUALITY_METRICS, quality_and_costs, quality_metric
from benchmark.schema import REFERENCE_LABEL

PANEL = (3.4, 2.7)


def _training_curves(history: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (target, sampler, iteration): mean over seeds of the evaluation-batch quality and of
    the training seconds logged at that iteration."""
    wanted = history[history["metric"].isin([f"{metric}_eval", "train_seconds"])].copy()
    if wanted.empty:
        return pd.DataFrame(columns=["target", "sampler", "iteration", "quality", "seconds"])
    wanted["value"] = pd.to_numeric(wanted["value"], errors="coerce").astype(float)
    wide = wanted.pivot_table(index=["target", "sampler", "seed", "iteration"],
                              columns="metric", values="value", aggfunc="mean")
    if f"{metric}_eval" not in wide or "train_seconds" not in wide:
        return pd.DataFrame(columns=["target", "sampler", "iteration", "quality", "seconds"])
    wide = wide.rename(columns={f"{metric}_eval": "quality", "train_seconds": "seconds"})
    wide = wide.dropna(subset=["quality", "seconds"])
    return (wide.groupby(["target", "sampler", "iteration"])[["quality", "seconds"]].mean()
            .reset_index())


def time_to_quality_figure(data: PlotData) -> Figure:
    """Quality vs wall-clock per target; see the module docstring."""
    metric = quality_metric(data.rows)
    if metric is None:
        raise MissingData(f"none of the quality metrics {', '.join(QUALITY_METRICS)}")
    frame = quality_and_costs(data.rows, metric)
    # A target whose cells have the metric only as NaN (an EBM's energy distance) has nothing
    # to draw, and an empty log-scaled panel would fail to render.
    frame = frame[np.isfinite(frame["mean"])]
    if frame.empty:
        raise MissingData(f"no sampler cells with '{metric}' rows")
    curves = _training_curves(data.history, metric)
    summary = aggregate(data.rows[data.rows["metric"].eq(metric)])
    floors = summary[summary["sampler"].eq(REFERENCE_LABEL)].groupby("target")["mean"].mean()
    targets = sorted(frame["target"].unique(), key=natural_key)
    with figure_style():
        figure, axes = facet_grid(len(targets), PANEL)
        for ax, target in zip(axes, targets, strict=True):
            per_target = frame[frame["target"].eq(target)]
            for label in sorted(per_target["sampler"].unique(), key=natural_key):
                cells = per_target[per_target["sampler"].eq(label)].sort_values("budget")
                color = data.colors.get(label)
                if cells["train_seconds"].notna().any():
                    curve = curves[curves["target"].eq(target) & curves["sampler"].eq(label)]
                    curve = curve.sort_values("iteration")
                    positive = curve[(curve["seconds"] > 0) & (curve["quality"] > 0)]
                    ax.plot(positive["seconds"], positive["quality"], color=color,
                            linewidth=1.2, label=label)
                    ax.plot(cells["train_seconds"] + cells["sample_seconds"], cells["mean"],
                            color=color, marker="s", markerfacecolor="none", linestyle="none",
                            label=None if len(positive) else label)
                else:
                    ax.plot(cells["sample_seconds"], cells["mean"], color=color, marker="o",
                            markersize=3, linewidth=1, linestyle="--", label=label)
            if target in floors and np.isfinite(floors[target]):
                ax.axhline(floors[target], color="black", linestyle=":", linewidth=1,
                           label="reference floor")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(target)
            ax.set_xlabel("wall-clock seconds")
            ax.set_ylabel(metric.replace("_", " "))
        shared_legend(figure, axes)
    return figure


__all__ = ["time_to_quality_figure"]
