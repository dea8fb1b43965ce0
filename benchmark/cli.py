"""``python -m benchmark``: the command line.

Exit codes: 0 success; 1 some cell failed; 2 usage or input error (one line, no traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from benchmark.matrix import MATRIX_DIR, MatrixError, check_device, load_matrix

RESULTS_DIR = Path("results")


class UsageError(Exception):
    """A user error: printed as one line, exit code 2."""


def _command_list(args: argparse.Namespace) -> int:
    import tomllib

    from benchmark.metrics import METRICS
    from samplers import SAMPLERS
    from targets import TARGETS

    def show(title: str, entries: dict[str, str]) -> None:
        print(f"{title}:")
        width = max(map(len, entries), default=0)
        for name, description in entries.items():
            print(f"  {name:<{width}}  {description}")

    show("targets", {name: cls.description for name, cls in TARGETS.items()})
    show("samplers", {name: f"[{cls.kind}] {cls.description}" for name, cls in SAMPLERS.items()})
    show("metrics", {name: metric.description for name, metric in METRICS.items()})
    show("matrices", {path.stem: tomllib.loads(path.read_text()).get("description", "")
                      for path in sorted(MATRIX_DIR.glob("*.toml"))})
    return 0


def _print_tables(store_dir: Path, metrics: list[str] | None = None) -> None:
    """Write ``<store>/tables/<metric>.md|.tex`` and ``aggregate.csv``; print the Markdown."""
    from benchmark.store import ResultsStore
    from benchmark.tables import write_tables

    rows = ResultsStore(store_dir).load()
    if rows.empty:
        raise UsageError(f"no results in '{store_dir}' (expected {store_dir}/cells/*.csv)")
    stored = sorted(rows["metric"].unique())
    unknown = [metric for metric in metrics or [] if metric not in stored]
    if unknown:
        raise UsageError(f"no rows for metric(s) {', '.join(unknown)} in '{store_dir}'; "
                         f"stored metrics: {', '.join(stored)}")
    for text in write_tables(rows, store_dir / "tables", metrics).values():
        print(f"\n{text}")


def _command_run(args: argparse.Namespace) -> int:
    from benchmark.runner import in_shard, plan_cells, run_matrix
    from benchmark.store import ResultsStore

    if args.device is not None:
        check_device(args.device)
    matrix = load_matrix(args.matrix, device=args.device)
    if matrix.num_threads is not None:
        import torch

        torch.set_num_threads(matrix.num_threads)
    out = Path(args.out) if args.out else RESULTS_DIR / "runs" / matrix.name
    store = ResultsStore(out)
    shard = _parse_shard(args.shard)
    cells = [c for c in plan_cells(matrix) if in_shard(c, shard)]
    todo = [c for c in cells if args.force or not store.has_cell(c.cell_id)]
    print(f"matrix '{matrix.name}': {len(cells)} cells ({len(todo)} to run) on {matrix.device}; "
          f"results in {out}", flush=True)
    if args.dry_run:
        return 0
    start = time.perf_counter()
    failed = 0
    bar = tqdm(total=len(todo), desc=matrix.name, unit="cell", disable=None)
    for cell, rows in run_matrix(matrix, store, cache_dir=args.cache, force=args.force,
                                 progress=args.progress, shard=shard):
        bar.set_postfix_str(f"{cell.target.label} {cell.sampler_label}@{cell.budget}")
        bar.update()
        if rows and rows[0]["status"] == "failed":
            failed += 1
            tqdm.write(f"failed: {cell.target.label} {cell.sampler_label}@{cell.budget} "
                       f"seed {cell.seed}: {rows[0]['reason']}")
    bar.close()
    print(f"ran {len(todo)} cells in {time.perf_counter() - start:.1f} s; {failed} failed")
    _print_tables(out, [m for m in matrix.metrics])
    return 1 if failed else 0


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
        raise UsageError(f"--shard: expected INDEX/COUNT with 0 <= INDEX < COUNT, got '{text}'")
    return int(index), int(count)


def _command_table(args: argparse.Namespace) -> int:
    _print_tables(Path(args.store), args.metric)
    return 0


def _command_compare(args: argparse.Namespace) -> int:
    from benchmark.compare import compare_results, format_comparison, summary_line
    from benchmark.store import ResultsStore

    if not all(0 <= value < float("inf") for value in (args.abs_tol, args.k)):  # rejects nan
        raise UsageError(f"--abs-tol and --k must be finite and >= 0, got {args.abs_tol} "
                         f"and {args.k}")
    rows = {}
    for role in ("baseline", "current"):
        path = Path(getattr(args, role))
        if not path.is_dir():
            raise UsageError(f"{role} store '{path}' does not exist")
        rows[role] = ResultsStore(path).load()
        if rows[role].empty:
            raise UsageError(f"no results in {role} store '{path}' (expected {path}/cells/*.csv)")
    if args.metric:
        known = set(rows["baseline"]["metric"]) | set(rows["current"]["metric"])
        unknown = [m for m in args.metric if m not in known]
        if unknown:
            raise UsageError(f"--metric {', '.join(unknown)}: not in either store "
                             f"(stored: {', '.join(sorted(known))})")
    comparison = compare_results(rows["baseline"], rows["current"], abs_tol=args.abs_tol,
                                 k=args.k, metrics=args.metric)
    print(format_comparison(comparison))
    print(summary_line(comparison, abs_tol=args.abs_tol, k=args.k))
    return 1 if comparison["regression"].any() else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark",
                                     description="Benchmark samplers of un-normalised densities.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a matrix of cells into a results store")
    run.add_argument("matrix", nargs="?", default="default",
                     help="shipped matrix name or path to a TOML file (default: default)")
    run.add_argument("--out", help="results store directory (default: results/runs/<matrix>)")
    run.add_argument("--cache", default=str(RESULTS_DIR / "cache"),
                     help="trained-sampler cache directory (default: results/cache)")
    run.add_argument("--device", help="override the matrix's device (cpu, cuda, cuda:1)")
    run.add_argument("--force", action="store_true", help="rerun cells that already finished")
    run.add_argument("--dry-run", action="store_true", help="validate and count cells only")
    run.add_argument("--progress", action="store_true", help="progress bars inside training")
    run.add_argument("--shard", metavar="INDEX/COUNT",
                     help="run only shard INDEX of COUNT disjoint shards (parallel processes "
                          "on one store; tables are printed by each, complete after the last)")
    run.set_defaults(handler=_command_run)

    table = commands.add_parser(
        "table", help="print tables of a results store and write them (Markdown, LaTeX "
                      "booktabs, aggregate CSV) to STORE/tables/")
    table.add_argument("store", help="results store directory")
    table.add_argument("--metric", action="append", help="metric(s) to tabulate (default: all)")
    table.set_defaults(handler=_command_table)

    compare = commands.add_parser(
        "compare", help="compare two results stores; exit 1 on a quality regression")
    compare.add_argument("baseline", help="baseline results store directory")
    compare.add_argument("current", help="current results store directory")
    compare.add_argument("--abs-tol", type=float, default=0.0,
                         help="smallest worsening that can be a regression (default: 0)")
    compare.add_argument("--k", type=float, default=3.0,
                         help="a regression must exceed k combined standard errors (default: 3)")
    compare.add_argument("--metric", action="append",
                         help="metric(s) to compare (default: all)")
    compare.set_defaults(handler=_command_compare)

    listing = commands.add_parser("list", help="list targets, samplers, metrics and matrices")
    listing.set_defaults(handler=_command_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (MatrixError, UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
