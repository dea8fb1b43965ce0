"""The ``quality_vs_cost`` and ``quality_vs_seconds`` figures: the matched-cost view, drawn.

:mod:`benchmark.report.matched_cost` reads a "k times cheaper at the same quality" claim off a
table: per cost budget, the best quality each sampler reaches. These figures show the points
that table chooses among, so a reader sees the whole trade-off rather than five columns of it.
Both are drawn from :func:`~benchmark.report.matched_cost.cost_frame` — the frame the
table reads — so a figure and its table can never disagree about a cost.

Per target one panel, y the target's quality metric, as in the table
(:func:`~benchmark.report.time_to_quality.quality_metrics`: energy distance against exact
samples where the target has them, else FID against data; named on the panel's y axis; mean over
seeds, error bars ± s.e.; log when the panel's values span more than a decade):

* ``quality_vs_cost``: x = target evaluations per sample. The axis is logarithmic above 1 and
  linear between 0 and 1 (matplotlib's ``symlog``), because a one-step neural sampler
  evaluates the target *zero* times per sample while sampling, and that point must stay on the
  plot.
* ``quality_vs_seconds``: x = wall-clock seconds per 1,000 samples (log), the table's
  wall-clock view. Seconds depend on the machine and on parallel load: compare within a store.

An iterative sampler is one line through its budgets (filled markers).
A neural sampler is drawn twice per budget: a hollow marker at its sampling-only cost and a
filled one at its amortised cost — training target evaluations + Hessian-vector products
(or training seconds) spread over :data:`~benchmark.report.matched_cost.AMORTISED_OVER`
samples, as in the table — joined by a thin dotted line, the cost its training adds. A
step-axis neural sampler (PIS, budgets = sampling steps of one trained network) gets a line
through its budgets in each of the two modes. The reference floor (exact samples at the same
n, mean ± s.e.) is a grey line and band. Kept apart from the table so that writing tables never
imports matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchmark.report.aggregate import aggregate, natural_key
from benchmark.report.matched_cost import AMORTISED_OVER, cost_frame
from benchmark.report.plots_common import (
    MissingData,
    PlotData,
    facet_grid,
    figure_style,
)
from benchmark.report.time_to_quality import QUALITY_METRICS
from benchmark.schema import REFERENCE_LABEL

PANEL = (3.4, 2.7)
#: The cost axes: a cost column of :func:`~benchmark.report.matched_cost.cost_frame` → its
#: axis label.
COST_AXES: dict[str, str] = {
    "evaluations": "target evaluations per sample",
    "seconds": "wall-clock seconds per 1,000 samples",
}
#: Columns of the rows the cost frame reads; a frame built by hand may lack some.
NEEDED_COLUMNS: tuple[str, ...] = (
    "matrix", "cell_id", "target", "sampler", "budget", "seed", "n", "status", "metric", "value",
    "reason", "nfe", "train_nfe", "train_hvp", "train_seconds", "sample_seconds", "device")
FLOOR_COLOR = "0.55"
FLOOR_LABEL = "reference floor (± s.e.)"
#: A marker per sampler label, in natural order across the figure, and a line style that
#: alternates along that order. Beyond ten labels the shared palette turns to evenly spaced
#: hues, and neighbours in it (svgd and ula, dft_ns_mlp and dft_ns_partial) look alike: shape
#: and dashes keep them apart. What a marker's *fill* means is fixed (hollow: a neural
#: sampler's sampling-only cost), so the shapes carry no other meaning.
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "p", "X", "<", "h", ">", "*", "P")
LINESTYLES: tuple[str, ...] = ("-", "--")
#: The points' columns (one row per target, sampler, budget and cost mode).
POINT_COLUMNS: tuple[str, ...] = ("target", "metric", "sampler", "budget", "mode", "neural",
                                  "cost", "mean", "se")


def quality_cost_points(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """The plotted points of one cost axis.

    Args:
        rows: result rows (:data:`benchmark.schema.COLUMNS`).
        column: a key of :data:`COST_AXES`.

    Returns:
        One row per (target, sampler, budget, mode) with :data:`POINT_COLUMNS` — ``metric``
        the target's quality metric, ``mode`` ``"sampling"`` or ``"amortised"`` (neural
        samplers only), ``neural`` whether the sampler has training to amortise, ``cost`` the
        ``column`` cost per sample (per 1,000 samples for seconds), ``mean`` and ``se`` the
        quality (in ``metric``) over seeds. Points without a finite cost or mean are left out
        (and, on the seconds axis, zero seconds, which a log axis cannot show), so a target
        whose quality is NaN everywhere gets no point. Sorted by target, sampler, mode
        (sampling first) and budget.

    Raises:
        MissingData: columns missing, no target with a quality metric, or no finite point.
    """
    if column not in COST_AXES:
        raise ValueError(f"unknown cost axis '{column}'; valid: {', '.join(COST_AXES)}")
    missing = [name for name in NEEDED_COLUMNS if name not in rows.columns]
    if missing:
        raise MissingData(f"rows lack the column(s) {', '.join(missing)}")
    frame = cost_frame(rows)
    if frame.empty:
        raise MissingData(f"no sampler cells with one of the quality metrics "
                          f"{', '.join(QUALITY_METRICS)}")
    # cost_frame adds an "amortised" row exactly for the cells with training to amortise.
    trained = frame.loc[frame["mode"].eq("amortised"), ["target", "sampler"]]
    neural = pd.MultiIndex.from_frame(frame[["target", "sampler"]]).isin(
        pd.MultiIndex.from_frame(trained))
    points = frame.assign(neural=neural, cost=frame[column].astype(float),
                          budget=frame["budget"].astype(int))
    keep = np.isfinite(points["cost"]) & np.isfinite(points["mean"].astype(float))
    if column == "seconds":
        keep &= points["cost"] > 0
    points = points.loc[keep, list(POINT_COLUMNS)]
    if points.empty:
        raise MissingData(f"no quality cell with a finite cost in {COST_AXES[column]}")
    order = [(natural_key(str(target)), natural_key(str(sampler)), mode != "sampling", budget)
             for target, sampler, mode, budget in zip(points["target"], points["sampler"],
                                                      points["mode"], points["budget"],
                                                      strict=True)]
    points = points.assign(_key=order).sort_values("_key", kind="mergesort")
    return points.drop(columns="_key").reset_index(drop=True)


def floor_levels(rows: pd.DataFrame, metrics: Mapping[str, str]) -> pd.DataFrame:
    """Per target of ``metrics`` (target → its quality metric), the reference floor of that
    target's metric: ``mean`` and ``se`` (columns), indexed by target; averaged over the floors'
    ``n`` if a target has several. Targets without floor rows of their metric are left out."""
    reference = rows[rows["metric"].eq(rows["target"].map(dict(metrics)))
                     & rows["sampler"].eq(REFERENCE_LABEL)]
    if reference.empty:
        return pd.DataFrame(columns=["mean", "se"])
    return aggregate(reference).groupby("target")[["mean", "se"]].mean()


def _error_bars(mean: pd.Series, se: pd.Series, log_y: bool) -> np.ndarray:
    """``(2, n)`` lower and upper error lengths. On a log axis a bar reaching zero cannot be
    drawn, so its lower end is cut a decade below the mean (as in ``training_ksd``): it reads
    as "indistinguishable from zero at this scale"."""
    se = se.fillna(0.0).to_numpy(dtype=float)
    mean = mean.to_numpy(dtype=float)
    lower = np.minimum(se, mean - mean / 10) if log_y else se
    return np.vstack([lower, se])


def _spans_decades(values: list[float]) -> bool:
    positive = np.asarray([v for v in values if np.isfinite(v) and v > 0])
    return bool(positive.size) and positive.max() > 10 * positive.min()


def _series(ax: Axes, cells: pd.DataFrame, color: object, gid: str, log_y: bool, *,
            marker: str, filled: bool, label: str | None, linewidth: float,
            linestyle: str = "-", zorder: float = 2) -> None:
    """One sampler's points of one mode, joined through its budgets, with s.e. bars; the data
    line's ``gid`` is ``gid`` so tests (and readers of the PDF) can find it."""
    if cells.empty:
        return
    container = ax.errorbar(cells["cost"], cells["mean"],
                            yerr=_error_bars(cells["mean"], cells["se"], log_y), color=color,
                            marker=marker, markersize=4.5,
                            markerfacecolor=color if filled else "white",
                            markeredgewidth=1.0, linewidth=linewidth, linestyle=linestyle,
                            elinewidth=0.7, capsize=0, label=label, zorder=zorder)
    container.lines[0].set_gid(gid)


