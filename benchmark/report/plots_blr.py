"""The Figure-4 style BLR figure: test accuracy and posterior-moment errors vs training iteration.

A pure function of the training histories (``history/*.csv``): the runner logs
``accuracy_eval``, ``mean_error_eval`` and ``std_error_eval`` on a fixed evaluation batch every
``log_every`` iterations of each neural sampler trained on a BLR target (see
``benchmark.run.runner.TRAINING_METRICS``). One column per BLR target, one row per metric, one line
per sampler label (DFT-NS drawn thicker), mean ± s.e. over seeds as a band (s.e. = sample s.d.
/ √seeds; none for one seed), as in the ``training_ksd`` figure.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from benchmark.report.aggregate import mean_se, natural_key
from benchmark.report.plots_common import (
    DFT_PREFIX,
    MissingData,
    PlotData,
    figure_style,
    new_figure,
    shared_legend,
)

#: History metric -> axis label, in row order.
BLR_HISTORY_METRICS = {
    "accuracy_eval": "test accuracy",
    "mean_error_eval": "mean error (ref. s.d. units)",
    "std_error_eval": "s.d. error (relative)",
}
PANEL = (3.2, 2.4)


def training_curves(history: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean and s.e. over seeds per (metric, target, sampler, iteration) of finite values.

    Args:
        history: rows with columns ``target, sampler, seed, iteration, metric, value``.
        metrics: history metric names to keep.

    Returns:
        Columns ``metric, target, sampler, iteration, mean, se, num_seeds``.
    """
    frame = history[history["metric"].isin(metrics)]
    curves = mean_se(frame, ["metric", "target", "sampler", "iteration"], "value")
    # Groups with no finite value at all have no curve point.
    return curves[curves["count"] > 0].rename(columns={"count": "num_seeds"})


def training_blr(data: PlotData) -> Figure:
    """Accuracy, mean error and s.d. error vs training iteration (rows) per BLR target."""
    curves = training_curves(data.history, list(BLR_HISTORY_METRICS))
    if curves.empty:
        raise MissingData("no BLR training history (accuracy_eval / mean_error_eval rows)")
    metrics = [m for m in BLR_HISTORY_METRICS if m in set(curves["metric"])]
    targets = sorted(curves["target"].unique(), key=natural_key)
    with figure_style():
        figure, axes = new_figure(len(metrics), len(targets), PANEL)
        for row, metric in enumerate(metrics):
            for column, target in enumerate(targets):
                ax = axes[row, column]
                panel = curves[curves["metric"].eq(metric) & curves["target"].eq(target)]
                if panel.empty:  # e.g. moment errors of a dataset without a reference run
                    ax.text(0.5, 0.5, "not logged\n(no reference posterior?)", ha="center",
                            va="center", transform=ax.transAxes, fontsize=8, color="0.4")
                for label in sorted(panel["sampler"].unique(), key=natural_key):
                    curve = panel[panel["sampler"].eq(label)].sort_values("iteration")
                    color = data.colors.get(label)
                    highlight = label.startswith(DFT_PREFIX)
                    ax.plot(curve["iteration"], curve["mean"], color=color, label=label,
                            linewidth=2.0 if highlight else 1.0)
                    se = curve["se"].fillna(0.0)
                    ax.fill_between(curve["iteration"], curve["mean"] - se, curve["mean"] + se,
                                    color=color, alpha=0.2, linewidth=0)
                if metric != "accuracy_eval" and not panel.empty:
                    ax.set_yscale("log")
                if row == 0:
                    ax.set_title(target)
                ax.set_xlabel("training iteration")
                ax.set_ylabel(BLR_HISTORY_METRICS[metric])
        shared_legend(figure, axes.ravel())
    return figure
