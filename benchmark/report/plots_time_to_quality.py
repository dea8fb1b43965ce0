"""The ``time_to_quality`` figure: ground-truth quality against wall-clock seconds per target.

The figure of :mod:`benchmark.report.time_to_quality` (which says what is plotted and why), drawn
from the same :func:`~benchmark.report.time_to_quality.quality_and_costs` as its table, plus the
training curves of the store's history. Each panel shows its target's own quality metric
(:func:`~benchmark.report.time_to_quality.quality_metrics`), named on its y axis, and the
training curves of that metric. Kept apart from the table so that writing tables never imports
matplotlib.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.report.aggregate import natural_key
from benchmark.report.plots_common import (
    MissingData,
    PlotData,
    facet_grid,
    figure_style,
    shared_legend,
)
from benchmark.report.time_to_quality import QUALITY_METRICS, quality_and_costs

PANEL = (3.4, 2.7)
#: The columns of a training-curve frame (:func:`_training_curves`).
CURVE_COLUMNS = ["target", "sampler", "iteration", "quality", "seconds"]


def _training_curves(history: pd.DataFrame, metrics: dict[str, str]) -> pd.DataFrame:
    """Per (target, sampler, iteration): mean over seeds of the evaluation-batch quality — the
    ``<metric>_eval`` history rows of the target's own metric (``metrics``: target → metric) —
    and of the training seconds logged at that iteration."""
    if history.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    # A target's curve is of its own metric only: an EBM's energy_distance_eval rows (NaN, no
    # exact samples) must not stand in for its fid_data_eval curve, nor the other way round.
    evaluated = history["target"].map({t: f"{m}_eval" for t, m in metrics.items()})
    wanted = history[history["metric"].eq(evaluated)
                     | (history["metric"].eq("train_seconds")
                        & history["target"].isin(list(metrics)))].copy()
    if wanted.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    wanted["value"] = pd.to_numeric(wanted["value"], errors="coerce").astype(float)
    wanted["metric"] = wanted["metric"].where(wanted["metric"].eq("train_seconds"), "quality")
    wide = wanted.pivot_table(index=["target", "sampler", "seed", "iteration"],
                              columns="metric", values="value", aggfunc="mean")
    if "quality" not in wide or "train_seconds" not in wide:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    wide = wide.rename(columns={"train_seconds": "seconds"})
    wide = wide.dropna(subset=["quality", "seconds"])
    return (wide.groupby(["target", "sampler", "iteration"])[["quality", "seconds"]].mean()
            .reset_index())


def time_to_quality_figure(data: PlotData) -> Figure:
    """Quality vs wall-clock per target; see the module docstring."""
    frame = quality_and_costs(data.rows)
    if frame.empty:
        raise MissingData(f"no sampler cells with one of the quality metrics "
                          f"{', '.join(QUALITY_METRICS)}")
    # A target's metric may be finite only in its floor rows, its sampler cells all NaN: such
    # a target has nothing to draw, and an empty log-scaled panel would fail to render.
    frame = frame[np.isfinite(frame["mean"])]
    if frame.empty:
        raise MissingData("no sampler cell with a finite quality")
    metrics = dict(zip(frame["target"], frame["metric"], strict=True))
    curves = _training_curves(data.history, metrics)
    # The floor of each target's own metric (aggregate's floor_mean: same target and metric).
    floors = frame.groupby("target")["floor_mean"].first()
    targets = sorted(metrics, key=natural_key)
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
            ax.set_ylabel(metrics[target].replace("_", " "))
        shared_legend(figure, axes)
    return figure


__all__ = ["time_to_quality_figure"]
