"""``python -m benchmark``: the command line.

Exit codes: 0 success; 1 some cell failed; 2 usage or input error (one line, no traceback:
:class:`benchmark.schema.UsageError` and its subclasses).

Each handler imports the stage it drives when it runs, not at the top of this module: planning
and running import torch (seconds), so ``--help``, ``table`` and ``compare``, whose stages are
torch-free, start without it (``tests/fast/test_architecture.py`` checks that they do).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from benchmark.fid.cli import add_commands as add_fid_commands
from benchmark.schema import UsageError

RESULTS_DIR = Path("results")


class OneLineParser(argparse.ArgumentParser):
    """argparse with every usage error as one line on stderr (exit 2), like other errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _command_list(args: argparse.Namespace) -> int:
    # Imported here, like every stage below: the registries load torch (module docstring).
    import tomllib

    from benchmark.metrics.registry import METRICS
    from benchmark.plan.matrix import MATRIX_DIR
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
    # Torch-free, but pandas: imported here so that --help does not load it either.
    from benchmark.report.tables import write_tables
    from benchmark.store import ResultsStore

    store = ResultsStore(store_dir)
    rows, history = store.load_current()
    if rows.empty:
        raise UsageError(f"no results in '{store_dir}' (expected {store_dir}/cells/*.csv)")
    stored = sorted(rows["metric"].unique())
    unknown = [metric for metric in metrics or [] if metric not in stored]
    if unknown:
        raise UsageError(f"no rows for metric(s) {', '.join(unknown)} in '{store_dir}'; "
                         f"stored metrics: {', '.join(stored)}")
    for text in write_tables(rows, store_dir / "tables", metrics, store.load_plan(),
                             history).values():
        print(f"\n{text}")


