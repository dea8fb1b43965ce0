"""The statistics behind every table: per (target, sampler, budget, metric), the mean and
standard error over seeds, status counts, the reference floor and the marks.

Each group's mean ± standard error is over the seeds whose value is finite (s.e. = sample s.d.
/ √seeds, omitted for a single seed; docs/metrics.md#statistics); the floor is the same
statistic on exact reference samples at the same n (sampler ``reference``, budget 0, written by
the runner). The per-metric tables (:mod:`benchmark.report.tables`), the summary tables
(:mod:`benchmark.report.summary`), time-to-quality, the figures and ``compare`` all read
:func:`aggregate`, and order rows and columns with :func:`natural_key` and :func:`row_key`.

Marks (docs/metrics.md#statistics):

* below floor (†): for a discrepancy (a metric with ``flag_below_floor``), a sampler whose mean
  is below the floor mean of its target by more than two combined standard errors — usually
  missed tails or modes, not excellence.
* best (bold): within a target column, the sampler@budget with the best mean, marked only if it
  beats every other sampler@budget by more than two standard errors of the *paired* difference
  over common seeds, ``mean(d) > 2 sd(d) / √k`` with ``d_s = other_s − best_s`` (sign flipped
  for higher-is-better metrics) over the k seeds where both have a value. The runner uses
  common random numbers per (target, seed), so pairing removes the shared evaluation noise.
  Nothing is marked if some competitor pairs on fewer than two seeds, if the best entry
  diverged or failed on any seed, or if the column has a single entry. Entries with no value at
  all (diverged, failed) count as beaten.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from benchmark.metrics.info import METRIC_INFO, lower_is_better
from benchmark.schema import GROUP, REFERENCE_LABEL

#: Columns of ``aggregate.csv`` (and of :func:`aggregate`, which adds a few internal ones).
AGGREGATE_COLUMNS = [*GROUP, "mean", "se", "num_seeds", "num_ok", "num_diverged", "num_failed",
                     "n", "nfe", "floor_mean", "below_floor", "best"]
FLOOR_ROW = "reference (floor)"
_NOT_APPLICABLE = "not applicable"


def standard_error(std: pd.Series, count: pd.Series) -> pd.Series:
    """The s.e. of a mean over seeds: sample s.d. / √count; NaN below two values (a single
    seed has no spread to estimate). The one definition every table and figure uses."""
    return (std / np.sqrt(count)).where(count > 1)


def mean_se(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Per group of ``keys``: ``mean``, ``se`` (:func:`standard_error`) and ``count`` of the
    finite values of column ``value`` (non-finite values are left out, as everywhere)."""
    values = pd.to_numeric(frame[value], errors="coerce").astype(float)
    finite = frame.assign(_value=values.where(np.isfinite(values)))
    grouped = finite.groupby(keys, sort=True)["_value"].agg(["mean", "std", "count"])
    grouped["se"] = standard_error(grouped["std"], grouped["count"])
    return grouped.drop(columns="std")[["mean", "se", "count"]].reset_index()


def natural_key(label: str) -> tuple:
    """Sort key that orders digit runs numerically: ``d10 < d50 < d100``, ``mog2 < mog2w``.

    ``re.split`` with a capturing group alternates text and digits (text first), so positions
    of the same parity hold the same type and the tuples always compare. Labels equal as
    numbers (``s02`` and ``s2``) fall back to the label itself, so the order never depends on
    the order of the input.
    """
    return (tuple(int(part) if index % 2 else part
                  for index, part in enumerate(re.split(r"(\d+)", label))), label)


def row_key(sampler: str, budget: int) -> tuple:
    """Table row order: sampler label (natural), then budget; the floor row last."""
    return (sampler == REFERENCE_LABEL, natural_key(sampler), int(budget))


def row_label(sampler: str, budget: int) -> str:
    return FLOOR_ROW if sampler == REFERENCE_LABEL else f"{sampler}@{int(budget)}"


def _prepare(rows: pd.DataFrame) -> pd.DataFrame:
    frame = rows.copy()
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    frame["nfe"] = pd.to_numeric(frame["nfe"], errors="coerce").astype(float)
    frame["reason"] = frame["reason"].fillna("").astype(str)
    frame["budget"] = frame["budget"].astype(int)
    # A value counts only from a cell that sampled fine (status ok) and gave a finite number.
    usable = frame["status"].eq("ok") & np.isfinite(frame["value"])
    frame["usable_value"] = frame["value"].where(usable)
    for status in ("ok", "diverged", "failed"):
        frame[f"is_{status}"] = frame["status"].eq(status).astype(int)
    frame["is_not_applicable"] = frame["reason"].str.startswith(_NOT_APPLICABLE).astype(int)
    return frame


def best_entry(per_seed: pd.DataFrame, eligible: pd.Series, lower: bool) -> object | None:
    """The significantly best entry of one column by the paired rule, or ``None``.

    Args:
        per_seed: entries × seeds, the finite values (NaN where an entry has none at a seed).
        eligible: per entry, whether it may be marked (no diverged or failed seed, not below
            the reference floor).
        lower: whether lower values are better.

    Returns:
        The index label of the marked entry, or ``None`` when nothing is significant.
    """
    means = per_seed.mean(axis=1).dropna()
    if len(per_seed) < 2 or means.empty:
        return None
    sign = 1.0 if lower else -1.0
    # idxmin takes the first of tied means; a tie can never pass the test below (mean d = 0).
    candidate = (sign * means).idxmin()
    if not bool(eligible[candidate]):
        return None
    for other in per_seed.index:
        if other == candidate or per_seed.loc[other].isna().all():
            continue
        # "unpaired" (fewer than two common seeds) is not a win either.
        difference = paired_difference(per_seed.loc[candidate], per_seed.loc[other], lower)
        if verdict(*difference) != "beats":
            return None
    return candidate


