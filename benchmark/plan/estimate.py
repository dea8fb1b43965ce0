"""``run --dry-run``: how long the cells still to run will take, from a store's own timings."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.plan.cells import Cell


@dataclass(frozen=True)
class Estimate:
    """A dry run's time estimate (:func:`estimate_seconds`).

    Attributes:
        seconds: estimated seconds for the planned cells that have a timing.
        sources: stored cells the estimate is based on.
        borrowed: planned cells timed from the same sampler@budget on *other* targets (none of
            their own target is stored yet: a rough guide, since targets differ in cost).
        without: planned cells with no stored timing of their sampler@budget at all.
    """

    seconds: float
    sources: int
    borrowed: int
    without: int


def estimate_seconds(cells: Sequence[Cell], stored: pd.DataFrame,
                     cached: Collection[str] = ()) -> Estimate:
    """Time estimate for ``cells`` from the timings of stored cells.

    A cell's own cost is ``sample_seconds + sum of metric_seconds``; a neural training is
    charged once per trained-sampler key (:attr:`Cell.train_key`), as the runner trains it:
    every budget of a PIS network, and a sampler and its ``+dn`` twin, share one training,
    and a training whose weights are already in the cache (``cached``) costs nothing.

    Each planned cell is estimated by the median over stored cells with the same (target,
    sampler, budget) and a finite ``sample_seconds`` (failed cells have none); failing that,
    by the median over stored cells of its (sampler, budget) on other targets, which is all a
    resumed matrix with whole targets still to run can go by. A training likewise by the median
    ``train_seconds`` of its (target, sampler), else of its sampler on other targets. Medians,
    because a cell that shared its core with other jobs can take ten times as long as its
    siblings.

    Args:
        cells: the cells to estimate.
        stored: rows of a results store (:meth:`benchmark.store.ResultsStore.load`).
        cached: train keys whose trained weights are in the cache directory.
    """
    if stored.empty:
        return Estimate(0.0, 0, 0, len(cells))
    per_cell = stored.groupby("cell_id").agg(
        target=("target", "first"), sampler=("sampler", "first"), budget=("budget", "first"),
        sample=("sample_seconds", "first"), train=("train_seconds", "first"),
        metrics=("metric_seconds", "sum"))
    per_cell = per_cell[np.isfinite(per_cell["sample"].astype(float))]
    per_cell = per_cell.assign(
        target=per_cell["target"].astype(str), sampler=per_cell["sampler"].astype(str),
        budget=per_cell["budget"].astype(int), seconds=per_cell["sample"] + per_cell["metrics"],
        train=per_cell["train"].astype(float))
    trained = per_cell[np.isfinite(per_cell["train"])]

    def medians(frame: pd.DataFrame, key: list[str], column: str
                ) -> dict[tuple, tuple[float, frozenset]]:
        """Group key -> (median of ``column``, ids of the stored cells behind it)."""
        return {(name if isinstance(name, tuple) else (name,)):
                (float(group[column].median()), frozenset(group.index))
                for name, group in frame.groupby(key)}

    exact = medians(per_cell, ["target", "sampler", "budget"], "seconds")
    by_sampler = medians(per_cell, ["sampler", "budget"], "seconds")
    train_exact = medians(trained, ["target", "sampler"], "train")
    train_by_sampler = medians(trained, ["sampler"], "train")
    total, used, borrowed, without = 0.0, set(), 0, 0
    charged = set(cached)
    for cell in cells:
        match = exact.get((cell.target.label, cell.sampler_label, cell.budget))
        if match is None:
            match = by_sampler.get((cell.sampler_label, cell.budget))
            if match is None:
                without += 1
                continue
            borrowed += 1
        total += match[0]
        used |= match[1]
        if cell.is_neural and cell.train_key not in charged:
            charged.add(cell.train_key)
            training = (train_exact.get((cell.target.label, cell.sampler_label))
                        or train_by_sampler.get((cell.sampler_label,)))
            if training is not None:
                total += training[0]
                used |= training[1]
    return Estimate(total, len(used), borrowed, without)
