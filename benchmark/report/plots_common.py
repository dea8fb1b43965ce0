"""What every figure shares: the store's data, stored samples, colours, style and saving.

Figures are pure functions of a results store (docs/harness.md#figures): a figure
function takes a :class:`PlotData` and returns a :class:`matplotlib.figure.Figure`, or raises
:class:`MissingData` with a one-line reason when the store lacks what it needs.

Stored samples (read by the Figure-1 grid) live next to the cells::

    <store>/samples/<cell_id>.pt    torch.save({"samples": Tensor (n, dim)}), float32, CPU

written by the runner only when asked. Figures use matplotlib's object-oriented API
(:class:`~matplotlib.figure.Figure`, no ``pyplot``), so no backend, window or global figure
registry is involved and nothing leaks between calls.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure

from benchmark.report.aggregate import natural_key
from benchmark.schema import REFERENCE_LABEL
from benchmark.store import ResultsStore, atomic_write, load_samples, samples_path

#: Formats written for every figure: PNG for the README and terminals, PDF for papers.
FORMATS: tuple[str, ...] = ("png", "pdf")
DPI = 150
REFERENCE_COLOR = (0.0, 0.0, 0.0)
#: Labels starting with this are DFT-NS entries (dft_ns, dft_ns_partial, dft_ns_minibatch,
#: ...), which figures highlight.
DFT_PREFIX = "dft_ns"
# Metadata that would otherwise embed the date and matplotlib version: without it, the same
# store gives byte-identical PDFs (and PNGs) on every run.
_METADATA = {"png": {"Software": None},
             "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}


class MissingData(Exception):
    """The store lacks what a figure needs; the message is the one-line reason."""


def sampler_colors(labels: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    """A fixed colour per sampler label: the labels in natural order take a palette in order.

    The same set of labels always gets the same colours, whatever the order rows were read in,
    so a sampler has one colour across every figure of a store. ``tab10`` is used up to ten
    labels (distinct, colour-blind-friendlier); up to twenty, its ten colours and then their
    light ``tab20`` partners (evenly spaced hues would put twelve labels 30° apart, too close
    to tell apart); beyond, evenly spaced ``husl`` hues handed out with a stride so that labels
    adjacent in natural order — variants of one sampler, such as ``dft_ns``, ``dft_ns_mlp``,
    ``dft_ns_partial`` — get hues far apart. The floor (``reference``) is always black.
    """
    names = sorted({label for label in labels if label != REFERENCE_LABEL}, key=natural_key)
    if len(names) <= 20:
        pairs = sns.color_palette("tab20", 20)  # (dark, light) pairs of the tab10 hues
        palette = (pairs[0::2] + pairs[1::2])[:len(names)]
    else:
        hues = sns.color_palette("husl", len(names))
        stride = _coprime_stride(len(names))
        palette = [hues[(index * stride) % len(names)] for index in range(len(names))]
    colors = {name: tuple(color) for name, color in zip(names, palette, strict=True)}
    colors[REFERENCE_LABEL] = REFERENCE_COLOR
    return colors


def _coprime_stride(count: int) -> int:
    """A step through ``count`` evenly spaced hues that visits each once (coprime to
    ``count``) and moves about 0.38 of the circle (1 − 1/φ, the golden-angle step) each time."""
    target = round(0.382 * count)
    for offset in range(count):
        for step in (target + offset, target - offset):
            if 1 <= step < count and math.gcd(step, count) == 1:
                return step
    return 1


@dataclass
class PlotData:
    """Everything a figure may read: one results store, loaded once.

    Attributes:
        root: the store's directory.
        rows: result rows (columns of :data:`benchmark.schema.COLUMNS`).
        history: training-history rows (columns of :data:`benchmark.schema.HISTORY_COLUMNS`).
        colors: sampler label → RGB, from :func:`sampler_colors` over rows and history.
    """

    root: Path
    rows: pd.DataFrame
    history: pd.DataFrame
    colors: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | os.PathLike) -> PlotData:
        store = ResultsStore(root)
        rows, history = store.load_current()
        labels = [*rows["sampler"].astype(str), *history["sampler"].astype(str)]
        return cls(Path(root), rows, history, sampler_colors(labels))

    def has_samples(self, cell_id: str) -> bool:
        return samples_path(ResultsStore(self.root), cell_id).exists()

    def samples(self, cell_id: str) -> np.ndarray:
        """The stored samples of one cell, ``(n, dim)`` float64 on the CPU.

        Raises:
            MissingData: the file is absent or not a ``{"samples": Tensor (n, dim)}`` dict.
        """
        # Figures need only the samples; a file without the tensor is MissingData below.
        payload = load_samples(ResultsStore(self.root), cell_id, required=())
        if payload is None:
            raise MissingData(f"no stored samples for cell {cell_id}")
        samples = payload.get("samples") if isinstance(payload, dict) else None
        if not isinstance(samples, torch.Tensor) or samples.dim() != 2:
            raise MissingData(f"cell {cell_id}: expected a dict {{'samples': Tensor (n, dim)}}")
        return samples.detach().to(torch.float64).numpy()


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Seaborn's paper theme for figures created inside; rcParams are restored on exit."""
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        yield


def new_figure(num_rows: int, num_columns: int, panel_size: tuple[float, float]
               ) -> tuple[Figure, np.ndarray]:
    """A figure with a ``(num_rows, num_columns)`` array of axes, constrained layout.

    Call inside :func:`figure_style`: axes read the style when created.
    """
    width, height = panel_size
    figure = Figure(figsize=(width * num_columns, height * num_rows), layout="constrained")
    axes = figure.subplots(num_rows, num_columns, squeeze=False)
    return figure, axes


def facet_grid(count: int, panel_size: tuple[float, float], max_columns: int = 4
               ) -> tuple[Figure, list]:
    """``count`` panels wrapped into rows of at most ``max_columns``; spare axes removed."""
    num_columns = min(count, max_columns)
    num_rows = -(-count // num_columns)  # ceiling division
    figure, axes = new_figure(num_rows, num_columns, panel_size)
    flat = list(axes.ravel())
    for spare in flat[count:]:
        spare.remove()
    return figure, flat[:count]


def save_figure(figure: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``<out_dir>/<name>.png`` and ``.pdf`` atomically (temporary file, then rename).

    Returns:
        The written paths, in :data:`FORMATS` order.
    """
    paths = []
    for extension in FORMATS:
        path = out_dir / f"{name}.{extension}"
        atomic_write(path, lambda stream, ext=extension: figure.savefig(
            stream, format=ext, dpi=DPI, metadata=_METADATA[ext]), mode="wb")
        paths.append(path)
    return paths


def shared_legend(figure: Figure, axes: Iterable) -> None:
    """One legend for the whole figure, outside on the right, each label once."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside right upper",
                      frameon=False)
