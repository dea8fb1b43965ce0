"""The Figure-1 style grid: a 2-D target's density, then DFT-NS one step vs SVGD at 10/100/200.

One row per target: panel 1 is the target's unnormalised density on a grid, computed from the
target registry (a function of the stored target identity, ``target_name`` and
``target_params``); the next panels scatter the stored samples (``<store>/samples/<cell_id>.pt``,
see :mod:`benchmark.report.plots_common`) of one seed — the lowest that has any — on the same axes.
The window comes from quantiles of reference samples (the floor cell's stored samples, else
exact samples drawn from the target with a fixed seed), so every sampler is judged on the
region where the target has its mass; points outside are counted in the panel title.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from benchmark.plan import plugins
from benchmark.report.plots_common import (
    DFT_PREFIX,
    MissingData,
    PlotData,
    figure_style,
    new_figure,
)
from benchmark.schema import REFERENCE_LABEL
from targets.base import Target, make_generator

FIG1_TARGETS: tuple[str, ...] = ("donut", "rosenbrock")
SVGD_STEPS: tuple[int, ...] = (10, 100, 200)
#: Preferred DFT-NS labels, in order; otherwise the first label starting with ``dft_ns``.
DFT_PREFERENCE: tuple[str, ...] = ("dft_ns_full", "dft_ns")
#: Central mass the window must hold along each axis (0.5 % cut from each tail), then widened
#: by this fraction of its width on each side so the density's edge stays visible.
WINDOW_QUANTILES = (0.005, 0.995)
WINDOW_MARGIN = 0.1
GRID_POINTS = 400  # fine enough to resolve rosenbrock's ridge (width ~0.3) on an ~80-wide window
NUM_REFERENCE = 5000  # exact samples for the window when the store holds none (fixed seed 0)


def dft_label(labels: list[str]) -> str | None:
    """The DFT-NS label shown: ``dft_ns_full``, then ``dft_ns``, then the first ``dft_ns*``."""
    for preferred in DFT_PREFERENCE:
        if preferred in labels:
            return preferred
    return next((label for label in sorted(labels) if label.startswith(DFT_PREFIX)), None)


def svgd_label(cells: pd.DataFrame) -> str | None:
    """The SVGD label shown: ``svgd`` if present, else the first label of registry name svgd."""
    labels = sorted(set(cells.loc[cells["sampler_name"].eq("svgd"), "sampler"]))
    if "svgd" in set(cells["sampler"]):
        return "svgd"
    return labels[0] if labels else None


def build_stored_target(target_name: str, target_params: str) -> Target:
    """The target of stored rows, float64 on the CPU (registry name or import path).

    Names read from a store are resolved with no plugin folder (:mod:`benchmark.plan.plugins`):
    registry names and installed packages only.
    """
    from targets import TARGETS

    try:
        target_class, _ = plugins.resolve("target", target_name, TARGETS, Target)
        return target_class(device="cpu", dtype=torch.float64, **json.loads(target_params))
    except (plugins.PluginError, TypeError, ValueError) as error:
        raise MissingData(f"cannot rebuild target '{target_name}': {error}") from None


def sample_window(reference: np.ndarray) -> np.ndarray:
    """Axis limits ``(2, 2)`` (rows x, y; columns low, high) from reference quantiles."""
    finite = reference[np.isfinite(reference).all(axis=1)]
    low, high = np.quantile(finite, WINDOW_QUANTILES, axis=0)
    pad = WINDOW_MARGIN * (high - low)
    return np.stack((low - pad, high + pad), axis=1)


def density_grid(target: Target, window: np.ndarray, points: int = GRID_POINTS
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid axes ``(points,)``, ``(points,)`` and ``exp(log q~ − max)`` ``(points, points)``.

    Subtracting the maximum before exponentiating keeps the peak at 1 whatever the unknown
    normalising constant, and avoids overflow; rows of the density index y, columns x.
    """
    xs = np.linspace(*window[0], points)
    ys = np.linspace(*window[1], points)
    grid_x, grid_y = np.meshgrid(xs, ys)
    x = target.tensor(np.stack((grid_x.ravel(), grid_y.ravel()), axis=1))
    with torch.no_grad():
        log_prob = target.log_prob(x).cpu().numpy().reshape(points, points)
    log_prob = np.where(np.isfinite(log_prob), log_prob, -np.inf)
    return xs, ys, np.exp(log_prob - log_prob.max())


