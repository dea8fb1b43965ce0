"""Score a matrix's planned cells with metrics the matrix does not report, without retraining.

    python -m benchmark.tools.rescore paper-2d --sampler dft_ns --target u2 --target rosenbrock \\
        --metric knn_precision --metric knn_recall --metric energy_distance

Each selected cell is run again as the runner runs it: the same sampler, parameters, cell seed
and evaluation reference set, so it draws the stored cell's samples, and only the metrics
differ. Neural cells are drawn from the trained-sampler cache (``--cache``, default
``results/cache``) and skipped, with a line saying so, when their training is not there: this
tool never trains. Iterative cells are rerun (cheap). The floor rows (exact samples against the
cell's reference set) come with every selected target. Asking for a metric the store already
holds (e.g. ``energy_distance``) checks that the redrawn samples are the stored ones.

Prints one Markdown table per metric (rows: sampler@budget and the floor; columns: targets;
mean ± s.e. over seeds) and, with ``--out``, writes the per-seed values as a CSV. One core.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from benchmark.metrics.info import METRIC_INFO
from benchmark.plan.cells import Cell, plan_cells
from benchmark.plan.matrix import load_matrix
from benchmark.report.aggregate import natural_key
from benchmark.run.runner import run_cell
from benchmark.schema import MatrixError


def select_cells(matrix_name: str, samplers: Sequence[str], targets: Sequence[str],
                 metrics: Sequence[str]) -> list[Cell]:
    """The matrix's cells of the given sampler labels (all when empty) on the given target
    labels (all when empty), floors included, each asking for ``metrics``.

    Raises:
        LookupError: an unknown metric, sampler or target label (the message lists the choices).
    """
    unknown = [m for m in metrics if m not in METRIC_INFO]
    if unknown:
        raise LookupError(f"unknown metric {unknown[0]!r}; valid: {', '.join(METRIC_INFO)}")
    matrix = load_matrix(matrix_name)
    cells = plan_cells(matrix)
    for kind, asked, present in (
            ("sampler", samplers, {c.sampler_label for c in cells if c.sampler is not None}),
            ("target", targets, {c.target.label for c in cells})):
        missing = sorted(set(asked) - present)
        if missing:
            raise LookupError(f"{kind} {missing[0]!r} is not in matrix '{matrix.name}'; valid: "
                              f"{', '.join(sorted(present))}")
    return [dataclasses.replace(cell, metrics=tuple(metrics)) for cell in cells
            if (not targets or cell.target.label in targets)
            and (cell.sampler is None or not samplers or cell.sampler_label in samplers)]


def rescore(cells: Sequence[Cell], cache_dir: Path) -> pd.DataFrame:
    """One row per (cell, metric): target, sampler, budget, seed, metric, value, status."""
    rows = []
    for cell in cells:
        label = f"{cell.sampler_label}@{cell.budget}" if cell.sampler else cell.sampler_label
        if cell.is_neural and not (cache_dir / f"{cell.train_key}.pt").exists():
            print(f"skipped {cell.target.label} {label} seed {cell.seed}: training not in "
                  f"{cache_dir} (train key {cell.train_key})", file=sys.stderr, flush=True)
            continue
        for row in run_cell(cell, cache_dir).rows:
            rows.append({"target": cell.target.label, "sampler": label, "seed": cell.seed,
                         "metric": row["metric"], "value": row["value"],
                         "status": row["status"]})
    return pd.DataFrame(rows, columns=["target", "sampler", "seed", "metric", "value",
                                       "status"])


def summary_tables(values: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per metric: sampler rows × target columns of ``mean ± s.e.`` (s.e. over seeds)."""
    def cell_text(series: pd.Series) -> str:
        finite = [float(v) for v in series if pd.notna(v)]
        if not finite:
            return "n/a"
        mean = statistics.fmean(finite)
        if len(finite) < 2:
            return f"{mean:.3g}"
        return f"{mean:.3g} ± {statistics.stdev(finite) / len(finite) ** 0.5:.2g}"

    tables = {}
    for metric, group in values.groupby("metric", sort=False):
        table = group.pivot_table(index="sampler", columns="target", values="value",
                                  aggfunc=cell_text).fillna("")
        tables[metric] = table.loc[sorted(table.index, key=natural_key)]
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.tools.rescore",
        description="Score planned cells with other metrics, from the trained-sampler cache.")
    parser.add_argument("matrix", help="shipped matrix name or path to a TOML file")
    parser.add_argument("--metric", action="append", required=True, help="metric (repeatable)")
    parser.add_argument("--sampler", action="append", default=[],
                        help="sampler label (repeatable; default: every sampler)")
    parser.add_argument("--target", action="append", default=[],
                        help="target label (repeatable; default: every target)")
    parser.add_argument("--cache", type=Path, default=Path("results/cache"),
                        help="trained-sampler cache (default: results/cache)")
    parser.add_argument("--out", type=Path, help="CSV of the per-seed values")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        cells = select_cells(args.matrix, args.sampler, args.target, args.metric)
    except (LookupError, MatrixError) as error:
        parser.error(str(error))  # one line, exit status 2
    values = rescore(cells, args.cache)
    for metric, table in summary_tables(values).items():
        print(f"\n{metric} (mean ± s.e. over seeds)\n\n{table.to_markdown()}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        values.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