def paired_difference(a: pd.Series, b: pd.Series, lower: bool) -> tuple[float, float, int]:
    """Mean and standard error of the per-seed difference in A's favour, and the seed count.

    Args:
        a, b: values indexed by seed (NaN where an entry has none at that seed).
        lower: whether lower values are better.

    Returns:
        ``(mean, se, k)`` of ``d_s = ±(b_s − a_s)`` (positive favours A) over the k seeds
        where both are finite; ``se`` is NaN below two seeds, ``mean`` too at none.
    """
    sign = 1.0 if lower else -1.0
    differences = (sign * (b - a)).dropna()
    count = len(differences)
    if count == 0:
        return math.nan, math.nan, 0
    se = differences.std(ddof=1) / math.sqrt(count) if count > 1 else math.nan
    return float(differences.mean()), float(se), count


def verdict(mean: float, se: float, count: int) -> str:
    """The paired rule for a difference in A's favour (:func:`paired_difference`):
    ``beats`` if ``mean > 2 se``, ``loses`` if ``mean < −2 se``, else ``on par``;
    ``unpaired`` below two common seeds (no paired standard error)."""
    if count < 2 or not math.isfinite(se):
        return "unpaired"
    if mean > 2.0 * se:
        return "beats"
    if mean < -2.0 * se:
        return "loses"
    return "on par"


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard error, status counts, floor and marks per (target, sampler, budget, metric).

    Args:
        rows: result rows with the columns of :data:`benchmark.schema.COLUMNS`.

    Returns:
        One row per group, sorted by metric, target (natural), then table row order, with the
        columns :data:`AGGREGATE_COLUMNS` — ``mean``/``se`` over the seeds with a finite value
        of an ok cell, ``n`` the largest n, ``nfe`` the mean NFE per particle, ``floor_mean``
        the floor row's mean for the same (target, metric), ``below_floor`` and ``best`` the
        marks described in the module docstring — plus ``num_values`` (seeds with a value) and
        ``not_applicable`` (some row says the metric does not apply to the target).
    """
    if rows.empty:
        return pd.DataFrame(columns=AGGREGATE_COLUMNS + ["num_values", "not_applicable"])
    frame = _prepare(rows)
    summary = frame.groupby(GROUP, sort=True).agg(
        mean=("usable_value", "mean"), std=("usable_value", "std"),
        num_values=("usable_value", "count"), num_seeds=("seed", "nunique"),
        num_ok=("is_ok", "sum"), num_diverged=("is_diverged", "sum"),
        num_failed=("is_failed", "sum"), n=("n", "max"), nfe=("nfe", "mean"),
        not_applicable=("is_not_applicable", "max"),
    ).reset_index()
    summary["se"] = standard_error(summary["std"], summary["num_values"])
    summary["not_applicable"] = summary["not_applicable"].astype(bool)
    is_floor = summary["sampler"].eq(REFERENCE_LABEL)
    floors = (summary[is_floor].groupby(["target", "metric"])[["mean", "se"]].mean()
              .rename(columns={"mean": "floor_mean", "se": "floor_se"}))
    summary = summary.join(floors, on=["target", "metric"])
    # Below the floor by more than two combined standard errors (a missing s.e., e.g. one
    # seed, counts as 0): near-equilibrium samplers sit at the floor and half of their means
    # fall below it by chance, which is no warning sign.
    margin = 2.0 * np.sqrt(summary["se"].fillna(0.0) ** 2 + summary["floor_se"].fillna(0.0) ** 2)
    flagged = summary["metric"].map(
        lambda metric: metric in METRIC_INFO and METRIC_INFO[metric].flag_below_floor
        and METRIC_INFO[metric].lower_is_better)
    summary["below_floor"] = (flagged & ~is_floor
                              & (summary["mean"] < summary["floor_mean"] - margin)).astype(bool)
    summary["best"] = False
    per_seed = frame.pivot_table(index=GROUP, columns="seed", values="usable_value",
                                 aggfunc="mean")
    for (_, metric), column in summary[~is_floor].groupby(["target", "metric"]):
        direction = lower_is_better(metric)
        if direction is None:
            continue
        keys = pd.MultiIndex.from_frame(column[GROUP])
        values = per_seed.reindex(keys)
        values.index = column.index
        # A value below the reference floor is a warning sign, not a win
        # (docs/metrics.md#below-floor-dagger): such an entry may still beat others, but it
        # is never marked best.
        eligible = (column["num_diverged"] + column["num_failed"]).eq(0) & ~column["below_floor"]
        winner = best_entry(values, eligible, direction)
        if winner is not None:
            summary.loc[winner, "best"] = True
    order = sorted(summary.index, key=lambda i: (
        summary.at[i, "metric"], natural_key(summary.at[i, "target"]),
        row_key(summary.at[i, "sampler"], summary.at[i, "budget"])))
    summary = summary.loc[order].reset_index(drop=True)
    return summary[AGGREGATE_COLUMNS + ["num_values", "not_applicable"]]


def applicable_targets(summary: pd.DataFrame) -> list[str]:
    """Targets of ``summary`` (one metric) in natural order, without those where the metric
    does not apply (a ``not applicable`` reason and no value anywhere in the column)."""
    by_target = summary.groupby("target").agg(values=("num_values", "sum"),
                                              not_applicable=("not_applicable", "any"))
    keep = by_target[(by_target["values"] > 0) | ~by_target["not_applicable"]].index
    return sorted(keep, key=natural_key)
