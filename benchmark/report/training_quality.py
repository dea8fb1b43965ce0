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

Beside them, the target-only view of the same training: ``monitor last / best`` is the held-out
monitor's (``monitor_ksd`` history rows) last value over its lowest, per seed, then averaged,
and ``monitor blow-ups`` counts the seeds where it ended more than :data:`BLOW_UP_FACTOR` times
its lowest value. Read together: ground truth worse at the end while the monitor is not (ratio
near 1) is what the stopping rule cannot see; both far above 1 is a training that blew up. The
factor 10 sits between what the stored trainings show: those that did not blow up end at most
3.4× (full gradient) or 8× (partial gradient) their best monitor value, those that did 41-172×
(docs/tuning.md). Trainings without a monitor leave both empty.

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
#: History metric of the held-out monitor the stopping rule reads (samplers/neural/monitor.py).
MONITOR_METRIC = "monitor_ksd"
#: A training whose monitor ends more than this many times its lowest value blew up.
BLOW_UP_FACTOR = 10.0


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """``value`` as float and ``iteration`` as int, non-finite values dropped, and the ``+dn``
    suffix removed from sampler labels."""
    frame = frame.assign(
        value=lambda f: pd.to_numeric(f["value"], errors="coerce").astype(float),
        iteration=lambda f: pd.to_numeric(f["iteration"]).astype(int))
    frame = frame[np.isfinite(frame["value"])]
    # An entry and its '+dn' twin share one training, stored under whichever label ran first:
    # report it under the label without the final denoising step (the curve is of raw draws).
    return frame.assign(sampler=frame["sampler"].str.removesuffix(DENOISE_SUFFIX))


def _monitor_ratios(history: pd.DataFrame) -> pd.Series:
    """Per (target, sampler, seed): the held-out monitor's last value over its lowest."""
    monitor = _numeric(history[history["metric"].eq(MONITOR_METRIC)])
    if monitor.empty:
        return pd.Series(dtype=float)
    ordered = monitor.sort_values("iteration", kind="mergesort")
    grouped = ordered.groupby(["target", "sampler", "seed"])["value"]
    lowest = grouped.min()
    return (grouped.last() / lowest).where(lowest > 0)


def training_curves_summary(rows: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Per (target, sampler, seed) training with a logged quality curve: its ``metric`` and
    ``first``, ``best``, ``best_at``, ``last``, ``last_at`` and ``last_over_best``.

    Args:
        rows: result rows (for the per-target quality metric).
        history: training-history rows (:data:`benchmark.schema.HISTORY_COLUMNS`).
    """
    columns = ["target", "sampler", "seed", "metric", "first", "best", "best_at", "last",
               "last_at", "last_over_best", "monitor_last_over_best"]
    metrics = quality_metrics(rows)
    if history.empty or not metrics:
        return pd.DataFrame(columns=columns)
    wanted = history["metric"].eq(history["target"].map(
        {target: metric + EVAL_SUFFIX for target, metric in metrics.items()}))
    curves = _numeric(history[wanted])
    monitor = _monitor_ratios(history)
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
                        else np.nan,
                        "monitor_last_over_best": monitor.get((target, sampler, seed), np.nan)})
    return pd.DataFrame(records, columns=columns)


def training_quality_table(rows: pd.DataFrame, history: pd.DataFrame) -> str | None:
    """The Markdown table described in the module docstring, or None without any logged
    ground-truth training curve."""
    per_seed = training_curves_summary(rows, history)
    if per_seed.empty:
        return None
    keys = ["target", "sampler", "metric"]
    stats = {column: mean_se(per_seed, keys, column).set_index(keys)
             for column in ("first", "best", "best_at", "last", "last_at", "last_over_best",
                            "monitor_last_over_best")}
    seeds = per_seed.groupby(keys)["seed"].nunique()
    monitored = per_seed["monitor_last_over_best"].notna()
    blow_ups = (per_seed["monitor_last_over_best"] > BLOW_UP_FACTOR).groupby(
        [per_seed[key] for key in keys]).sum()
    with_monitor = monitored.groupby([per_seed[key] for key in keys]).sum()

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
                        "monitor last / best": (text("monitor_last_over_best", key)
                                                if with_monitor[key] else ""),
                        "monitor blow-ups": (f"{int(blow_ups[key])} of {int(with_monitor[key])}"
                                             if with_monitor[key] else ""),
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
               f"within a few tenths of 1 show no trend). 'monitor last / best': the same "
               f"ratio for the held-out monitor the stopping rule reads (target-only); "
               f"'monitor blow-ups': seeds where it ended above {BLOW_UP_FACTOR:g}x its lowest "
               f"value (the training blew up). Lower is better; values are at the evaluation "
               f"batch size, so compare them along a row and between samplers of one target, "
               f"not with the floors of the other tables.")
    return f"{caption}\n\n{render_markdown(table)}\n"


__all__ = ["TABLE_NAME", "training_curves_summary", "training_quality_table"]
