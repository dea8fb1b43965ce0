"""Image-EBM figures (the paper's Figures 3 and 5), pure functions of the results store.

* ``fig3_ebm``: one row per image target. The first panel shows test images of the target's
  dataset (what the samples should look like), then one panel per :data:`FIG3_PANELS` entry:
  one-step DFT-NS without and with the final denoising step ``+dn``, one-step KL-NS, annealed
  Langevin at 200 steps without and with ``+dn``, the 2,700-step reference schedule with
  ``+dn``, and, on exact-sample targets, the floor row's exact draws. Each is a mosaic of the
  first :data:`MOSAIC` stored samples of the lowest stored seed. Pixels are shown clipped to
  ``[0, 1]`` (the data range; the samples themselves are stored unclipped).
* ``training_fid``: log FID against the data and against the EBM reference (the two views of
  docs/metrics.md#why-two-fid-views) vs training iteration, from the ``fid_data_eval`` /
  ``fid_ref_eval`` history rows the runner logs on a fixed batch of the *undenoised* generator
  output; mean ± s.e.
  over seeds as a band; the 200-step MCMC samplers of the same store as horizontal lines
  (mean over seeds; dashed for ``+dn`` rows).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.report.aggregate import aggregate, natural_key
from benchmark.report.plots_blr import training_curves
from benchmark.report.plots_common import MissingData, PlotData, figure_style, new_figure
from benchmark.schema import REFERENCE_LABEL, denoised_label


@dataclass(frozen=True)
class Panel:
    """One sample panel of Figure 3: the stored samples of the lowest seed among the cells of
    any of ``labels`` at ``budget`` (several labels where a matrix names one schedule
    differently per target, as ``paper-ebm`` does for mnist16's single-seed 2,700-step run)."""

    title: str
    labels: tuple[str, ...]
    budget: int
    missing: str = "no stored samples"  # what the empty panel says


#: The sample panels of Figure 3, in order, after the test images.
FIG3_PANELS: tuple[Panel, ...] = (
    Panel("dft_ns@1", ("dft_ns",), 1),
    Panel("dft_ns+dn@1", (denoised_label("dft_ns"),), 1),
    Panel("kl_ns@1", ("kl_ns",), 1),
    Panel("annealed_langevin@200", ("annealed_langevin",), 200),
    Panel("annealed_langevin+dn@200", (denoised_label("annealed_langevin"),), 200),
    Panel("annealed_langevin_ref+dn@2700", (denoised_label("annealed_langevin_ref"),
                                            denoised_label("annealed_langevin_ref_1seed")), 2700),
    # An EBM's floor row compares held-out data, so it stores no samples: say why it is empty.
    Panel("exact samples", (REFERENCE_LABEL,), 0,
          "none stored\n(an EBM has no\nexact sampler)"),
)
MOSAIC = 64  # samples per panel (an 8 × 8 mosaic)
#: History metric -> (table metric of the MCMC lines, axis label).
FID_HISTORY = {"fid_data_eval": ("fid_data", "FID vs data"),
               "fid_ref_eval": ("fid_ref", "FID vs EBM reference")}
MCMC_BUDGET = 200
IMAGE_METRIC = "fid_data"  # a store with rows of this metric holds image targets


def mosaic(samples: np.ndarray, count: int = MOSAIC) -> np.ndarray:
    """Tile the first ``count`` flat single-channel square images ``(n, H·W)`` into a grid.

    Returns:
        ``(rows·(H+1) − 1, columns·(W+1) − 1)`` pixels in ``[0, 1]``, one-pixel white gutters.
    """
    count = min(count, len(samples))
    side = math.isqrt(samples.shape[1])
    if side * side != samples.shape[1]:
        raise MissingData(f"samples of dimension {samples.shape[1]} are not square images")
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.ones((rows * (side + 1) - 1, columns * (side + 1) - 1))
    for index in range(count):
        r, c = divmod(index, columns)
        image = np.clip(samples[index].reshape(side, side), 0.0, 1.0)
        canvas[r * (side + 1):r * (side + 1) + side, c * (side + 1):c * (side + 1) + side] = image
    return canvas


def _image_targets(rows: pd.DataFrame) -> list[str]:
    targets = rows.loc[rows["metric"].eq(IMAGE_METRIC), "target"].unique()
    if not len(targets):
        raise MissingData(f"no image-EBM rows ('{IMAGE_METRIC}') in the store")
    return sorted(targets, key=natural_key)


def dataset_panel(rows: pd.DataFrame, target: str, count: int = MOSAIC) -> np.ndarray | None:
    """``count`` test-split images ``(count, H·W)`` of an image target's dataset (a seeded
    subset: some splits are stored in label order), or ``None`` when the target or its data
    cannot be loaded here (a plug-in target, missing files)."""
    from targets import TARGETS
    from targets.datasets import held_out_images

    first = rows[rows["target"].eq(target)].iloc[0]
    try:
        params = json.loads(first["target_params"]) if first["target_params"] else {}
        dataset = TARGETS[str(first["target_name"])](**params).dataset
        return held_out_images(dataset, count, seed=0).double().numpy()
    except Exception:  # noqa: BLE001 - the panel says "unavailable" instead of failing
        return None


def figure3(data: PlotData) -> Figure:
    """Figure 3: test images, then sample mosaics of the :data:`FIG3_PANELS` rows."""
    rows = data.rows
    targets = _image_targets(rows)
    cells = rows.drop_duplicates("cell_id")
    cells = cells[cells["status"].eq("ok")].sort_values("seed")
    found = False
    with figure_style():
        figure, axes = new_figure(len(targets), 1 + len(FIG3_PANELS), (2.2, 2.4))
        for r, target in enumerate(targets):
            images = dataset_panel(rows, target)
            _show(axes[r, 0], f"{target}: test images", images, "test images unavailable")
            for c, panel in enumerate(FIG3_PANELS, start=1):
                match = cells[cells["target"].eq(target) & cells["sampler"].isin(panel.labels)
                              & cells["budget"].astype(int).eq(panel.budget)]
                stored = [cell for cell in match["cell_id"] if data.has_samples(cell)]
                samples = data.samples(stored[0]) if stored else None
                _show(axes[r, c], f"{target}: {panel.title}", samples, panel.missing)
                found = found or samples is not None
    if not found:
        raise MissingData("no stored samples of the Figure-3 samplers "
                          f"({', '.join(panel.title for panel in FIG3_PANELS)})")
    return figure


def _show(ax, title: str, images: np.ndarray | None, missing: str) -> None:
    ax.set_axis_off()
    ax.set_title(title, fontsize=7)
    if images is None:
        ax.text(0.5, 0.5, missing, ha="center", va="center", fontsize=7, transform=ax.transAxes)
    else:
        ax.imshow(mosaic(images), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")


def undenoised_twins(rows: pd.DataFrame) -> dict[tuple[str, str], str]:
    """``(target, denoised label) -> label of its undenoised twin``: the entry of the same
    sampler with the same resolved parameters, without the final step (the two share one
    training). Denoised entries without a twin in ``rows`` are left out."""
    key = ["target", "sampler_name", "params"]
    entries = rows[[*key, "sampler", "denoise"]].drop_duplicates()
    flagged = entries["denoise"].eq(True)
    pairs = entries[flagged].merge(entries[~flagged].drop(columns="denoise"), on=key,
                                   suffixes=("", "_twin"))
    return {(target, label): twin for target, label, twin
            in pairs[["target", "sampler", "sampler_twin"]].itertuples(index=False)}


def training_fid(data: PlotData) -> Figure:
    """Figure 5: log FID (both views) vs training iteration, with the 200-step MCMC lines."""
    curves = training_curves(data.history, list(FID_HISTORY))
    if curves.empty:
        raise MissingData("no FID training history (fid_data_eval / fid_ref_eval rows)")
    # One training serves a sampler entry with and without the final step (same train key),
    # so the history may carry either label: the curve is the undenoised generator's.
    twins = undenoised_twins(data.rows)
    curves["sampler"] = [twins.get((target, label), label)
                         for target, label in zip(curves["target"], curves["sampler"],
                                                  strict=True)]
    metrics = [m for m in FID_HISTORY if m in set(curves["metric"])]
    targets = sorted(curves["target"].unique(), key=natural_key)
    summary = aggregate(data.rows[data.rows["metric"].isin(
        [FID_HISTORY[m][0] for m in metrics])]) if not data.rows.empty else pd.DataFrame()
    denoised = set(map(tuple, data.rows.loc[data.rows["denoise"].eq(True),
                                            ["target", "sampler"]].to_numpy()))
    with figure_style():
        figure, axes = new_figure(len(metrics), len(targets), (4.4, 2.8))
        for row, metric in enumerate(metrics):
            table_metric, axis_label = FID_HISTORY[metric]
            for column, target in enumerate(targets):
                ax = axes[row, column]
                panel = curves[curves["metric"].eq(metric) & curves["target"].eq(target)]
                for label in sorted(panel["sampler"].unique(), key=natural_key):
                    curve = (panel[panel["sampler"].eq(label)].groupby("iteration")
                             [["mean", "se"]].mean().reset_index())
                    color = data.colors.get(label)
                    ax.plot(curve["iteration"], curve["mean"], color=color, label=label,
                            linewidth=1.5)
                    se = curve["se"].fillna(0.0)
                    ax.fill_between(curve["iteration"], (curve["mean"] - se).clip(lower=1e-3),
                                    curve["mean"] + se, color=color, alpha=0.2, linewidth=0)
                if not summary.empty:
                    lines = summary[summary["target"].eq(target)
                                    & summary["metric"].eq(table_metric)
                                    & summary["budget"].eq(MCMC_BUDGET)]
                    for line in lines.itertuples(index=False):
                        if not np.isfinite(line.mean) or line.mean <= 0:
                            continue
                        ax.axhline(line.mean, color=data.colors.get(line.sampler), linewidth=1,
                                   linestyle="--" if (target, line.sampler) in denoised
                                   else ":", label=f"{line.sampler}@{MCMC_BUDGET}")
                ax.set_yscale("log")
                if row == 0:
                    ax.set_title(target)
                ax.set_xlabel("training iteration")
                ax.set_ylabel(axis_label)
        bottom_legend(figure, axes.ravel())
    return figure


def bottom_legend(figure: Figure, axes) -> None:
    """One legend below the panels, each label once, two columns (the labels are long
    and a right-hand legend would squeeze a one-target figure to a sliver)."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside lower center",
                      ncols=2, frameon=False, fontsize=7)
