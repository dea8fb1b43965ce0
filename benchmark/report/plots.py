"""Figures are pure functions of the results store: ``python -m benchmark plot STORE``.

The figures (docs/harness.md#figures), each written as PNG and PDF:

* ``fig1_<target>`` (donut, rosenbrock): target density, then DFT-NS one step vs SVGD at
  10/100/200 steps, from stored samples (:mod:`benchmark.report.plots_2d`).
* ``training_ksd``: KSD on a fixed evaluation batch (history metric ``ksd_eval``) vs training
  iteration, one line per sampler label, one panel per target, log-y, mean ± s.e. over seeds.
* ``ablation_sigma_kphi``: mean over seeds per (σ, K_φ) of the DFT-NS cells, of final KSD and
  of energy distance / floor (ground truth, where the targets have exact samples), one heatmap
  per target and metric (and per setting of any other parameter that varies). σ is read as
  given, or as the fraction of the target's length scale (``sigma_fraction``) when it is not.
* ``scaling``: KSD and seconds per cell against the dimension ``d`` for targets with a
  ``dim`` parameter (:mod:`benchmark.report.plots_scaling`).
* ``time_to_quality``: ground-truth quality vs wall-clock, neural training curves beside
  iterative budgets (:mod:`benchmark.report.time_to_quality`).
* ``quality_vs_cost``, ``quality_vs_seconds``: the matched-cost table drawn — ground-truth
  quality vs target evaluations per sample, and vs seconds per 1,000 samples; neural samplers
  sampling-only (hollow) and with training amortised (filled)
  (:mod:`benchmark.report.plots_matched_cost`).
* ``frontier``: KSD vs wall-clock per target, one line per sampler across budgets; neural
  samplers twice, sampling only (filled) and amortised training + sampling (hollow); the
  reference floor as a horizontal line.

Statistics follow the tables (docs/metrics.md#statistics): mean over seeds with a finite value
from an ``ok`` cell, s.e. = sample s.d. / √seeds, none for one seed. Colours are fixed per
sampler label (:func:`benchmark.report.plots_common.sampler_colors`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchmark.report.aggregate import aggregate, mean_se, natural_key
from benchmark.report.plots_2d import FIG1_TARGETS, figure1
from benchmark.report.plots_blr import training_blr
from benchmark.report.plots_common import (
    DFT_PREFIX,
    MissingData,
    PlotData,
    facet_grid,
    figure_style,
    new_figure,
    save_figure,
    shared_legend,
)
from benchmark.report.plots_ebm import figure3, training_fid
from benchmark.report.plots_matched_cost import quality_vs_cost, quality_vs_seconds
from benchmark.report.plots_scaling import scaling
from benchmark.report.plots_time_to_quality import time_to_quality_figure
from benchmark.schema import REFERENCE_LABEL

KSD = "ksd"
HISTORY_KSD = "ksd_eval"
#: Parameters the σ × K_φ ablation varies (σ absolutely, or as a fraction of the target's
#: length scale ℓ, which is how the neural defaults set it).
ABLATION_KEYS = ("sigma", "sigma_fraction", "score_steps")
#: Heatmap rows of the ablation, in order, with their colour-bar labels.
ABLATION_METRICS = {KSD: "KSD", "energy_distance": "energy distance / floor"}
PANEL = (3.2, 2.6)


def _targets(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["target"].unique(), key=natural_key)


def training_ksd(data: PlotData) -> Figure:
    """KSD vs training iteration per target; DFT-NS labels drawn thicker (full vs partial)."""
    history = data.history[data.history["metric"].eq(HISTORY_KSD)].copy()
    if history.empty:
        raise MissingData(f"no '{HISTORY_KSD}' training history (history/*.csv)")
    history["value"] = pd.to_numeric(history["value"], errors="coerce").astype(float)
    # KSD is >= 0; a zero or non-finite value (diverged evaluation) has no place on a log axis.
    history = history[history["value"] > 0]
    curves = mean_se(history, ["target", "sampler", "iteration"], "value")
    targets = _targets(curves)
    with figure_style():
        figure, axes = facet_grid(len(targets), PANEL)
        for ax, target in zip(axes, targets, strict=True):
            per_target = curves[curves["target"].eq(target)]
            for label in sorted(per_target["sampler"].unique(), key=natural_key):
                curve = per_target[per_target["sampler"].eq(label)].sort_values("iteration")
                highlight = label.startswith(DFT_PREFIX)
                color = data.colors.get(label)
                ax.plot(curve["iteration"], curve["mean"], color=color, label=label,
                        linewidth=2.0 if highlight else 1.0, alpha=1.0 if highlight else 0.7)
                se = curve["se"].fillna(0.0)
                # A band reaching zero cannot be drawn on a log axis: it is cut a decade below
                # the mean, which reads as "indistinguishable from zero at this scale".
                low = np.maximum(curve["mean"] - se, curve["mean"] / 10)
                ax.fill_between(curve["iteration"], low, curve["mean"] + se, color=color,
                                alpha=0.2, linewidth=0)
            ax.set_yscale("log")
            ax.set_title(target)
            ax.set_xlabel("training iteration")
            ax.set_ylabel("KSD (evaluation batch)")
        shared_legend(figure, axes)
    return figure


def _sigma_setting(params: dict) -> tuple[str, float]:
    """The σ axis of one DFT-NS cell: ``("σ", sigma)`` when σ is given, else
    ``("σ / ℓ", sigma_fraction)``, the fraction of the target's length scale ℓ (the defaults)."""
    if params.get("sigma") is not None:
        return "σ", float(params["sigma"])
    return "σ / ℓ", float(params["sigma_fraction"])