def _command_run(args: argparse.Namespace) -> int:
    # Imported here: planning and running load torch (module docstring).
    from benchmark.plan.cells import plan_cells
    from benchmark.plan.matrix import check_device, load_matrix
    from benchmark.plan.plan import (
        check_targets,
        drop_unavailable_targets,
        make_plan,
        select_samplers,
        select_targets,
    )
    from benchmark.run.runner import run_matrix
    from benchmark.store import ResultsStore

    if args.device is not None:
        check_device(args.device)
    matrix = load_matrix(args.matrix, device=args.device)
    planned = plan_cells(matrix)  # the whole matrix, whatever --target and --shard pick
    if args.target:
        matrix = select_targets(matrix, args.target)
    if args.sampler:
        matrix = select_samplers(matrix, args.sampler)
    matrix, unavailable = drop_unavailable_targets(matrix)
    for label, reason in unavailable.items():
        print(f"skipped target '{label}': {reason}", flush=True)
    check_targets(matrix)  # bad target params or files stop here, before any cell
    if matrix.num_threads is not None:
        import torch

        torch.set_num_threads(matrix.num_threads)
    out = Path(args.out) if args.out else RESULTS_DIR / "runs" / matrix.name
    _check_writable(out, "--out")
    store = ResultsStore(out)
    shard = _parse_shard(args.shard)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers: expected an integer >= 1, got {args.workers}")
    # The one plan of this run: both runners below take it as it is.
    plan = make_plan(matrix, store, planned=planned, shard=shard, force=args.force)
    print(f"matrix '{matrix.name}': {len(plan.cells)} cells ({len(plan.todo)} to run) on "
          f"{matrix.device}; results in {out}", flush=True)
    for kind in ("failed", "unreadable"):
        count = sum(value == kind for value in plan.status.values())
        if count and not args.force:
            print(f"rerunning {count} {kind} cell(s) found in the store", flush=True)
    if args.dry_run:
        from benchmark.plan.estimate import estimate_seconds

        cache = Path(args.cache)
        cached = {path.stem for path in cache.glob("*.pt")} if cache.is_dir() else set()
        estimate = estimate_seconds(plan.todo, store.load(), cached)
        borrowed = (f" ({estimate.borrowed} cells timed from the same sampler@budget on other "
                    f"targets)" if estimate.borrowed else "")
        print(f"estimate: {estimate.seconds:.1f} s from {estimate.sources} stored cells"
              f"{borrowed}; {estimate.without} cells without timing")
        return 0
    for path in store.remove_stale_temporaries():
        print(f"removed a temporary file left by a killed write: {path}", flush=True)
    store.write_plan(matrix.name, plan.records())
    save_samples = True if args.save_samples else None  # None: the matrix's save_samples
    start = time.perf_counter()
    failed = diverged = 0
    bar = tqdm(total=len(plan.todo), desc=matrix.name, unit="cell", disable=None)
    with contextlib.ExitStack() as stack:
        if args.workers is None and args.scheduler is None:
            results = run_matrix(plan, store, cache_dir=args.cache, progress=args.progress,
                                 save_samples=save_samples)
        else:
            from benchmark.run.distributed import dask_client, run_matrix_distributed

            try:
                client = stack.enter_context(dask_client(args.workers, args.scheduler))
            except OSError as error:  # includes TimeoutError: nothing answered
                raise UsageError(f"--scheduler: cannot connect to '{args.scheduler}': "
                                 f"{error}") from None
            results = run_matrix_distributed(plan, store, args.cache, client,
                                             save_samples=save_samples)
        report = ProgressLines(len(plan.todo), enabled=bar.disable)
        for cell, rows in stack.enter_context(contextlib.closing(results)):
            bar.set_postfix_str(f"{cell.target.label} {cell.sampler_label}@{cell.budget}")
            bar.update()
            report.finished(failed + (bool(rows) and rows[0]["status"] == "failed"))
            diverged += bool(rows) and rows[0]["status"] == "diverged"
            if rows and rows[0]["status"] == "failed":
                failed += 1
                tqdm.write(f"failed: {cell.target.label} {cell.sampler_label}@{cell.budget} "
                           f"seed {cell.seed}: {rows[0]['reason']}")
    bar.close()
    print(f"ran {len(plan.todo)} cells in {time.perf_counter() - start:.1f} s; {failed} failed, "
          f"{diverged} diverged")
    _print_tables(out, [m for m in matrix.metrics])
    if not args.no_figures:
        _write_figures(out, out / "figures", None)
    return 1 if failed else 0


