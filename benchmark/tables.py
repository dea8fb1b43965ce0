"""Tables are pure functions of the results store: rows in, aggregate and formatted text out.

One table per metric: rows are sampler@budget (by sampler label, then budget; the floor row
``reference (floor)`` last), columns are target labels in natural order (``gaussian_d10`` <
``gaussian_d50`` < ``gaussian_d100``), so the same function gives Table 1 of a 2-D store and
the scaling table of a ``gaussian_d`` / ``funnel_d`` store. Each cell is mean ± standard error
over seeds (s.e. = sample s.d. / √seeds, omitted for a single seed) of the seeds whose value is
finite (docs/metrics.md#statistics); the floor row is the same statistic on exact reference
samples at the same n (sampler ``reference``, budget 0, written by the runner).

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
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.formatting import TableStyle, cell_text, latex_escape, render_latex, render_markdown
from benchmark.metrics import METRICS
from benchmark.runner import REFERENCE_LABEL

GROUP = ["target", "sampler", "budget", "metric"]
#: Columns of ``aggregate.csv`` (and of :func:`aggregate`, which adds a few internal ones).
AGGREGATE_COLUMNS = [*GROUP, "mean", "se", "num_seeds", "num_ok", "num_diverged", "num_failed",
                     "n", "nfe", "floor_mean", "below_floor", "best"]
FLOOR_ROW = "reference (floor)"
ROW_INDEX = "sampler@budget"
# Fixed float formatting of aggregate.csv: 12 significant digits hide last-bit differences of
# summation order while keeping every digit a table shows.
CSV_FLOAT_FORMAT = "%.12g"
_NOT_APPLICABLE = "not applicable"


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


def lower_is_better(metric: str) -> bool | None:
    """Direction from the metric registry; ``None`` for a metric it does not know (no marks)."""
    entry = METRICS.get(metric)
    return None if entry is None else entry.lower_is_better


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
        differences = (sign * (per_seed.loc[other] - per_seed.loc[candidate])).dropna()
        count = len(differences)
        if count < 2:
            return None  # seeds do not pair: no paired standard error
        standard_error = differences.std(ddof=1) / math.sqrt(count)
        if not differences.mean() > 2.0 * standard_error:
            return None
    return candidate


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard error, status counts, floor and marks per (target, sampler, budget, metric).

    Args:
        rows: result rows with the columns of :data:`benchmark.store.COLUMNS`.

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
    summary["se"] = (summary["std"] / np.sqrt(summary["num_values"])).where(
        summary["num_values"] > 1)
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
        lambda metric: metric in METRICS and METRICS[metric].flag_below_floor
        and METRICS[metric].lower_is_better)
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


def _metric_summary(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    return aggregate(rows[rows["metric"] == metric])


def metric_table(rows: pd.DataFrame, metric: str, style: TableStyle = "markdown") -> pd.DataFrame:
    """Samplers@budget × targets for one metric, as cell strings (see :func:`cell_text`).

    Args:
        rows: result rows (any metrics; only ``metric``'s are used).
        metric: metric name.
        style: ``markdown`` or ``latex`` cell text (index and column labels stay plain).

    Returns:
        Index ``sampler@budget`` (floor row last), one column per applicable target; empty
        when the metric has no rows or applies to no target.
    """
    summary = _metric_summary(rows, metric)
    targets = applicable_targets(summary) if not summary.empty else []
    if not targets:
        return pd.DataFrame()
    pairs = zip(summary["sampler"], summary["budget"], strict=True)
    keys = sorted({(sampler, int(budget)) for sampler, budget in pairs},
                  key=lambda key: row_key(*key))
    cells = {(row_label(r.sampler, r.budget), r.target): cell_text(pd.Series(r._asdict()), style)
             for r in summary.itertuples(index=False) if r.target in targets}
    labels = [row_label(*key) for key in keys]
    return pd.DataFrame([[cells.get((label, target), "") for target in targets]
                         for label in labels],
                        index=pd.Index(labels, name=ROW_INDEX), columns=targets)


def _span(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def caption(rows: pd.DataFrame, metric: str) -> str:
    """Plain-text caption: metric, direction, matrix, seeds, n, floor and the marks used."""
    subset = rows[rows["metric"] == metric]
    if subset.empty:
        return f"{metric}: no rows"
    summary = _metric_summary(rows, metric)
    entry = METRICS.get(metric)
    direction = {True: "lower is better", False: "higher is better", None: "direction unknown"}
    details = [metric, direction[lower_is_better(metric)]]
    matrices = sorted({str(m) for m in subset["matrix"].dropna()})
    if matrices:
        details.append(f"matrix {', '.join(matrices)}")
    title = f"{entry.pretty_name if entry else metric} [{'; '.join(details)}]"
    sizes = ", ".join(str(n) for n in sorted(subset["n"].astype(int).unique()))
    text = (f"{title}: mean ± s.e. over {_span(summary['num_seeds'].astype(int).tolist())} "
            f"seed(s), n = {sizes} samples per cell; '{FLOOR_ROW}' is the same statistic on "
            f"exact samples at the same n.")
    targets = set(applicable_targets(summary))
    shown = summary[summary["target"].isin(targets)]
    if lower_is_better(metric) is not None:
        text += (" Bold: best in its column, better than every other sampler@budget by more "
                 "than two standard errors of the paired per-seed difference (none is bold "
                 "where no entry is significantly best, or where the best is below the "
                 "floor).")
    if shown["below_floor"].any():
        text += (" †: mean below the floor by more than two combined standard errors (usually "
                 "missed tails or modes, not excellence).")
    partial = shown["num_ok"].gt(0) & (shown["num_diverged"] + shown["num_failed"]).gt(0)
    if partial.any():
        text += " 'x (k/m diverged)': mean over the seeds that did not diverge or fail."
    dropped = sorted(set(summary["target"]) - targets, key=natural_key)
    if dropped:
        text += f" Not applicable (omitted): {', '.join(dropped)}."
    return text


def to_markdown(table: pd.DataFrame) -> str:
    return render_markdown(table)


def render(rows: pd.DataFrame, metric: str, style: TableStyle = "markdown") -> str:
    """Caption and table of one metric as a complete Markdown or LaTeX text (ends in a newline).

    Args:
        rows: result rows.
        metric: metric name.
        style: ``markdown`` (caption paragraph, blank line, table) or ``latex`` (a booktabs
            ``table`` float with caption and label ``tab:<matrix>:<metric>``, see
            :func:`benchmark.formatting.render_latex`; one row "(no applicable target)" when
            the metric applies to no target).
    """
    table = metric_table(rows, metric, style)
    text = caption(rows, metric)
    if style == "markdown":
        return f"{text}\n\n{render_markdown(table)}\n"
    if table.empty:  # still one complete float, so an \input of it compiles
        table = pd.DataFrame(index=pd.Index([], name=ROW_INDEX))
    matrices = sorted({str(m) for m in rows.loc[rows["metric"] == metric, "matrix"].dropna()})
    label = f"tab:{'+'.join(matrices)}:{metric}" if matrices else f"tab:{metric}"
    return render_latex(table, latex_escape(text), label)


MISSING_FILE = "missing.md"


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once: into a new temporary file in the same directory,
    synced, then renamed over ``path`` (``os.replace``), so a run killed while writing leaves
    the old file or the new one, never half of one (at worst a stray hidden ``.*.tmp``)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as handle:  # created like any new file (umask applies)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def render_missing(rows: pd.DataFrame, plan: pd.DataFrame) -> str | None:
    """Markdown list of the planned cells (``ResultsStore.load_plan()``) with no stored row,
    one line per target and sampler@budget with its seeds; None when nothing is missing."""
    missing = plan[~plan["cell_id"].isin(set(rows["cell_id"]))]
    if missing.empty:
        return None
    groups = missing.groupby(["matrix", "target", "sampler", "budget"], sort=False)["seed"]
    table = pd.DataFrame(
        [{"matrix": matrix, "target": target, "sampler@budget": row_label(sampler, int(budget)),
          "seeds": ", ".join(str(seed) for seed in sorted(seeds)),
          "_key": (matrix, natural_key(str(target)), row_key(sampler, int(budget)))}
         for (matrix, target, sampler, budget), seeds in groups])
    table = table.sort_values("_key", kind="mergesort").drop(columns="_key").set_index("target")
    text = (f"Not run yet: {len(missing)} of {len(plan)} planned cells "
            f"({', '.join(sorted(plan['matrix'].unique()))}) have no rows in this store; the "
            f"tables leave them out. Rerunning the matrix's `run` command runs exactly these.")
    return f"{text}\n\n{render_markdown(table)}\n"


def write_tables(rows: pd.DataFrame, directory: str | Path,
                 metrics: Sequence[str] | None = None,
                 plan: pd.DataFrame | None = None) -> dict[str, str]:
    """Write ``<metric>.md`` and ``<metric>.tex`` per metric and ``aggregate.csv`` (all metrics),
    and, when ``plan`` lists cells with no rows, :data:`MISSING_FILE`.

    Byte-for-byte deterministic for the same rows: sorted groups, fixed float formatting,
    ``\\n`` line endings. Every file is written atomically (:func:`write_atomic`).

    Args:
        rows: result rows (e.g. ``ResultsStore(root).load()``).
        directory: output directory (created).
        metrics: metrics to tabulate (default: every metric in ``rows``, sorted).
        plan: planned cells (``ResultsStore(root).load_plan()``); None or empty: no check.

    Returns:
        ``{metric: Markdown text}`` in the order tabulated, then ``{layout: Markdown text}``
        of the multi-metric layouts that apply (:mod:`benchmark.tables_summary`), then
        ``{"missing": text}`` if planned cells are missing.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    texts = {}
    for metric in metrics or sorted(rows["metric"].unique()):
        texts[metric] = render(rows, metric, "markdown")
        write_atomic(directory / f"{metric}.md", texts[metric].encode())
        write_atomic(directory / f"{metric}.tex", render(rows, metric, "latex").encode())
    from benchmark.tables_summary import write_summaries  # imports this module

    texts.update(write_summaries(rows, directory))  # summary layouts (Tables 2 and 3)
    from benchmark.time_to_quality import TABLE_NAME, time_to_quality_table  # imports this

    quality = time_to_quality_table(rows)
    if quality is not None:
        texts[TABLE_NAME] = quality
        write_atomic(directory / f"{TABLE_NAME}.md", quality.encode())
    csv = aggregate(rows)[AGGREGATE_COLUMNS].to_csv(
        index=False, float_format=CSV_FLOAT_FORMAT, na_rep="nan", lineterminator="\n")
    write_atomic(directory / "aggregate.csv", csv.encode())
    missing = render_missing(rows, plan) if plan is not None and not plan.empty else None
    if missing is not None:
        texts["missing"] = missing
        write_atomic(directory / MISSING_FILE, missing.encode())
    else:  # a list from an earlier, less complete state of the store would mislead
        (directory / MISSING_FILE).unlink(missing_ok=True)
    return texts
