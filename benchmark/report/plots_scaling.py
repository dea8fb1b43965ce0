"""The scaling figure: quality and cost against the dimension ``d`` (``scaling`` store).

One column per target family whose targets take a ``dim`` parameter (``gaussian_d``,
``funnel_d``); top row KSD (log) against ``d``, bottom row wall-clock seconds per cell (log;
sampling, plus training for neural samplers, which are drawn dashed) against ``d``, one line
per sampler@budget, mean ± s.e. over seeds (docs/metrics.md#statistics). The reference floor is
the black dotted line of the top row. It reads the dimension from the stored
``target_params`` (``{"dim": d}``), so it needs nothing but the store's rows.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.report.aggregate import aggregate, natural_key, row_label
from benchmark.report.plots_common import (
    REFERENCE_COLOR,
    MissingData,
    PlotData,
    figure_style,
    new_figure,
    shared_legend,
)
from benchmark.report.summary import cell_costs
from benchmark.schema import REFERENCE_LABEL

PANEL = (3.4, 2.6)


def _dimension(params: object) -> float:
    """``d`` from a stored ``target_params`` JSON text; NaN when it has none."""
    try:
        value = json.loads(str(params)).get("dim")
    except (json.JSONDecodeError, AttributeError):
        return np.nan
    return float(value) if isinstance(value, int | float) else np.nan


def scaling_points(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (family, d, sampler, budget): KSD mean/s.e. and mean seconds per cell.

    Returns:
        Columns ``family``, ``dim``, ``sampler``, ``budget``, ``mean``, ``se`` (KSD),
        ``seconds`` (sampling + training, mean over the cell's seeds; NaN for the floor) and
        ``trained`` (the cell has a training cost: a neural sampler).
    """
    ksd = rows[rows["metric"].eq("ksd")].copy()
    ksd["dim"] = ksd["target_params"].map(_dimension)
    ksd = ksd[ksd["dim"].notna()]
    if ksd.empty:
        raise MissingData("no KSD rows on targets with a 'dim' parameter")
    summary = aggregate(ksd)
    per_target = ksd.drop_duplicates("target").set_index("target")
    summary["family"] = summary["target"].map(per_target["target_name"])
    summary["dim"] = summary["target"].map(per_target["dim"])
    costs = cell_costs(ksd)  # mean sampling and training seconds over each cell's seeds
    costs["trained"] = costs["train_seconds"].notna()
    costs["seconds"] = costs["sample_seconds"] + costs["train_seconds"].fillna(0.0)
    summary = summary.join(costs[["seconds", "trained"]], on=["target", "sampler", "budget"])
    summary.loc[summary["sampler"].eq(REFERENCE_LABEL), "seconds"] = np.nan
    return summary[["family", "dim", "sampler", "budget", "mean", "se", "seconds", "trained"]]


def scaling(data: PlotData) -> Figure:
    """KSD and seconds per cell against ``d``, one column per family (module docstring)."""
    points = scaling_points(data.rows)
    # A family at a single d has no trend to show (the standard store's gaussian_d50 beside
    # funnel_d10): it is left out, and without any family at two or more d, the figure.
    dims = points.groupby("family")["dim"].nunique()
    families = sorted(dims.index[dims >= 2], key=natural_key)
    if not families:
        raise MissingData("scaling needs a target family at two or more dimensions")
    neural = set(points.loc[points["trained"].fillna(False).astype(bool), "sampler"])
    with figure_style():
        figure, axes = new_figure(2, len(families), PANEL)
        for column, family in enumerate(families):
            quality, cost = axes[0, column], axes[1, column]
            per_family = points[points["family"].eq(family)]
            keys = sorted({(s, int(b)) for s, b in zip(per_family["sampler"],
                                                       per_family["budget"], strict=True)},
                          key=lambda key: natural_key(row_label(*key)))
            for sampler, budget in keys:
                line = per_family[per_family["sampler"].eq(sampler)
                                  & per_family["budget"].eq(budget)].sort_values("dim")
                if sampler == REFERENCE_LABEL:
                    quality.plot(line["dim"], line["mean"], color=REFERENCE_COLOR,
                                 linestyle=":", linewidth=1, label="reference floor")
                    continue
                label = row_label(sampler, budget)
                color = data.colors.get(sampler)
                # Budgets of one sampler share its colour: the largest has circles, smaller
                # ones triangles. Neural samplers are dashed (their seconds include training).
                style = "--" if sampler in neural else "-"
                marker = "o" if budget == max(b for s, b in keys if s == sampler) else "^"
                quality.errorbar(line["dim"], line["mean"], yerr=line["se"].fillna(0.0),
                                 color=color, marker=marker, markersize=4, linewidth=1,
                                 linestyle=style, label=label)
                cost.plot(line["dim"], line["seconds"], color=color, marker=marker,
                          markersize=4, linewidth=1, linestyle=style, label=label)
            quality.set_title(family)
            for ax, ylabel in ((quality, "KSD"), (cost, "seconds per cell")):
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlabel("dimension d")
                ax.set_ylabel(ylabel)
                dims = sorted(per_family["dim"].unique())
                ax.set_xticks(dims, [f"{d:g}" for d in dims])
                ax.minorticks_off()
        shared_legend(figure, axes.ravel())
    return figure


__all__ = ["scaling", "scaling_points"]
