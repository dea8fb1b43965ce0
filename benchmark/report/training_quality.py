"""Did training help, by ground truth? ``tables/training_quality.md`` from training histories.

A neural sampler stops on a target-only monitor (a held-out KSD, docs/methods.md): it cannot
see exact samples. The runner also logs the target's ground-truth quality metric on a fixed
evaluation batch during training (``<metric>_eval`` history rows, ``min(n, 500)`` draws against
as many exact samples, or FID against data for image EBMs), for reporting only. This table reads
those curves back, per (target, trained sampler label), mean ± s.e. over seeds:

Rows are per trained sampler label; an entry and its ``+dn`` twin share one training, shown
under the label without ``+dn`` (the curve is of the generator's raw draws).

* ``first``: the first logged value — the generator near its initial law (the residual generator
  starts at the iterative samplers' initial law);
* ``best`` and ``best at``: the lowest logged value and the iteration it was logged at;
* ``last`` and ``last at``: the last logged value, at the iteration training stopped;
* ``last / best``: per seed, then averaged — 1 when the objective's optimum is also the
  ground-truth optimum along the run, above 1 when training went on to make the samples worse
  by ground truth (the objective and the monitor improving meanwhile). ``best`` is a minimum
  over the logged values, so evaluation noise biases it low; every logged value uses the same
  evaluation draws (the curve is smooth), which keeps that bias small, but ratios within a
  few tenths of 1 show no trend.

Values are at the evaluation batch size, so they are comparable along a curve and between
samplers of one target, not with the tables' floors at n (a smaller batch has a larger floor).
The quality metric per target is that of the time-to-quality table
(:func:`benchmark.report.time_to_quality.quality_metrics`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.report.aggregate import mean_se, natural_key
from benchmark.report.formatting import format_count, format_value, render_markdown
from benchmark.report.time_to_quality import quality_metrics
from benchmark.schema import DENOISE_SUFFIX

TABLE_NAME = "training_quality"
EVAL_SUFFIX = "_eval"


def training_curves_summary(rows: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Per (target, sampler, seed) training with a logged quality curve: its ``metric`` and
    ``first``, ``best``, ``best_at``, ``last``, ``last_at`` and ``last_over_best``.

    Args:
        rows: result rows (for the per-target quality metric).
        history: training-history rows (:data:`benchmark.schema.HISTORY_COLUMNS`).
    """
    columns = ["target", "sampler", "seed", "metric", "first", "best", "best_at", "last",
               "last_at", "last_over_best"]
    metrics = quality_metrics(rows)
    if history.empty or not metrics:
        return pd.DataFrame(columns=columns)
    wanted = history["metric"].eq(history["target"].map(
        {target: metric + EVAL_SUFFIX for target, metric in metrics.items()}))
    curves = history[wanted].assign(
        value=lambda frame: pd.to_numeric(frame["value"], errors="coerce").astype(float),
        iteration=lambda frame: pd.to_numeric(frame["iteration"]).astype(int))
    curves = curves[np.isfinite(curves["value"])]
    # An entry and its '+dn' twin share one training, stored under whichever label ran first:
    # report it under the label without the final denoising step (the curve is of raw draws).
    curves["sampler"] = curves["sampler"].str.removesuffix(DENOISE_SUFFIX)
    records = []
    for (target, sampler, seed), curve in curves.groupby(["target", "sampler", "seed"]):
        curve = curve.sort_values("iteration", kind="mergesort")
        values, iterations = curve["value"].to_numpy(), curve["iteration"].to_numpy()
        best = int(np.argmin(values))  # the first iteration reaching the minimum
        records.append({"target": target, "sampler": sampler, "seed": seed,
                        "metric": metrics[target], "first": values[0], "best": values[best],
                        "best_at": iterations[best], "last": values[-1],
                        "last_at": iterations[-1],
                        "last_over_best": values[-1] / values[best] if values[best] > 0
                        else np.nan})
    return pd.DataFrame(records, columns=columns)


def training_quality_table(rows: pd.DataFrame, history: pd.DataFrame) -> str | None:
    """The Markdown table described in the module docstring, or None without any logged
    ground-truth training curve."""
    per_seed = training_curves_summary(rows, history)
    if per_seed.empty:
        return None
    keys = ["target", "sampler", "metric"]
    stats = {column: mean_se(per_seed, keys, column).set_index(keys)
             for column in ("first", "best", "best_at", "last", "last_at", "last_over_best")}
    seeds = per_seed.groupby(keys)["seed"].nunique()

    def text(column: str, key: tuple) -> str:
        return format_value(stats[column].loc[key, "mean"], stats[column].loc[key, "se"])

    records = []
    for key in seeds.index:
        target, sampler, metric = key
        records.append({"target": target, "sampler": sampler, "metric": metric,
                        "seeds": str(int(seeds[key])), "first": text("first", key),
                        "best": text("best", key),
                        "best at": format_count(stats["best_at"].loc[key, "mean"]),
                        "last": text("last", key),
                        "last at": format_count(stats["last_at"].loc[key, "mean"]),
                        "last / best": text("last_over_best", key),
                        "_key": (natural_key(str(target)), natural_key(str(sampler)))})
    table = (pd.DataFrame(records).sort_values("_key", kind="mergesort").drop(columns="_key")
             .set_index("target"))
    matrices = ", ".join(sorted(rows["matrix"].unique()))
    caption = (f"Training quality [matrix {matrices}]: the target's ground-truth quality metric "
               f"logged during neural training on a fixed evaluation batch (min(n, 500) draws; "
               f"for reporting only, training stops on a target-only monitor), mean ± s.e. over "
               f"seeds. 'first': the first logged value (the generator near its initial law); "
               f"'best': the lowest logged value, 'best at' the mean iteration it was logged "
               f"at; 'last': the value when training stopped, 'last at' its mean iteration; "
               f"'last / best' per seed, then averaged (above 1: training went on to make the "
               f"samples worse by ground truth; 'best' is a minimum over noisy values, so ratios "
               f"within a few tenths of 1 show no trend). Lower is better; values are at the "
               f"evaluation "
               f"batch size, so compare them along a row and between samplers of one target, "
               f"not with the floors of the other tables.")
    return f"{caption}\n\n{render_markdown(table)}\n"


__all__ = ["TABLE_NAME", "training_curves_summary", "training_quality_table"]
