"""Regression checking of quality: ``compare BASELINE CURRENT`` (docs/harness.md#regression-checks).

Both stores are reduced with :func:`benchmark.report.aggregate.aggregate` to mean ± s.e. over
seeds per group (target, sampler, budget, metric). A group present in both is a regression when

* its mean got worse by more than ``threshold = max(abs_tol, k · sqrt(se_b² + se_c²))``, with
  the direction taken from ``METRIC_INFO[metric].lower_is_better`` (unknown metrics: lower
  is better). The two means come from independent runs, so the s.e. of their difference is the
  root sum of squares of the two s.e.; with k = 3 and approximately normal means, an unchanged
  sampler crosses the threshold in the worse direction with probability ~0.13% per group (more
  with few seeds: the s.e. is itself estimated, so with 3 seeds per side the Welch t with ~4
  degrees of freedom gives ~2%; raise k or ``abs_tol`` for tiny replicate counts). A group
  with fewer than two finite values has no s.e.; its s.e. counts as 0, so only ``abs_tol``
  absorbs noise there. Seeded runs of unchanged code reproduce values exactly (delta 0);
* or its cells were all ``ok`` and some are now ``diverged`` / ``failed``;
* or it had a finite mean and has none now (every seed diverged/failed, or the metric became
  non-finite).

* or, seed by seed, one value of the current store lies beyond the baseline's prediction
  interval: ``worsening of x_c,s against mean_b > max(abs_tol, t_{S_b-1, 1-alpha} · s_b ·
  sqrt(1 + 1/S_b))`` with ``s_b`` the baseline's own spread over its ``S_b >= 2`` seeds and
  ``alpha = SEED_ALPHA = 1e-3``. A single bad seed inflates the current s.e. and can hide
  behind the mean rule (KSD 0.187 -> 5.0 on one of two seeds did); it cannot inflate the
  baseline's spread. If the change is neutral, each current value is a fresh draw from the
  baseline's law and crosses with probability ``alpha`` (Student t, exact for normal values),
  so a group with ``S_c`` seeds raises a false alarm with probability at most ``S_c · alpha``
  from this rule (0.3% at 3 seeds), on top of the mean rule's;
* or a cell with status ``ok`` now has a NaN/inf value for a metric that applies (the metric
  failed or overflowed) where the baseline had none.

Groups are keyed by (target, sampler, budget, metric) *and* the cell's ``n`` and resolved
sampler ``params``: stores run with a different ``n`` or different parameters are different
experiments, listed as ``removed`` + ``added`` (with ``n`` and a params hash in the label)
rather than compared as if equal.

Groups found in only one store are listed as ``added`` / ``removed``, never as regressions.
Groups without a value on either side (e.g. a metric that does not apply to the target) are
counted and left out of the table.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.metrics.info import lower_is_better as info_lower_is_better
from benchmark.report.aggregate import aggregate
from benchmark.schema import GROUP, REFERENCE_LABEL

#: Verdicts, in the order the summary line counts them.
REGRESSION = "REGRESSION"
IMPROVED = "improved"
WITHIN_NOISE = "within noise"
UNCHANGED = "unchanged"
FIXED = "fixed"
ADDED = "added"
REMOVED = "removed"
NOT_AVAILABLE = "n/a"

#: One-sided level of the per-seed prediction-interval rule (module docstring).
SEED_ALPHA = 1e-3
#: Columns that key a compared group: the table group plus the experiment's n and params.
KEY = [*GROUP, "n", "params_key"]


def lower_is_better(metric: str) -> bool:
    """Direction of a metric (:func:`benchmark.metrics.info.lower_is_better`); metrics outside
    the registry count as lower-is-better here, so a change in them is still judged."""
    return info_lower_is_better(metric) is not False


def params_key(params: str) -> str:
    """A short stable hash of a cell's resolved-params JSON (shown in labels when needed)."""
    return hashlib.sha256(str(params).encode()).hexdigest()[:8]