def _ablation_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """Per DFT-NS (target, sampler, budget) and ablation metric: the mean over seeds (energy
    distance divided by its floor), with the σ axis, K_φ and a variant name."""
    dft = rows[rows["metric"].isin(ABLATION_METRICS) & (rows["sampler_name"].eq("dft_ns")
                                                        | rows["sampler"].str.startswith("dft"))]
    if dft.empty:
        raise MissingData("no DFT-NS cells with KSD or energy distance")
    params = (dft.drop_duplicates(["target", "sampler", "budget"])
              .set_index(["target", "sampler", "budget"])["params"].map(json.loads))
    params = params[params.map(lambda p: "score_steps" in p
                               and ("sigma" in p or "sigma_fraction" in p))]
    # An ablation varies (sigma, K_phi) within a target; a per-target sigma (e.g. scaled to
    # each BLR posterior) is not one, and would leave all-empty heatmaps.
    sigma = params.map(_sigma_setting)
    settings = pd.Series([(axis, p["score_steps"]) for axis, p in zip(sigma, params, strict=True)],
                         index=params.index)
    per_target = settings.groupby(level="target").nunique()
    keep = params.index.get_level_values("target").isin(per_target[per_target >= 2].index)
    params, sigma = params[keep], sigma[keep]
    if params.empty:
        raise MissingData("DFT-NS cells do not vary sigma and score_steps")
    # Any other parameter that differs between the cells (e.g. gradient full/partial, or σ
    # given absolutely in some cells and as a fraction of ℓ in others) splits them into
    # variants, shown as separate heatmap rows rather than averaged together.
    others = pd.DataFrame([{k: json.dumps(v) for k, v in p.items() if k not in ABLATION_KEYS}
                           for p in params], index=params.index)
    others["σ axis"] = [json.dumps(axis) for axis, _ in sigma]
    others["budget"] = others.index.get_level_values("budget").astype(str)
    varying = [column for column in others.columns if others[column].nunique() > 1]
    variant = pd.Series("", index=others.index)
    if varying:
        variant = others[varying].apply(
            lambda row: ", ".join(f"{key}={json.loads(value)}" for key, value in row.items()),
            axis=1)
    keys = ["target", "sampler", "budget"]
    # The floor rows come along so that aggregate() can attach each metric's floor.
    floors = rows[rows["metric"].isin(ABLATION_METRICS) & rows["sampler"].eq(REFERENCE_LABEL)]
    summary = aggregate(pd.concat([dft, floors])).set_index(keys)
    summary = summary[summary.index.isin(params.index)].reset_index()
    # Energy distance spans decades across targets: shown relative to its floor (ground truth).
    relative = summary["metric"].ne(KSD) & (summary["floor_mean"] > 0)
    summary.loc[relative, "mean"] = summary["mean"] / summary["floor_mean"]
    summary = summary[summary["metric"].eq(KSD) | relative]
    info = pd.DataFrame({"sigma_axis": [axis for axis, _ in sigma],
                         "sigma": [value for _, value in sigma],
                         "score_steps": [p["score_steps"] for p in params],
                         "variant": variant.to_numpy()}, index=params.index)
    return summary.join(info, on=keys)


