"""Side-by-side timings of the same matrix run on two devices (e.g. CPU and CUDA).

    python -m benchmark.tools.device_report STORE_A STORE_B [--csv PATH]

For every (sampler, budget) it prints the median over cells of the sampling seconds (for n
samples) and, for neural samplers, the training seconds, on each device, with the ratio A/B.

It also checks that the two devices agree *statistically* (their random streams differ, so
bit equality is not expected): for every (target, sampler, budget, metric) with at least
``min_seeds`` finite values on both sides, a Welch t-test of the per-seed values. If the
devices sample the same distributions the p-values are uniform: about 5% fall below 0.05, and
a Kolmogorov-Smirnov test of the p-values against U(0, 1) does not reject. (``python -m
benchmark compare`` is a one-sided regression gate with a k-standard-error rule, which with 2-3
seeds flags far more than 5% of equal groups, so it is not used for this.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.store import ResultsStore


def timing_table(store_a: Path, store_b: Path) -> pd.DataFrame:
    """Median sampling/training seconds per (sampler, budget) of two stores, and their ratios.

    Each cell has one row per metric with the same timings, so rows are first reduced to one
    per cell (``cell_id``); only ``ok`` cells count.
    """
    columns = ["sampler", "budget", "sample_seconds", "train_seconds"]
    parts = []
    for label, root in (("a", store_a), ("b", store_b)):
        rows = ResultsStore(root).load()
        cells = rows[rows["status"] == "ok"].drop_duplicates("cell_id")
        device = ",".join(sorted(cells["device"].astype(str).unique())) or "?"
        summary = cells[columns].groupby(["sampler", "budget"]).median()
        summary.columns = [f"{name}_{label}" for name in summary.columns]
        summary[f"device_{label}"] = device
        parts.append(summary)
    table = parts[0].join(parts[1], how="outer")
    table["sample_ratio_a_over_b"] = table["sample_seconds_a"] / table["sample_seconds_b"]
    table["train_ratio_a_over_b"] = table["train_seconds_a"] / table["train_seconds_b"]
    return table.reset_index()


def agreement(store_a: Path, store_b: Path, min_seeds: int = 3) -> tuple[pd.DataFrame, dict]:
    """Per-group Welch p-values of the metric values of two stores, and their summary.

    Returns:
        ``(groups, summary)``: one row per compared (target, sampler, budget, metric) with
        ``n_a``, ``n_b``, ``mean_a``, ``mean_b``, ``p``; and ``{"groups", "frac_p_below_0.05",
        "frac_p_below_0.01", "ks_uniform_p"}``.
    """
    key = ["target", "sampler", "budget", "metric"]

    def values(root: Path) -> pd.Series:
        rows = ResultsStore(root).load()
        rows = rows[(rows["status"] == "ok") & np.isfinite(rows["value"].astype(float))]
        return rows.groupby(key)["value"].apply(lambda v: np.asarray(v, dtype=float))

    values_a, values_b = values(store_a), values(store_b)
    records = []
    for group in values_a.index.intersection(values_b.index):
        a, b = values_a[group], values_b[group]
        if min(len(a), len(b)) < min_seeds or (np.ptp(a) == 0 and np.ptp(b) == 0):
            continue  # too few seeds, or a deterministic value (e.g. a recall of 1.0 everywhere)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        records.append((*group, len(a), len(b), a.mean(), b.mean(), p))
    groups = pd.DataFrame(records, columns=[*key, "n_a", "n_b", "mean_a", "mean_b", "p"])
    p = groups["p"].dropna()
    summary = {"groups": len(groups),
               "frac_p_below_0.05": float((p < 0.05).mean()) if len(p) else float("nan"),
               "frac_p_below_0.01": float((p < 0.01).mean()) if len(p) else float("nan"),
               "ks_uniform_p": float(stats.kstest(p, "uniform").pvalue) if len(p) else float("nan")}
    return groups.sort_values("p"), summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.tools.device_report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("store_a", type=Path)
    parser.add_argument("store_b", type=Path)
    parser.add_argument("--csv", type=Path, help="also write the timing table as CSV")
    parser.add_argument("--min-seeds", type=int, default=3,
                        help="seeds needed on both sides for a group's agreement test (default 3)")
    args = parser.parse_args(argv)
    for root in (args.store_a, args.store_b):
        if not root.is_dir():
            print(f"error: results store '{root}' does not exist", file=sys.stderr)
            return 2
    table = timing_table(args.store_a, args.store_b)
    if args.csv:
        table.to_csv(args.csv, index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        groups, summary = agreement(args.store_a, args.store_b, args.min_seeds)
        print(f"\nagreement of metric values (Welch t-test per group, >= {args.min_seeds} seeds "
              f"on both sides): {summary['groups']} groups; p < 0.05 in "
              f"{summary['frac_p_below_0.05']:.1%} (5% expected), p < 0.01 in "
              f"{summary['frac_p_below_0.01']:.1%} (1% expected); KS test of the p-values "
              f"against uniform: p = {summary['ks_uniform_p']:.3g}")
        print(groups.head(10).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
