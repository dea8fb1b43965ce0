"""Claims: does sampler@budget A beat, match or lose to B, per target and metric?

The decision rule is the one behind the bold marks (docs/metrics.md#statistics), applied to
one named pair instead of a whole column. Over the k seeds where both rows have a finite value,
``d_s = B_s − A_s`` (sign flipped for a higher-is-better metric, so ``d > 0`` favours A); then

* **beats**: ``mean(d) > 2 se(d)``, with ``se(d) = sd(d) / √k``;
* **loses**: ``mean(d) < −2 se(d)``;
* **on par**: otherwise;
* **unpaired**: fewer than two common seeds, so the paired standard error does not exist.

Pairing matters: the runner draws common random numbers per (target, seed), so the evaluation
noise that both rows share cancels in ``d``. Beside the verdict the table carries each row's
mean ± s.e., the floor (a "win" below the floor is usually missed mass, not excellence), and
the costs (:func:`cost_comparison`): A's sampling speed-up over B and, when either was trained,
the break-even number of samples.

Command: ``python -m benchmark claim STORE A B [--metric M ...] [--target T ...]``, e.g.
``python -m benchmark claim results/paper-2d dft_ns@1 svgd@200 --target donut``.
"""

from __future__ import annotations

import math

import pandas as pd

from benchmark.metrics.info import lower_is_better
from benchmark.report.aggregate import aggregate, natural_key, paired_difference, verdict
from benchmark.report.formatting import format_count, format_ratio, render_markdown
from benchmark.report.summary import cell_costs, speedup_and_break_even
from benchmark.schema import UsageError

#: Columns of :func:`claim_table`.
CLAIM_COLUMNS = ["target", "metric", "a_mean", "a_se", "a_below_floor", "b_mean", "b_se",
                 "b_below_floor", "floor", "difference", "difference_se", "seeds", "verdict",
                 "speedup", "break_even"]


def parse_row(text: str) -> tuple[str, int]:
    """``'svgd@200'`` → ``('svgd', 200)``; a usage error for anything else."""
    label, _, budget = text.rpartition("@")
    if not label or not budget.isdigit():
        raise UsageError(f"'{text}' is not sampler@budget (for example dft_ns@1 or svgd@200)")
    return label, int(budget)


def cost_comparison(costs: pd.DataFrame, target: str, a: tuple[str, int],
                    b: tuple[str, int]) -> tuple[float, float]:
    """A's sampling speed-up over B and the break-even number of samples, counting both rows'
    training (:func:`benchmark.report.summary.speedup_and_break_even`); NaN for a missing row.

    Args:
        costs: :func:`benchmark.report.summary.cell_costs` of the two rows.
        target: the target label.
        a, b: ``(sampler label, budget)``.
    """
    keys = [(target, *row) for row in (a, b)]
    if not all(key in costs.index for key in keys):
        return math.nan, math.nan
    return speedup_and_break_even(costs.loc[keys[0]], costs.loc[keys[1]])