def ablation_sigma_kphi(data: PlotData) -> Figure:
    """Heatmaps over (σ rows, K_φ columns): targets across; down, each ablation metric (KSD,
    then energy distance / floor where the targets have exact samples) for each variant."""
    cells = _ablation_cells(data.rows)
    targets = _targets(cells)
    panels = [(metric, variant) for metric in ABLATION_METRICS
              if cells["metric"].eq(metric).any()
              for variant in sorted(cells["variant"].unique())]
    with figure_style():
        figure, axes = new_figure(len(panels), len(targets), (3.0, 2.6))
        for row, (metric, variant) in enumerate(panels):
            label = ABLATION_METRICS[metric]
            for column, target in enumerate(targets):
                ax = axes[row, column]
                table = cells[cells["target"].eq(target) & cells["variant"].eq(variant)
                              & cells["metric"].eq(metric)]
                grid = table.pivot_table(index="sigma", columns="score_steps", values="mean",
                                         aggfunc="mean", dropna=False)
                values = grid.to_numpy()
                positive = values[np.isfinite(values) & (values > 0)]
                # Values may span decades across σ: then colour on a log scale, else linear.
                norm = None
                if positive.size and positive.max() > 10 * positive.min():
                    norm = LogNorm(positive.min(), positive.max())
                sns.heatmap(grid, ax=ax, annot=True, fmt=".3g", cmap="rocket_r", norm=norm,
                            cbar_kws={"label": label}, annot_kws={"fontsize": 7})
                ax.grid(False)
                ax.set_xlabel("K_φ (score steps)")
                ax.set_ylabel(" or ".join(sorted(table["sigma_axis"].unique())) or "σ")
                title = f"{target}: {label}" + (f"\n{variant}" if variant else "")
                ax.set_title(title, fontsize=8)
    return figure


