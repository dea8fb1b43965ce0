"""Running cells: (target, sampler with its resolved params, budget, seed) → tidy result rows.

HARNESS.md "Running a cell" is the contract. In short, for each cell the runner

* derives every random stream from a hash of the cell's identity (``cell_seed``); budgets are
  not part of it, so a sampler at budgets 100 and 200 shares its initial points and noise, and
  the evaluation reference set depends only on (matrix seed, target, seed), so samplers are
  compared on common random numbers (paired over seeds);
* trains a neural sampler once per (matrix seed, target, sampler, resolved params, seed, code
  version) — its training budget is a param — and caches the weights on disk;
* samples ``n`` points at the budget through :class:`targets.counting.CountingTarget`, timing
  with device synchronisation after a warm-up;
* evaluates each metric of the matrix on the unwrapped target, recording why a value is missing;
* returns one row per metric with the provenance columns of :data:`benchmark.store.COLUMNS`.

Each target also gets *floor* cells (sampler label ``reference``, budget 0): the same metrics on
exact reference samples, which is the noise floor every table shows.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import socket
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmark.matrix import DTYPES, Matrix, SamplerSpec, TargetSpec, resolve
from benchmark.store import ResultsStore
from samplers.base import IterativeSampler, NeuralSampler
from targets.base import Target, make_generator
from targets.counting import CountingTarget

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_LABEL = "reference"


def _jsonable(value: Any) -> Any:
    # Injected functions (e.g. SVGD's bandwidth rule) are named by import path: their repr
    # holds a memory address, which would make hashes differ between processes.
    if callable(value):
        return f"{value.__module__}:{value.__qualname__}"
    return str(value)


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for hashing and the params column."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable)


def resolved_params(spec: SamplerSpec, params: dict) -> dict:
    """Every hyper-parameter of the sampler, defaults included, as JSON-ready values.

    Cells are identified by these, so changing a sampler's default reruns its cells.
    """
    from samplers import SAMPLERS
    from samplers.base import build_params

    sampler_class = resolve("sampler", spec.name, SAMPLERS)
    full = dataclasses.asdict(build_params(sampler_class.Params, spec.name, params))
    return json.loads(canonical_json(full))


def stable_hash(*parts: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:length]


def seed_from(*parts: Any) -> int:
    """A 63-bit seed from a hash of ``parts`` (stable across processes and machines)."""
    return int(stable_hash(*parts), 16) % (2**63)


@cache
def code_version() -> str:
    """Hash of the source of ``targets`` and ``samplers``: a trained sampler depends on both."""
    digest = hashlib.sha256()
    for package in ("targets", "samplers"):
        for path in sorted((PACKAGE_ROOT / package).rglob("*.py")):
            digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@cache
def git_commit() -> str:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "--short=12", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@cache
def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sampler-bench")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Cell:
    """One unit of work; floor cells have ``sampler is None``."""

    matrix: str
    matrix_seed: int
    target: TargetSpec
    sampler: SamplerSpec | None
    params: dict
    budget: int
    seed: int
    n: int
    device: str
    dtype: str
    metrics: tuple[str, ...]

    @property
    def sampler_label(self) -> str:
        return self.sampler.label if self.sampler else REFERENCE_LABEL

    @property
    def identity(self) -> tuple:
        sampler = (self.sampler.label, self.sampler.name) if self.sampler else (REFERENCE_LABEL,)
        return (self.matrix_seed, self.target.label, self.target.name, dict(self.target.params),
                sampler, self.params, self.budget, self.seed, self.n, self.dtype)

    @property
    def cell_id(self) -> str:
        return stable_hash(*self.identity)

    @property
    def cell_seed(self) -> int:
        # No budget here: common random numbers across budgets (see the module docstring).
        return seed_from(self.matrix_seed, self.target.label, dict(self.target.params),
                         self.sampler_label, self.params, self.seed)

    @property
    def reference_seed(self) -> int:
        """Seed of the evaluation reference set: shared by every sampler of a (target, seed)."""
        return seed_from(self.matrix_seed, self.target.label, dict(self.target.params),
                         "evaluation-reference", self.seed, self.n)

    @property
    def train_key(self) -> str:
        return stable_hash(self.matrix_seed, self.target.label, dict(self.target.params),
                           self.sampler.name if self.sampler else None, self.params, self.seed,
                           self.dtype, code_version())


def plan_cells(matrix: Matrix) -> list[Cell]:
    """Every cell of the matrix: floors first, then target × sampler × budget × seed."""
    cells = []
    common = dict(matrix=matrix.name, matrix_seed=matrix.seed, n=matrix.n, device=matrix.device,
                  dtype=matrix.dtype, metrics=matrix.metrics)
    for target in matrix.targets:
        for seed in matrix.seeds:
            cells.append(Cell(target=target, sampler=None, params={}, budget=0, seed=seed,
                              **common))
        for sampler in matrix.samplers:
            params = resolved_params(sampler, matrix.sampler_params(sampler, target))
            for budget in sampler.budgets:
                for seed in matrix.seeds:
                    cells.append(Cell(target=target, sampler=sampler, params=params,
                                      budget=budget, seed=seed, **common))
    return cells


def build_target(spec: TargetSpec, device: str, dtype: str) -> Target:
    from targets import TARGETS

    target_class = resolve("target", spec.name, TARGETS)
    return target_class(device=device, dtype=DTYPES[dtype], **spec.params)


def build_sampler(spec: SamplerSpec, overrides: dict) -> IterativeSampler | NeuralSampler:
    """The sampler with the matrix's params; injected functions keep their defaults."""
    from samplers import SAMPLERS

    sampler_class = resolve("sampler", spec.name, SAMPLERS)
    defaults = json.loads(canonical_json(dataclasses.asdict(sampler_class.Params())))
    return sampler_class(**{k: v for k, v in overrides.items() if v != defaults.get(k)})


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``function()`` and its wall-clock seconds, synchronising the device before each read."""
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return result, time.perf_counter() - start


def _one_line(error: BaseException) -> str:
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}"[:500]


class Runner:
    """Runs cells of one matrix into a results store.

    Args:
        store: where finished cells are written (by the caller, see :func:`run_matrix`).
        cache_dir: trained neural samplers, keyed by :attr:`Cell.train_key`.
        progress: show tqdm progress bars for training.
    """

    def __init__(self, store: ResultsStore, cache_dir: str | os.PathLike,
                 progress: bool = False) -> None:
        self.store = store
        self.cache_dir = Path(cache_dir)
        self.progress = progress

    # -- sampling -----------------------------------------------------------------------
    def _sample_iterative(self, cell: Cell, sampler: IterativeSampler, target: Target,
                          generator: torch.Generator) -> tuple[Tensor, dict]:
        device = target.device
        # Warm-up on a few throwaway chains (uncounted): first-call allocations, kernels, caches.
        warm = make_generator(0, device)
        state = sampler.init(target, sampler.initial_positions(target, min(cell.n, 16), warm), 2)
        sampler.step(target, state, warm)

        counting = CountingTarget(target)

        def chain() -> Tensor:
            state = sampler.init(counting, sampler.initial_positions(counting, cell.n, generator),
                                 cell.budget)
            for _ in range(cell.budget):
                state, _ = sampler.step(counting, state, generator)
            return sampler.finalize(counting, state)

        samples, seconds = timed(chain, device)
        return samples, {"nfe": counting.nfe_per_particle(cell.n), "sample_seconds": seconds}

    def _trained(self, cell: Cell, sampler: NeuralSampler, target: Target) -> dict:
        """Train (or load from the cache) and return the training ledger."""
        path = self.cache_dir / f"{cell.train_key}.pt"
        if path.exists():
            payload = torch.load(path, map_location=target.device, weights_only=True)
            sampler.load_state_dict(payload["state"])
            return dict(payload["ledger"])
        counting = CountingTarget(target)
        generator = make_generator(cell.cell_seed, target.device)
        callback = self._training_callback(cell, target)
        history, seconds = timed(
            lambda: sampler.train(counting, sampler.params.num_iterations, generator,
                                  callback=callback, progress=self.progress), target.device)
        # The sampler's own ledger excludes the callback's evaluation time when it keeps one.
        own = getattr(sampler, "ledger", {})
        ledger = {"train_nfe": counting.num_evaluations, "train_hvp": counting.num_hvp,
                  "train_iterations": own.get("train_iterations", sampler.params.num_iterations),
                  "train_seconds": own.get("train_seconds", seconds)}
        self.store.write_history(cell.train_key, [
            {"train_key": cell.train_key, "target": cell.target.label,
             "sampler": cell.sampler_label, "params": canonical_json(cell.params),
             "seed": cell.seed, **row} for row in history])
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".pt.tmp")
        torch.save({"state": sampler.state_dict(), "ledger": ledger}, temporary)
        os.replace(temporary, path)
        return ledger

    def _training_callback(self, cell: Cell, target: Target):
        """Log KSD on a fixed evaluation batch during training, if the matrix reports KSD."""
        if "ksd" not in cell.metrics:
            return None
        from benchmark.metrics import METRICS, MetricContext

        batch = min(cell.n, 500)
        context = MetricContext(reference=None, generator=make_generator(0, target.device))

        def callback(iteration: int, sampler: NeuralSampler) -> dict[str, float]:
            # The same evaluation noise at every logged iteration, so the curve is smooth.
            with torch.no_grad():
                x = sampler.sample(batch, make_generator(cell.cell_seed + 1, target.device))
            if not torch.isfinite(x).all():
                return {"ksd_eval": math.nan}
            return {"ksd_eval": float(METRICS["ksd"].fn(x, target, context))}

        return callback

    def _sample_neural(self, cell: Cell, sampler: NeuralSampler, target: Target,
                       generator: torch.Generator) -> tuple[Tensor, dict]:
        ledger = self._trained(cell, sampler, target)
        sampler.sample(min(cell.n, 16), make_generator(0, target.device))  # warm-up
        # ``sample`` is given no target, so the sampling phase costs 0 target evaluations.
        samples, seconds = timed(lambda: sampler.sample(cell.n, generator), target.device)
        return samples, {**ledger, "nfe": 0.0, "sample_seconds": seconds}

    # -- one cell -----------------------------------------------------------------------
    def run_cell(self, cell: Cell) -> list[dict]:
        """All rows of one cell; never raises for a failing sampler or metric."""
        from benchmark.metrics import METRICS, MetricContext, supported_metrics

        base = self._provenance(cell)
        costs: dict[str, Any] = {}
        try:
            target = build_target(cell.target, cell.device, cell.dtype)
            generator = make_generator(cell.cell_seed, target.device)
            if cell.sampler is None:
                samples, seconds = timed(lambda: target.sample(cell.n, generator), target.device)
                costs = {"nfe": 0.0, "sample_seconds": seconds}
            else:
                sampler = build_sampler(cell.sampler, cell.params)
                sample = (self._sample_neural if sampler.kind == "neural"
                          else self._sample_iterative)
                samples, costs = sample(cell, sampler, target, generator)
        except Exception as error:  # a failing cell is a result, not a crash
            reason = _one_line(error)
            if os.environ.get("BENCHMARK_DEBUG"):
                traceback.print_exc()
            return [{**base, **costs, "status": "failed", "metric": metric, "value": math.nan,
                     "reason": reason, "metric_seconds": 0.0} for metric in cell.metrics]

        finite = torch.isfinite(samples).all(dim=1)
        status = "ok" if bool(finite.all()) else "diverged"
        supported = set(supported_metrics(target))
        reference = None
        if "reference" in target.provides:
            reference = target.sample(cell.n, make_generator(cell.reference_seed, target.device))
        context = MetricContext(reference=reference,
                                generator=make_generator(cell.reference_seed + 1, target.device))
        rows = []
        for metric in cell.metrics:
            value, reason, seconds = math.nan, "", 0.0
            if status == "diverged":
                bad = int((~finite).sum())
                reason = f"diverged: {bad} of {cell.n} samples non-finite"
            elif metric not in supported:
                missing = METRICS[metric].requires - target.provides
                reason = (f"not applicable: target '{cell.target.label}' does not provide "
                          f"{', '.join(sorted(missing))}")
            else:
                try:
                    value, seconds = timed(
                        lambda m=metric: METRICS[m].fn(samples.detach(), target, context),
                        target.device)
                    value = float(value)
                    if not math.isfinite(value):
                        reason = "metric is non-finite"
                except Exception as error:
                    value, reason = math.nan, f"metric failed: {_one_line(error)}"
            rows.append({**base, **costs, "status": status, "metric": metric, "value": value,
                         "reason": reason, "metric_seconds": seconds})
        return rows

    @staticmethod
    def _provenance(cell: Cell) -> dict[str, Any]:
        return {
            "matrix": cell.matrix, "cell_id": cell.cell_id, "target": cell.target.label,
            "target_name": cell.target.name,
            "target_params": canonical_json(dict(cell.target.params)),
            "sampler": cell.sampler_label,
            "sampler_name": cell.sampler.name if cell.sampler else REFERENCE_LABEL,
            "params": canonical_json(cell.params), "budget": cell.budget, "seed": cell.seed,
            "cell_seed": cell.cell_seed, "n": cell.n, "nfe": math.nan, "train_nfe": math.nan,
            "train_hvp": math.nan, "train_iterations": math.nan, "train_seconds": math.nan,
            "sample_seconds": math.nan, "device": cell.device,
            "num_threads": torch.get_num_threads(),
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "torch_version": torch.__version__, "package_version": package_version(),
            "git_commit": git_commit(),
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }


def in_shard(cell: Cell, shard: tuple[int, int] | None) -> bool:
    """Whether ``cell`` belongs to shard ``(index, count)``.

    Shards split by (target, sampler, params, seed), so every budget of one trained sampler
    lands in the same shard and no trained-sampler key is trained by two shards.
    """
    if shard is None:
        return True
    index, count = shard
    return seed_from(cell.target.label, cell.sampler_label, cell.params, cell.seed) % count == index


def run_matrix(matrix: Matrix, store: ResultsStore, cache_dir: str | os.PathLike,
               force: bool = False, progress: bool = False,
               shard: tuple[int, int] | None = None) -> Iterator[tuple[Cell, list[dict]]]:
    """Run every unfinished cell (of ``shard``, if given) in order, writing each when it ends.

    Shards are disjoint sets of cells, and each cell is its own file, so ``count`` processes
    with the same matrix and store but different shard indices never write the same file.
    Yields ``(cell, rows)`` after each write so callers can report progress.
    """
    runner = Runner(store, cache_dir, progress=progress)
    for cell in plan_cells(matrix):
        if not in_shard(cell, shard):
            continue
        if not force and store.has_cell(cell.cell_id):
            continue
        rows = runner.run_cell(cell)
        store.write_cell(cell.cell_id, rows)
        yield cell, rows