class ProgressLines:
    """Progress for logs (no terminal, so no tqdm bar): one line at most every ``every``
    seconds and one at the last cell, with done/total, failures, elapsed time and an ETA."""

    def __init__(self, total: int, enabled: bool, every: float = 30.0) -> None:
        self.total, self.enabled, self.every = total, enabled, every
        self.done = 0
        self.start = self.last = time.perf_counter()

    def finished(self, failed: int) -> None:
        self.done += 1
        now = time.perf_counter()
        if not self.enabled or (now - self.last < self.every and self.done < self.total):
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed / self.done * (self.total - self.done)
        print(f"progress: {self.done}/{self.total} cells, {failed} failed, elapsed "
              f"{_clock(elapsed)}, ETA {_clock(eta)}", flush=True)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _check_writable(path: Path, option: str) -> None:
    """Refuse a results directory that is a file or cannot be created or written."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option}: '{path}' is a file, not a results directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{option}: cannot create '{path}': {error.strerror or error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{option}: '{path}' is not writable")


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


def _command_evaluate(args: argparse.Namespace) -> int:
    # Imported here: evaluating loads torch (module docstring).
    import pandas as pd

    from benchmark.metrics.info import METRIC_INFO
    from benchmark.plan.matrix import check_device
    from benchmark.run.evaluate import evaluate_store
    from benchmark.run.results import write_samples
    from benchmark.store import ResultsStore

    store_dir = Path(args.store)
    if not (store_dir / "cells").is_dir():
        raise UsageError(f"no results in '{store_dir}' (expected {store_dir}/cells/*.csv)")
    unknown = [metric for metric in args.metric or [] if metric not in METRIC_INFO]
    if unknown:
        raise UsageError(f"--metric: unknown metric '{unknown[0]}'; valid choices: "
                         f"{', '.join(sorted(METRIC_INFO))}")
    if args.device is not None:
        check_device(args.device)
    out = ResultsStore(args.out) if args.out else None
    shown, without = [], 0
    for cell in tqdm(list(evaluate_store(ResultsStore(store_dir), args.metric, args.device)),
                     desc="evaluate", unit="cell", disable=None):
        if cell.rows is None:
            without += 1
        else:
            stored = dict(zip(cell.stored["metric"], cell.stored["value"], strict=True))
            shown += [{**row, "stored": stored.get(row["metric"], float("nan"))}
                      for row in cell.rows]
        if out is not None:
            if cell.payload is not None and out.root.resolve() != store_dir.resolve():
                write_samples(out, cell.cell_id, cell.payload.pop("samples"), **cell.payload)
            out.write_cell(cell.cell_id, cell.merged(args.metric))
    if not shown:
        raise UsageError(f"no samples in '{store_dir}/samples/' (run with --save-samples or "
                         f"save_samples = true)")
    columns = ["target", "sampler", "budget", "seed", "metric", "status", "value", "stored"]
    frame = pd.DataFrame(shown)[columns].sort_values(columns[:5], kind="mergesort")
    print(frame.to_string(index=False, float_format=lambda value: f"{value:.6g}"))
    print(f"recomputed {len(shown)} values of {frame['metric'].nunique()} "
          f"metric(s) from samples; {without} cell(s) without samples"
          + (f"; written to {out.root}" if out is not None else ""))
    return 0


def _command_compare(args: argparse.Namespace) -> int:
    # Torch-free, but pandas and scipy: imported here so that --help does not load them.
    from benchmark.report.compare import compare_results, format_comparison, summary_line
    from benchmark.store import ResultsStore

    if not all(0 <= value < float("inf") for value in (args.abs_tol, args.k)):  # rejects nan
        raise UsageError(f"--abs-tol and --k must be finite and >= 0, got {args.abs_tol} "
                         f"and {args.k}")
    rows = {}
    for role in ("baseline", "current"):
        path = Path(getattr(args, role))
        if not path.is_dir():
            raise UsageError(f"{role} store '{path}' does not exist")
        rows[role], _ = ResultsStore(path).load_current()
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


def _command_claim(args: argparse.Namespace) -> int:
    # Torch-free, like compare: imported here so that --help does not load pandas.
    from benchmark.report.claims import claim_table, parse_row, render_claims
    from benchmark.store import ResultsStore

    store_dir = Path(args.store)
    if not (store_dir / "cells").is_dir():
        raise UsageError(f"no results in '{store_dir}' (expected {store_dir}/cells/*.csv)")
    a, b = parse_row(args.a), parse_row(args.b)
    rows, _ = ResultsStore(store_dir).load_current()
    table = claim_table(rows, a, b, args.metric, args.target)
    if table.empty:
        raise UsageError(f"{args.a} and {args.b} share no target and metric in '{store_dir}'")
    print(render_claims(table, a, b))
    return 0


def _command_report(args: argparse.Namespace) -> int:
    from benchmark.report.html import write_report

    store_dir = Path(args.store)
    if not (store_dir / "cells").is_dir():
        raise UsageError(f"no results in '{store_dir}' (expected {store_dir}/cells/*.csv)")
    print(f"wrote {write_report(store_dir)}")
    return 0


def _command_plot(args: argparse.Namespace) -> int:
    # Imported here: the figures load matplotlib, and torch for stored samples.
    from benchmark.report.plots import FIGURES

    store_dir = Path(args.store)
    if not ((store_dir / "cells").is_dir() or (store_dir / "history").is_dir()):
        raise UsageError(f"no results in '{store_dir}' (expected {store_dir}/cells/*.csv)")
    unknown = [name for name in args.figure or [] if name not in FIGURES]
    if unknown:
        raise UsageError(f"unknown figure(s) {', '.join(unknown)}; valid figures: "
                         f"{', '.join(FIGURES)}")
    _write_figures(store_dir, Path(args.out) if args.out else store_dir / "figures", args.figure)
    return 0


def _write_figures(store_dir: Path, out: Path, names: list[str] | None) -> None:
    from benchmark.report.plots import write_figures  # matplotlib and torch: see above

    for result in write_figures(store_dir, out, names):
        if result.skipped:
            print(f"skipped {result.name}: {result.skipped}")
        else:
            print(f"wrote {result.name} ({result.seconds:.1f} s): "
                  f"{', '.join(str(path) for path in result.paths)}")


def _command_train_ebm(args: argparse.Namespace) -> int:
    import torch  # imported here, as for `run` (module docstring)

    from benchmark.plan.matrix import check_device
    from targets.datasets import DatasetUnavailable
    from targets.ebm.mdsm import TrainConfig, train_energy

    if args.device is not None:
        check_device(args.device)
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    config = TrainConfig(dataset=args.dataset, width=args.width, iterations=args.iterations,
                         batch_size=args.batch_size, seed=args.seed,
                         architecture=args.architecture, lr=args.lr,
                         checkpoint_every=args.checkpoint_every, log_every=args.log_every)
    # The canonical command (every option explicit), so the checkpoint says how to remake it.
    command = ("python -m benchmark train-ebm " + " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in vars(args).items()
        if key not in ("command", "handler", "resume", "stop_after") and value is not None))
    try:
        checkpoint = train_energy(config, args.out, command, device=args.device or "cpu",
                                  resume=args.resume, stop_after=args.stop_after)
    except (ValueError, DatasetUnavailable) as error:
        raise UsageError(str(error)) from None
    state = ("complete" if checkpoint["complete"] else
             f"stopped at {checkpoint['iterations_done']} of {config.iterations} steps; continue "
             "with the same command and --resume")
    print(f"trained {checkpoint['architecture']} width {config.width} on {config.dataset}: "
          f"final loss {checkpoint['final_loss']:.6g}, {checkpoint['wall_seconds']:.1f} s; "
          f"{state}; wrote {args.out}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sampler-bench")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m benchmark",
                                     description="Benchmark samplers of un-normalised densities.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a matrix of cells into a results store")
    run.add_argument("matrix", nargs="?", default="default",
                     help="shipped matrix name or path to a TOML file (default: default)")
    run.add_argument("--out", help="results store directory (default: results/runs/<matrix>)")
    run.add_argument("--cache", default=str(RESULTS_DIR / "cache"),
                     help="trained-sampler cache directory (default: results/cache)")
    run.add_argument("--device", help="override the matrix's device (cpu, cuda, cuda:1)")
    run.add_argument("--force", action="store_true", help="rerun cells that already finished")
    run.add_argument("--dry-run", action="store_true",
                     help="validate, count cells and estimate the time from stored timings")
    run.add_argument("--save-samples", action="store_true",
                     help="store each cell's samples in OUT/samples/ (for evaluate)")
    scale = run.add_mutually_exclusive_group()
    scale.add_argument("--workers", type=int, metavar="N",
                       help="run cells on a local Dask cluster of N worker processes")
    scale.add_argument("--scheduler", metavar="ADDRESS",
                       help="run cells on an existing Dask cluster (e.g. tcp://host:8786)")
    run.add_argument("--progress", action="store_true", help="progress bars inside training")
    run.add_argument("--no-figures", action="store_true",
                     help="print and write the tables only (figures: the plot command)")
    run.add_argument("--target", action="append", metavar="LABEL",
                     help="run only this target of the matrix (repeatable; same cell ids as "
                          "the full matrix, so it fills the same store)")
    run.add_argument("--sampler", action="append", metavar="LABEL",
                     help="run only this sampler entry (its label) of the matrix, and the floor "
                          "cells (repeatable; same cell ids as the full matrix)")
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

    evaluate = commands.add_parser(
        "evaluate", help="recompute metrics from the samples a run stored (--save-samples)")
    evaluate.add_argument("store", help="results store directory")
    evaluate.add_argument("--metric", nargs="+", action="extend",
                          help="metric(s) to compute (default: those stored for each cell)")
    evaluate.add_argument("--out", help="write the cells, with the recomputed metrics replaced "
                                        "or added, to this store (may be STORE itself)")
    evaluate.add_argument("--device", help="evaluate on this device instead of each cell's")
    evaluate.set_defaults(handler=_command_evaluate)

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

    claim = commands.add_parser(
        "claim", help="A against B (sampler@budget) per target and metric by the paired "
                      "two-standard-error rule: beats, on par or loses; with A's speed-up "
                      "and break-even n over B")
    claim.add_argument("store", help="results store directory")
    claim.add_argument("a", help="row A as sampler@budget, e.g. dft_ns@1")
    claim.add_argument("b", help="row B as sampler@budget, e.g. svgd@200")
    claim.add_argument("--metric", action="append", help="metric(s) (default: all)")
    claim.add_argument("--target", action="append", help="target(s) (default: all)")
    claim.set_defaults(handler=_command_claim)

    plot = commands.add_parser(
        "plot", help="draw the figures of a results store (PNG + PDF) into STORE/figures/; "
                     "figures whose data the store lacks are skipped with the reason")
    plot.add_argument("store", help="results store directory")
    plot.add_argument("--out", help="figure directory (default: STORE/figures)")
    plot.add_argument("--figure", nargs="+", action="extend", metavar="NAME",
                      help="figure(s) to draw (default: all; see "
                           "benchmark.report.plots.FIGURES)")
    plot.set_defaults(handler=_command_plot)

    train_ebm = commands.add_parser(
        "train-ebm", help="train an image energy with MDSM and write its checkpoint")
    train_ebm.add_argument("--dataset", required=True, help="image dataset (digits, mnist5k, ...)")
    train_ebm.add_argument("--width", type=int, required=True, help="base width C of the energy")
    train_ebm.add_argument("--iterations", type=int, required=True, help="optimiser steps")
    train_ebm.add_argument("--batch-size", type=int, default=128, help="default: 128")
    train_ebm.add_argument("--seed", type=int, default=0, help="default: 0")
    train_ebm.add_argument("--out", required=True, help="checkpoint path (.pt)")
    train_ebm.add_argument("--resume", action="store_true",
                           help="continue the partial checkpoint at --out (same settings); "
                                "bit for bit the uninterrupted run")
    train_ebm.add_argument("--stop-after", type=int, default=None, metavar="STEP",
                           help="stop after STEP steps in all and write a partial checkpoint "
                                "to --resume from (train in slices)")
    train_ebm.add_argument("--device", help="cpu (default), cuda, cuda:1")
    train_ebm.add_argument("--architecture",
                           help="energy network (default: the one for the image size)")
    train_ebm.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (1e-4)")
    train_ebm.add_argument("--checkpoint-every", type=int, default=1000,
                           help="steps between partial checkpoints (0: only at the end)")
    train_ebm.add_argument("--log-every", type=int, default=100, help="steps between log lines")
    train_ebm.add_argument("--num-threads", type=int, help="torch intra-op threads")
    train_ebm.set_defaults(handler=_command_train_ebm)

    add_fid_commands(commands)  # train-classifier, ebm-reference

    report = commands.add_parser(
        "report", help="write STORE/report.html: provenance, commands, every table and figure "
                       "of the store (run table and plot first)")
    report.add_argument("store", help="results store directory")
    report.set_defaults(handler=_command_report)

    listing = commands.add_parser("list", help="list targets, samplers, metrics and matrices")
    listing.set_defaults(handler=_command_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as error:  # MatrixError and StoreFileError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Finished cells are already in the store (each is written atomically when done).
        print("interrupted: finished cells are stored; rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