def _summaries(rows: pd.DataFrame, metrics: Sequence[str] | None) -> pd.DataFrame:
    """Per (group, n, params): the aggregate's mean/s.e./counts, plus what the seed rules need:
    ``values`` (seed -> finite value of an ok cell) and ``num_nonfinite`` (ok cells whose value
    of an applicable metric is NaN/inf)."""
    if metrics:
        rows = rows[rows["metric"].isin(list(metrics))]
    rows = rows.assign(params_key=rows["params"].astype(str).map(params_key),
                       n=rows["n"].astype("int64"))
    parts = []
    for (n, key), subset in rows.groupby(["n", "params_key"], sort=True):
        summary = aggregate(subset.drop(columns=["params_key"]))
        summary["n"], summary["params_key"] = int(n), key
        parts.append(summary)
    columns = [*KEY, "mean", "se", "num_ok", "num_diverged", "num_failed"]
    summary = (pd.concat(parts, ignore_index=True) if parts
               else pd.DataFrame(columns=columns))
    # Keys must have one dtype on both sides of the merge (an empty aggregate is all object).
    summary["budget"] = summary["budget"].astype("int64")
    summary["n"] = summary["n"].astype("int64")
    for column in ("target", "sampler", "metric", "params_key"):
        summary[column] = summary[column].astype(str)
    values = pd.to_numeric(rows["value"], errors="coerce").astype(float)
    ok = rows["status"].eq("ok")
    applicable = ~rows["reason"].fillna("").astype(str).str.startswith("not applicable")
    per_seed, nonfinite = {}, {}
    frame = rows.assign(value=values, finite=ok & np.isfinite(values),
                        nonfinite=ok & applicable & ~np.isfinite(values))
    for group, subset in frame.groupby(KEY, sort=False):
        key = tuple(str(v) if i not in (2, 4) else int(v) for i, v in enumerate(group))
        kept = subset[subset["finite"]]
        per_seed[key] = dict(zip(kept["seed"].astype(int), kept["value"], strict=True))
        nonfinite[key] = int(subset["nonfinite"].sum())
    keys = [tuple(str(v) if i not in (2, 4) else int(v) for i, v in enumerate(row))
            for row in summary[KEY].itertuples(index=False)]
    summary["values"] = [per_seed.get(key, {}) for key in keys]
    summary["num_nonfinite"] = [nonfinite.get(key, 0) for key in keys]
    return summary


def seed_threshold(baseline_values: Sequence[float], abs_tol: float) -> float:
    """How much worse than the baseline mean one current seed may be (module docstring):
    ``max(abs_tol, t_{S-1, 1-SEED_ALPHA} · s_b · sqrt(1 + 1/S))``; ``inf`` below 2 seeds."""
    count = len(baseline_values)
    if count < 2:
        return math.inf
    spread = float(np.std(np.asarray(baseline_values, dtype=float), ddof=1))
    quantile = float(stats.t.ppf(1.0 - SEED_ALPHA, df=count - 1))
    return max(abs_tol, quantile * spread * math.sqrt(1.0 + 1.0 / count))


def _mean_se(mean: float, se: float) -> str:
    """``mean ± se``: 4 significant digits on the mean (one more than the paper tables, so a
    small delta is visible on both sides), 2 on the s.e. (omitted when there is none)."""
    text = f"{mean:.4g}"
    return f"{text} ± {se:.2g}" if math.isfinite(se) else text


def _status(num_ok: float, num_diverged: float, num_failed: float) -> str:
    """``ok`` or e.g. ``1/3 diverged, 1/3 failed`` (counts of cells = seeds of the group)."""
    total = int(num_ok + num_diverged + num_failed)
    parts = [f"{int(count)}/{total} {label}"
             for count, label in ((num_diverged, "diverged"), (num_failed, "failed")) if count]
    return ", ".join(parts) if parts else "ok"