def _panel(ax: Axes, points: pd.DataFrame, floor: pd.Series | None, colors: dict,
           styles: dict[str, tuple[str, str]], column: str, metric: str) -> None:
    values = [*points["mean"]]
    if floor is not None:
        values.append(float(floor["mean"]))
    log_y = _spans_decades(values)
    for label in sorted(points["sampler"].unique(), key=natural_key):
        cells = points[points["sampler"].eq(label)]
        color = colors.get(label)
        marker, linestyle = styles[label]
        sampling = cells[cells["mode"].eq("sampling")]
        if not cells["neural"].any():
            _series(ax, sampling, color, f"{label}|sampling", log_y, marker=marker,
                    filled=True, label=label, linewidth=1.2, linestyle=linestyle)
            continue
        amortised = cells[cells["mode"].eq("amortised")]
        # A step-axis sampler has several budgets: a thin line through each mode's points.
        # Drawn above the iterative lines: a neural sampler is one or a few points per panel.
        _series(ax, sampling, color, f"{label}|sampling", log_y, marker=marker, filled=False,
                label=label, linewidth=0.8, zorder=3)
        _series(ax, amortised, color, f"{label}|amortised", log_y, marker=marker, filled=True,
                label=None, linewidth=0.8, zorder=3)
        pairs = sampling.merge(amortised, on="budget", suffixes=("_sampling", "_amortised"))
        for _, pair in pairs.iterrows():
            ax.plot([pair["cost_sampling"], pair["cost_amortised"]],
                    [pair["mean_sampling"], pair["mean_amortised"]], color=color,
                    linestyle=":", linewidth=0.9, zorder=1, gid=f"{label}|training")
    if floor is not None and np.isfinite(floor["mean"]):
        mean, se = float(floor["mean"]), float(floor["se"]) if np.isfinite(floor["se"]) else 0.0
        low = max(mean - se, mean / 10) if log_y else mean - se
        ax.axhspan(low, mean + se, color=FLOOR_COLOR, alpha=0.25, linewidth=0, zorder=0)
        ax.axhline(mean, color=FLOOR_COLOR, linewidth=1.2, zorder=0, gid="floor",
                   label=FLOOR_LABEL)
    if column == "evaluations":
        # Zero evaluations (a one-step neural sampler's sampling) must stay on the axis: linear
        # on [0, 1], logarithmic above, the linear part as wide as half a decade.
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
        # Autoscaling would reach into the (meaningless) negative side of symlog: start just
        # left of zero, and leave the right end a factor of 2 beyond the costliest point.
        ax.set_xlim(-0.3, 2.0 * max(float(points["cost"].max()), 1.0))
    else:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(COST_AXES[column])
    ax.set_ylabel(metric.replace("_", " "))