def claim_table(rows: pd.DataFrame, a: tuple[str, int], b: tuple[str, int],
                metrics: list[str] | None = None,
                targets: list[str] | None = None) -> pd.DataFrame:
    """One line per (target, metric) where both rows have values: A against B.

    Args:
        rows: result rows of a store (columns of :data:`benchmark.schema.COLUMNS`).
        a, b: ``(sampler label, budget)`` of the two rows.
        metrics: metrics to compare (default: every metric both rows have).
        targets: targets to compare (default: every target both rows have).

    Returns:
        Columns :data:`CLAIM_COLUMNS`; ``verdict`` is A's (``beats`` means A is better).

    Raises:
        UsageError: a row, metric or target that the store does not hold, naming the ones it
            does.
    """
    frame = rows.copy()
    frame["budget"] = frame["budget"].astype(int)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    keys = set(zip(frame["sampler"], frame["budget"], strict=True))
    for role, row in (("A", a), ("B", b)):
        if row not in keys:
            stored = ", ".join(sorted({f"{s}@{k}" for s, k in keys}, key=natural_key))
            raise UsageError(f"{role} = {row[0]}@{row[1]} is not in the store "
                             f"(stored rows: {stored})")
    for option, chosen, column in (("--metric", metrics, "metric"),
                                   ("--target", targets, "target")):
        unknown = sorted(set(chosen or []) - set(frame[column]))
        if unknown:
            raise UsageError(f"{option} {', '.join(unknown)}: not in the store (stored: "
                             f"{', '.join(sorted(set(frame[column]), key=natural_key))})")
    if metrics:
        frame = frame[frame["metric"].isin(metrics)]
    if targets:
        frame = frame[frame["target"].isin(targets)]
    summary = aggregate(frame).set_index(["target", "sampler", "budget", "metric"])
    costs = cell_costs(frame[frame["sampler"].isin([a[0], b[0]])])
    usable = frame[frame["status"].eq("ok")]
    lines = []
    for (target, metric), group in usable.groupby(["target", "metric"], sort=False):
        values = {row: group[(group["sampler"] == row[0]) & (group["budget"] == row[1])]
                  .groupby("seed")["value"].mean().dropna() for row in (a, b)}
        if values[a].empty or values[b].empty:
            continue
        mean, se, count = paired_difference(values[a], values[b], lower_is_better(metric))
        stats = {row: summary.loc[(target, *row, metric)] for row in (a, b)}
        speedup, break_even = cost_comparison(costs, target, a, b)
        lines.append({
            "target": target, "metric": metric,
            "a_mean": stats[a]["mean"], "a_se": stats[a]["se"],
            "a_below_floor": bool(stats[a]["below_floor"]),
            "b_mean": stats[b]["mean"], "b_se": stats[b]["se"],
            "b_below_floor": bool(stats[b]["below_floor"]),
            "floor": stats[a]["floor_mean"], "difference": mean, "difference_se": se,
            "seeds": count, "verdict": verdict(mean, se, count),
            "speedup": speedup, "break_even": break_even})
    table = pd.DataFrame(lines, columns=CLAIM_COLUMNS)
    order = table["target"].map(natural_key).tolist() if len(table) else []
    return (table.assign(_order=order).sort_values(["_order", "metric"], kind="mergesort")
            .drop(columns="_order").reset_index(drop=True))


def _mean_se(mean: float, se: float, below_floor: bool = False) -> str:
    if not math.isfinite(mean):
        return "–"
    return (f"{mean:.3g}" + (f" ± {se:.2g}" if math.isfinite(se) else "")
            + (" †" if below_floor else ""))


def render_claims(table: pd.DataFrame, a: tuple[str, int], b: tuple[str, int]) -> str:
    """The claim table as Markdown, with a caption that states the rule and the command."""
    name_a, name_b = f"{a[0]}@{a[1]}", f"{b[0]}@{b[1]}"
    body = pd.DataFrame({
        "target": table["target"], "metric": table["metric"],
        name_a: [_mean_se(*entry) for entry in
                 zip(table["a_mean"], table["a_se"], table["a_below_floor"], strict=True)],
        name_b: [_mean_se(*entry) for entry in
                 zip(table["b_mean"], table["b_se"], table["b_below_floor"], strict=True)],
        "floor": [_mean_se(m, math.nan) for m in table["floor"]],
        f"difference for {name_a}": [_mean_se(m, s) for m, s in
                                     zip(table["difference"], table["difference_se"],
                                         strict=True)],
        "seeds": table["seeds"].astype(int).astype(str),
        f"{name_a} vs {name_b}": table["verdict"],
        "speed-up": [format_ratio(value) for value in table["speedup"]],
        "break-even n": [format_count(value) for value in table["break_even"]]}
    ).set_index("target")
    caption = (f"{name_a} (A) against {name_b} (B), mean ± s.e. over seeds. Difference: the "
               f"paired per-seed B − A (sign flipped where higher is better), so positive "
               f"favours A; A beats B if it exceeds two standard errors, loses if below minus "
               f"two, else on par. †: below the floor by more than two standard errors "
               f"(usually missed mass, not excellence). Speed-up: B's sampling seconds per "
               f"sample over A's; break-even n: samples from which A's training + sampling "
               f"costs less than B's (never: A samples no faster).")
    return render_markdown(body) + "\n\n" + caption + "\n"