def _frontier_points(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (target, sampler, budget): KSD mean/s.e. and mean sample and training seconds."""
    ksd = rows[rows["metric"].eq(KSD)]
    if ksd.empty:
        raise MissingData(f"no '{KSD}' rows")
    summary = aggregate(ksd)
    seconds = ksd.assign(**{column: pd.to_numeric(ksd[column], errors="coerce").astype(float)
                            for column in ("sample_seconds", "train_seconds")})
    seconds = seconds.groupby(["target", "sampler", "budget"])[
        ["sample_seconds", "train_seconds"]].mean()
    return summary.join(seconds, on=["target", "sampler", "budget"])


def frontier(data: PlotData) -> Figure:
    """KSD (log) vs wall-clock seconds (log) per target; see the module docstring."""
    points = _frontier_points(data.rows)
    # A target with only its floor so far (a store being written) has nothing to compare.
    targets = _targets(points[points["sampler"].ne(REFERENCE_LABEL)])
    if not targets:
        raise MissingData(f"no sampler cells with '{KSD}' rows, only floors")
    with figure_style():
        figure, axes = facet_grid(len(targets), PANEL)
        for ax, target in zip(axes, targets, strict=True):
            per_target = points[points["target"].eq(target)]
            for label in sorted(per_target["sampler"].unique(), key=natural_key):
                curve = per_target[per_target["sampler"].eq(label)].sort_values("budget")
                if label == REFERENCE_LABEL:
                    floor = curve["mean"].mean()
                    if np.isfinite(floor):
                        ax.axhline(floor, color="black", linestyle=":", linewidth=1,
                                   label="reference floor")
                    continue
                color = data.colors.get(label)
                error = curve["se"].fillna(0.0)
                ax.errorbar(curve["sample_seconds"], curve["mean"], yerr=error, color=color,
                            marker="o", markersize=4, linewidth=1, label=label)
                for budget, x, y in zip(curve["budget"], curve["sample_seconds"],
                                        curve["mean"], strict=True):
                    ax.annotate(str(budget), (x, y), textcoords="offset points",
                                xytext=(3, 3), fontsize=6, color=color)
                if curve["train_seconds"].notna().any():  # neural: also the amortised cost
                    ax.errorbar(curve["train_seconds"] + curve["sample_seconds"], curve["mean"],
                                yerr=error, color=color, marker="s", markersize=4,
                                markerfacecolor="none", linestyle="--", linewidth=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(target)
            ax.set_xlabel("wall-clock seconds")
            ax.set_ylabel("KSD")
        shared_legend(figure, axes)
        if points["train_seconds"].notna().any():
            kinds = [Line2D([], [], color="0.3", marker="o", label="sampling only"),
                     Line2D([], [], color="0.3", marker="s", markerfacecolor="none",
                            linestyle="--", label="training + sampling (neural)")]
            figure.legend(handles=kinds, loc="outside lower center", ncols=2, frameon=False)
    return figure


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the registry: ``render(data)`` returns it or raises MissingData."""

    name: str
    description: str
    render: Callable[[PlotData], Figure]


FIGURES: dict[str, FigureSpec] = {
    spec.name: spec for spec in [
        *(FigureSpec(f"fig1_{target}", f"{target}: density, DFT-NS one step vs SVGD "
                     "at 10/100/200 steps (stored samples)", partial(figure1, target_label=target))
          for target in FIG1_TARGETS),
        FigureSpec("training_ksd", "KSD vs training iteration (training histories)",
                   training_ksd),
        FigureSpec("ablation_sigma_kphi", "DFT-NS mean KSD and energy distance / floor per "
                   "(sigma, K_phi)",
                   ablation_sigma_kphi),
        FigureSpec("frontier", "KSD vs wall-clock seconds, every sampler", frontier),
        FigureSpec("time_to_quality", "energy distance (FID against data where a target has "
                   "no exact samples) vs wall-clock: iterative budgets, neural training curves",
                   time_to_quality_figure),
        FigureSpec("quality_vs_cost", "energy distance (FID against data where a target has "
                   "no exact samples) vs target evaluations per sample: the matched-cost view, "
                   "neural samplers sampling-only and amortised", quality_vs_cost),
        FigureSpec("quality_vs_seconds", "energy distance (FID against data where a target has "
                   "no exact samples) vs seconds per 1,000 samples: the matched-cost view, "
                   "neural samplers sampling-only and amortised", quality_vs_seconds),
        FigureSpec("training_blr", "BLR test accuracy and moment errors vs training "
                   "iteration (Figure 4; training histories)", training_blr),
        FigureSpec("fig3_ebm", "image targets: test images beside DFT-NS and KL-NS one step, "
                   "annealed Langevin at 200 and 2,700 steps ± denoising, exact draws "
                   "(Figure 3; stored samples)", figure3),
        FigureSpec("training_fid", "image EBMs: log FID (data, EBM reference) vs training "
                   "iteration with 200-step MCMC lines (Figure 5; histories)", training_fid),
        FigureSpec("scaling", "KSD and seconds per cell vs dimension d (gaussian_d, funnel_d)",
                   scaling),
    ]
}


@dataclass(frozen=True)
class FigureResult:
    """What happened to one figure: written ``paths``, or the ``skipped`` reason."""

    name: str
    paths: tuple[Path, ...] = ()
    skipped: str = ""
    seconds: float = 0.0


def write_figures(store_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                  names: Sequence[str] | None = None) -> list[FigureResult]:
    """Render figures of a results store to ``<out_dir>/<name>.png`` and ``.pdf``.

    Args:
        store_dir: the results store.
        out_dir: where figures go (default ``<store_dir>/figures``).
        names: figures to make, keys of :data:`FIGURES` (default: all).

    Returns:
        One :class:`FigureResult` per name, in order; ``seconds`` is render + save time.

    Raises:
        KeyError: an unknown figure name.
    """
    data = PlotData.load(store_dir)
    out = Path(out_dir) if out_dir is not None else Path(store_dir) / "figures"
    results = []
    for name in names or list(FIGURES):
        spec = FIGURES[name]
        start = time.perf_counter()
        try:
            figure = spec.render(data)
        except MissingData as reason:
            results.append(FigureResult(name, skipped=str(reason)))
            continue
        paths = save_figure(figure, out, name)
        results.append(FigureResult(name, tuple(paths), seconds=time.perf_counter() - start))
    return results
