"""``run --dry-run``: how long the cells still to run will take, from a store's own timings."""

from __future__ import annotations

from collections.abc import Sequence
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


def estimate_seconds(cells: Sequence[Cell], stored: pd.DataFrame) -> Estimate:
    """Time estimate for ``cells`` from the timings of stored cells.

    A stored cell took ``sample_seconds + train_seconds + sum of metric_seconds`` (training
    counts when the row has it, including when the weights came from the cache, so estimates
    err on the long side). Each planned cell is estimated by the median over stored cells with
    the same (target, sampler, budget) and a finite ``sample_seconds`` (failed cells have none);
    failing that, by the median over stored cells of its (sampler, budget) on other targets,
    which is all a resumed matrix with whole targets still to run can go by. Medians, because
    a cell that shared its core with other jobs can take ten times as long as its siblings.

    Args:
        cells: the cells to estimate.
        stored: rows of a results store (:meth:`benchmark.store.ResultsStore.load`).
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
        budget=per_cell["budget"].astype(int),
        seconds=per_cell["sample"] + per_cell["train"].fillna(0.0) + per_cell["metrics"])

    def medians(key: list[str]) -> dict[tuple, tuple[float, frozenset]]:
        """Group key -> (median seconds, ids of the stored cells behind it)."""
        return {name: (float(group["seconds"].median()), frozenset(group.index))
                for name, group in per_cell.groupby(key)}

    exact, by_sampler = medians(["target", "sampler", "budget"]), medians(["sampler", "budget"])
    total, used, borrowed, without = 0.0, set(), 0, 0
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
    return Estimate(total, len(used), borrowed, without)
