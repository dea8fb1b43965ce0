"""Side-by-side timings of the same matrix run on two devices (e.g. CPU and CUDA).

    python -m benchmark.device_report STORE_A STORE_B [--csv PATH]

For every (sampler, budget) it prints the median over cells of the sampling seconds (for n
samples) and, for neural samplers, the training seconds, on each device, with the ratio A/B.
Metric agreement between the two stores is the job of ``python -m benchmark compare``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.device_report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("store_a", type=Path)
    parser.add_argument("store_b", type=Path)
    parser.add_argument("--csv", type=Path, help="also write the table as CSV")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