def _panels(data: PlotData, cells: pd.DataFrame) -> tuple[int, list[tuple[str, str, str]]]:
    """The seed shown and its panels ``(title, sampler label, cell_id)`` that have samples."""
    wanted = []
    dft = dft_label(sorted(set(cells["sampler"])))
    if dft is not None:
        wanted.append((f"{dft} @1", dft, 1))
    svgd = svgd_label(cells)
    if svgd is not None:
        wanted += [(f"{svgd} @{steps}", svgd, steps) for steps in SVGD_STEPS]
    keys = {(label, budget) for _, label, budget in wanted}
    stored = cells[[(s, int(b)) in keys and data.has_samples(c) for s, b, c
                    in zip(cells["sampler"], cells["budget"], cells["cell_id"], strict=True)]]
    if stored.empty:
        raise MissingData("no stored samples (samples/<cell_id>.pt) of DFT-NS@1 or SVGD@"
                          + "/".join(map(str, SVGD_STEPS)))
    seed = int(stored["seed"].min())
    at_seed = stored[stored["seed"].eq(seed)]
    panels = []
    for title, label, budget in wanted:
        match = at_seed[at_seed["sampler"].eq(label) & at_seed["budget"].eq(budget)]
        if not match.empty:
            panels.append((title, label, str(match["cell_id"].iloc[0])))
    return seed, panels


def _reference_samples(data: PlotData, cells: pd.DataFrame, target: Target, seed: int,
                       fallback: list[np.ndarray]) -> np.ndarray:
    floors = cells[cells["sampler"].eq(REFERENCE_LABEL)]
    floors = floors.assign(other_seed=floors["seed"].ne(seed)).sort_values(["other_seed", "seed"])
    for cell_id in floors["cell_id"]:
        if data.has_samples(cell_id):
            return data.samples(cell_id)
    if "reference" in target.provides:
        return target.sample(NUM_REFERENCE, make_generator(0)).cpu().numpy()
    return np.concatenate(fallback)  # no exact sampler: frame what the samplers produced


def figure1(data: PlotData, target_label: str) -> Figure:
    """Density and samples of one 2-D target in one row (see the module docstring).

    Args:
        data: the loaded store.
        target_label: target label as stored (e.g. ``"donut"``).

    Returns:
        A figure with ``1 + number of stored panels`` axes sharing x and y limits.

    Raises:
        MissingData: no rows for the target, not 2-D, or no stored samples to show.
    """
    rows = data.rows[data.rows["target"].eq(target_label)]
    if rows.empty:
        raise MissingData(f"no cells for target '{target_label}'")
    cells = rows.drop_duplicates("cell_id").copy()
    cells["budget"] = cells["budget"].astype(int)
    first = cells.iloc[0]
    target = build_stored_target(str(first["target_name"]), str(first["target_params"]))
    if target.dim != 2:
        raise MissingData(f"target '{target_label}' is {target.dim}-D, the grid needs 2-D")
    seed, panels = _panels(data, cells)
    samples = [data.samples(cell_id) for _, _, cell_id in panels]
    window = sample_window(_reference_samples(data, cells, target, seed, samples))
    xs, ys, density = density_grid(target, window)

    with figure_style():
        figure, axes = new_figure(1, 1 + len(panels), (2.6, 2.6))
        axes = axes[0]
        axes[0].pcolormesh(xs, ys, density, cmap="rocket", shading="auto", rasterized=True)
        axes[0].set_title(f"{target_label}: density")
        for ax, (title, label, _), x in zip(axes[1:], panels, samples, strict=True):
            # Faint density contours under the points show where the mass should be.
            ax.contour(xs, ys, density, levels=(0.01, 0.1, 0.5), colors="0.65", linewidths=0.6)
            inside = (np.isfinite(x).all(axis=1) & (x[:, 0] >= window[0, 0])
                      & (x[:, 0] <= window[0, 1]) & (x[:, 1] >= window[1, 0])
                      & (x[:, 1] <= window[1, 1]))
            ax.scatter(x[inside, 0], x[inside, 1], s=3, alpha=0.5, linewidths=0,
                       color=data.colors.get(label), rasterized=True)
            outside = len(x) - int(inside.sum())
            ax.set_title(title + (f" ({outside} outside)" if outside else ""))
        for ax in axes:
            ax.set_xlim(*window[0])
            ax.set_ylim(*window[1])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        figure.suptitle(f"{target_label}, seed {seed}, n = {len(samples[0])}")
    return figure