def _sampler_legend(figure: Figure, axes: list[Axes]) -> None:
    """One legend outside on the right: samplers in natural order (the order of the table),
    the floor last, whatever panel each first appears in."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    order = sorted((label for label in handles if label != FLOOR_LABEL), key=natural_key)
    order += [FLOOR_LABEL] if FLOOR_LABEL in handles else []
    figure.legend([handles[label] for label in order], order, loc="outside right upper",
                  frameon=False)


def quality_vs(data: PlotData, column: str) -> Figure:
    """The figure of one cost axis (``column``, a key of :data:`COST_AXES`); see the module
    docstring.

    Raises:
        MissingData: as :func:`quality_cost_points`.
    """
    points = quality_cost_points(data.rows, column)
    # Each panel is of its target's own metric (one per target, from the points themselves).
    metrics = points.groupby("target")["metric"].first().to_dict()
    floors = floor_levels(data.rows, metrics)
    targets = sorted(points["target"].unique(), key=natural_key)
    labels = sorted(points["sampler"].unique(), key=natural_key)
    styles = {label: (MARKERS[index % len(MARKERS)], LINESTYLES[index % len(LINESTYLES)])
              for index, label in enumerate(labels)}
    with figure_style():
        figure, axes = facet_grid(len(targets), PANEL)
        for ax, target in zip(axes, targets, strict=True):
            floor = floors.loc[target] if target in floors.index else None
            _panel(ax, points[points["target"].eq(target)], floor, data.colors, styles, column,
                   metrics[target])
            ax.set_title(target)
        _sampler_legend(figure, axes)
        # The marker key, once for the figure: what filled, hollow and dotted mean.
        kinds = [Line2D([], [], color="0.3", marker="o", markersize=4.5, linewidth=1.2,
                        label="iterative, one point per budget")]
        if points["neural"].any():
            training = ("training evaluations + HVPs" if column == "evaluations"
                        else "training seconds")
            kinds += [Line2D([], [], color="0.3", marker="o", markersize=4.5,
                             markerfacecolor="white", linestyle="none",
                             label="neural, sampling only (hollow)"),
                      Line2D([], [], color="0.3", marker="o", markersize=4.5, linestyle="none",
                             label=f"neural, + {training} spread over {AMORTISED_OVER:,} "
                                   f"samples"),
                      Line2D([], [], color="0.3", linestyle=":", linewidth=0.9,
                             label="cost added by training")]
        figure.legend(handles=kinds, loc="outside lower center", ncols=2, frameon=False)
    return figure


def quality_vs_cost(data: PlotData) -> Figure:
    """Quality vs target evaluations per sample, per target (module docstring)."""
    return quality_vs(data, "evaluations")


def quality_vs_seconds(data: PlotData) -> Figure:
    """Quality vs wall-clock seconds per 1,000 samples, per target (module docstring)."""
    return quality_vs(data, "seconds")


__all__ = ["COST_AXES", "POINT_COLUMNS", "floor_levels", "quality_cost_points", "quality_vs",
           "quality_vs_cost", "quality_vs_seconds"]