def _describe(mean: float, se: float, num_ok: float, num_diverged: float,
              num_failed: float) -> str:
    """Table text of one side: ``mean ± se`` plus any non-ok cells, like the paper tables."""
    if not math.isfinite(mean):
        if num_diverged and not num_ok and not num_failed:
            return "diverged"
        if num_failed and not num_ok and not num_diverged:
            return "failed"
        status = _status(num_ok, num_diverged, num_failed)
        return "n/a" if status == "ok" else status
    text = _mean_se(mean, float(se))
    status = _status(num_ok, num_diverged, num_failed)
    return text if status == "ok" else f"{text} ({status})"


def _judge(row: dict, abs_tol: float, k: float) -> dict:
    """Verdict of one merged group (suffix ``_b`` baseline, ``_c`` current)."""
    result = {"delta": math.nan, "threshold": math.nan, "regression": False}
    if row["_merge"] == "left_only":
        return {**result, "verdict": REMOVED}
    if row["_merge"] == "right_only":
        return {**result, "verdict": ADDED}
    mean_b, mean_c = float(row["mean_b"]), float(row["mean_c"])
    bad_b = row["num_diverged_b"] + row["num_failed_b"]
    bad_c = row["num_diverged_c"] + row["num_failed_c"]
    if bad_b == 0 and bad_c > 0:
        status = _status(row["num_ok_c"], row["num_diverged_c"], row["num_failed_c"])
        return {**result, "regression": True, "verdict": f"{REGRESSION} (ok → {status})"}
    finite_b, finite_c = math.isfinite(mean_b), math.isfinite(mean_c)
    if finite_b and not finite_c:
        return {**result, "regression": True, "verdict": f"{REGRESSION} (no finite values)"}
    if row["num_nonfinite_b"] == 0 and row["num_nonfinite_c"] > 0:
        return {**result, "regression": True,
                "verdict": f"{REGRESSION} (ok cell with a NaN/inf value)"}
    if not finite_b:
        return {**result, "verdict": FIXED if finite_c else NOT_AVAILABLE}
    sign = 1.0 if lower_is_better(str(row["metric"])) else -1.0
    limit = seed_threshold(list(row["values_b"].values()), abs_tol)
    bad_seeds = sorted(seed for seed, value in row["values_c"].items()
                       if sign * (value - mean_b) > limit)
    if bad_seeds:
        return {"delta": mean_c - mean_b, "threshold": limit, "regression": True,
                "verdict": f"{REGRESSION} (seed {', '.join(map(str, bad_seeds))} beyond the "
                           f"baseline's spread)"}

    def or_zero(se: float) -> float:
        return float(se) if math.isfinite(float(se)) else 0.0

    delta = mean_c - mean_b
    threshold = max(abs_tol, k * math.hypot(or_zero(row["se_b"]), or_zero(row["se_c"])))
    worsening = sign * delta
    if worsening > threshold:
        verdict = REGRESSION
    elif -worsening > threshold:
        verdict = IMPROVED
    else:
        verdict = UNCHANGED if delta == 0 else WITHIN_NOISE
    return {"delta": delta, "threshold": threshold, "regression": verdict == REGRESSION,
            "verdict": verdict}


def compare_results(baseline: pd.DataFrame, current: pd.DataFrame, *, abs_tol: float = 0.0,
                    k: float = 3.0, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Compare two sets of result rows group by group.

    Args:
        baseline: rows of the baseline store (``ResultsStore.load()`` schema).
        current: rows of the current store.
        abs_tol: smallest change (in the metric's units) that can count as a regression.
        k: multiple of the combined standard error a change must exceed.
        metrics: restrict to these metrics (default: all).

    Returns:
        One row per group in either store, sorted by group, with the group columns
        (``target, sampler, budget, metric``), ``baseline`` and ``current`` (display text),
        ``mean_b, se_b, mean_c, se_c``, ``delta`` (current − baseline mean), ``threshold``,
        ``verdict`` (see module docstring) and ``regression`` (bool).

    Raises:
        ValueError: if ``abs_tol`` or ``k`` is negative or not finite.
    """
    if not (math.isfinite(abs_tol) and abs_tol >= 0 and math.isfinite(k) and k >= 0):
        raise ValueError(f"abs_tol and k must be finite and >= 0, got {abs_tol} and {k}")
    merged = _summaries(baseline, metrics).merge(
        _summaries(current, metrics), on=KEY, how="outer", suffixes=("_b", "_c"),
        indicator=True, sort=True)
    # A group whose n or params differ between the stores shows them in its label.
    twins = merged.groupby(GROUP)["_merge"].transform("size") > 1
    records = []
    for row, twin in zip(merged.to_dict("records"), twins, strict=True):
        texts = {}
        for side in ("b", "c"):
            present = row["_merge"] in ("both", {"b": "left_only", "c": "right_only"}[side])
            texts[side] = _describe(row[f"mean_{side}"], row[f"se_{side}"], row[f"num_ok_{side}"],
                                    row[f"num_diverged_{side}"], row[f"num_failed_{side}"]
                                    ) if present else ""
        records.append({**{key: row[key] for key in KEY},
                        "setup": f"n={int(row['n'])}, params {row['params_key']}" if twin else "",
                        "baseline": texts["b"], "current": texts["c"],
                        "mean_b": row["mean_b"], "se_b": row["se_b"],
                        "mean_c": row["mean_c"], "se_c": row["se_c"],
                        **_judge(row, abs_tol, k)})
    columns = KEY + ["setup", "baseline", "current", "mean_b", "se_b", "mean_c", "se_c", "delta",
                     "threshold", "verdict", "regression"]
    return pd.DataFrame(records, columns=columns)


def group_label(target: str, sampler: str, budget: int, metric: str) -> str:
    """``target / sampler@budget / metric`` (the floor row reads ``reference (floor)``)."""
    row = "reference (floor)" if sampler == REFERENCE_LABEL else f"{sampler}@{int(budget)}"
    return f"{target} / {row} / {metric}"


def _number(value: float, signed: bool = False) -> str:
    if not math.isfinite(value):
        return ""
    if signed:
        return "0" if value == 0 else f"{value:+.3g}"
    return f"{value:.2g}"


def format_comparison(comparison: pd.DataFrame) -> str:
    """Markdown table: group, baseline, current, delta, threshold, verdict.

    Groups without a value on either side (verdict ``n/a``) are left out.
    """
    shown = comparison[comparison["verdict"] != NOT_AVAILABLE]
    if shown.empty:
        return "(no groups to compare)"
    table = pd.DataFrame({
        "group": [group_label(r.target, r.sampler, r.budget, r.metric)
                  + (f" [{r.setup}]" if r.setup else "") for r in shown.itertuples(index=False)],
        "baseline (mean ± s.e.)": shown["baseline"].to_numpy(),
        "current (mean ± s.e.)": shown["current"].to_numpy(),
        "delta": [_number(v, signed=True) for v in shown["delta"]],
        "threshold": [_number(v) for v in shown["threshold"]],
        "verdict": [f"**{v}**" if flag else v
                    for v, flag in zip(shown["verdict"], shown["regression"], strict=True)],
    })
    # disable_numparse: tabulate would otherwise reparse "+0.151" as a number and drop the sign.
    return table.to_markdown(index=False, disable_numparse=True)


def summary_line(comparison: pd.DataFrame, *, abs_tol: float, k: float) -> str:
    """One line: how many groups were compared and what became of them."""
    verdicts = comparison["verdict"]
    compared = int((~verdicts.isin([ADDED, REMOVED, NOT_AVAILABLE])).sum())
    regressions = int(comparison["regression"].sum())
    counts = [f"{regressions} regression{'s' if regressions != 1 else ''}"]
    for verdict in (IMPROVED, FIXED, ADDED, REMOVED):
        counts.append(f"{int(verdicts.eq(verdict).sum())} {verdict}")
    skipped = int(verdicts.eq(NOT_AVAILABLE).sum())
    return (f"compare: {compared} groups compared: {', '.join(counts)}; "
            f"{skipped} without values skipped (regression: worse by more than "
            f"max({abs_tol:g}, {k:g} × combined s.e.), a seed beyond the baseline's "
            f"{1 - SEED_ALPHA:.1%} prediction interval, ok → diverged/failed, or a NaN/inf "
            f"value)")
