"""Running cells: (target, sampler with its resolved params, budget, seed) → tidy result rows.

docs/harness.md#running-a-cell is the contract. For each cell (see :mod:`benchmark.plan.cells`
for identities and seeds), :func:`run_cell`

* trains a neural sampler once per :attr:`Cell.train_key` and caches the weights on disk (the
  callers make sure two workers never train the same key at once);
* samples ``n`` points at the budget through :class:`targets.counting.CountingTarget`, timing
  with device synchronisation after a warm-up;
* evaluates each metric of the matrix with :func:`evaluate_samples` — the one function that
  ``evaluate`` also uses to recompute metrics from stored samples; metrics of the chain itself
  (``ess``) also get the chain trace, recorded during sampling only when such a metric is asked
  for and only for Markov-chain samplers (:mod:`benchmark.metrics.ess`);
* returns a :class:`~benchmark.run.results.CellResult`: one row per metric with the
  provenance columns of :data:`benchmark.schema.COLUMNS`, the samples if asked for, and the
  training history.

:func:`run_cell` touches no results store, so it can run on a Dask worker; the client writes
(:func:`benchmark.run.results.write_result`). :func:`run_matrix` runs the cells of a
:class:`~benchmark.plan.plan.Plan` in order in this process, writing each as it finishes.

Cell time limit: with ``timeout`` seconds, a :class:`benchmark.run.deadline.Deadline` is checked
between sampler steps, between training iterations and before each metric; a
cell past it is stored ``failed`` with reason ``timeout: exceeded N s``. A single step is never
interrupted (see :mod:`benchmark.run.deadline`).
"""

from __future__ import annotations

import datetime
import math
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmark.metrics.base import MetricContext
from benchmark.metrics.ess import (
    NO_TRACE_STORED,
    ChainTrace,
    TraceRecorder,
    iid_trace,
)
from benchmark.metrics.info import needs_trace
from benchmark.metrics.registry import METRICS, supported_metrics
from benchmark.plan.cells import (
    Cell,
    build_sampler,
    build_target,
    canonical_json,
    git_commit,
    package_version,
    pin_provenance,
)
from benchmark.plan.plan import Plan
from benchmark.run.deadline import CellTimeout, Deadline
from benchmark.run.results import CellResult, write_result
from benchmark.schema import REFERENCE_LABEL
from benchmark.store import ResultsStore
from samplers.base import (
    IterativeSampler,
    NeuralSampler,
    TrainingCheckpoint,
    drive_chain,
    run_training,
)
from targets.base import Target, make_generator
from targets.counting import CountingTarget
from targets.precision import exact_float32


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


def one_line(error: BaseException) -> str:
    """``Type: first line of the message``, at most 500 characters (the ``reason`` column)."""
    if isinstance(error, CellTimeout):
        return f"timeout: {error}"
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}"[:500]


# -- evaluation (shared by the runner and `evaluate`) ------------------------------------------
#: Samples farther than this many times the reference's extent (its largest distance from its
#: own mean) from the reference mean mark a cell diverged.
ABSURD_FACTOR = 1e4


def absurd_samples(samples: Tensor, reference: Tensor) -> Tensor:
    """``(n,)`` bool: rows of ``samples`` ``(n, d)`` beyond :data:`ABSURD_FACTOR` times the
    extent of ``reference`` ``(m, d)`` from the reference mean."""
    center = reference.mean(dim=0)
    extent = (reference - center).norm(dim=1).max()
    # A degenerate reference (one point) still gets a unit extent, never zero.
    limit = ABSURD_FACTOR * torch.clamp(extent, min=1.0)
    return (samples - center).norm(dim=1) > limit


def evaluate_samples(samples: Tensor, target: Target, metrics: Sequence[str], *, n: int,
                     reference_seed: int, target_label: str,
                     deadline: Deadline | None = None, trace: ChainTrace | None = None,
                     no_trace: str = NO_TRACE_STORED) -> tuple[str, list[dict]]:
    """Status and metric rows of one cell's samples.

    Every metric gets the same fresh context: reference samples drawn with ``reference_seed``
    and a generator seeded ``reference_seed + 1``. So a metric's value does not depend on which
    other metrics are evaluated, and recomputing any subset from stored samples reproduces it.
    Metrics of the chain (``sampler_requires = {"trace"}``, e.g. ``ess``) also get the run's
    trace; without one they are NaN with the reason ``not applicable: <no_trace>``.

    Args:
        samples: ``(n, dim)``, moved to the target's device and dtype first.
        target: the unwrapped target (metric evaluations are not sampler cost).
        metrics: metric names (keys of :data:`benchmark.metrics.registry.METRICS`).
        n: the cell's sample size (the reference set has the same size).
        reference_seed: :attr:`Cell.reference_seed`.
        target_label: the target's label, for the reason of inapplicable metrics.
        deadline: checked before each metric.
        trace: the run's chain trace (:class:`benchmark.metrics.ess.ChainTrace`), if recorded.
        no_trace: why there is no trace (the default: samples read back from a store).

    Returns:
        ``("ok" | "diverged", rows)`` with rows ``{metric, value, reason, metric_seconds}``.
    """
    samples = samples.detach().to(device=target.device, dtype=target.dtype)
    finite = torch.isfinite(samples).all(dim=1)
    reason = ""
    if not bool(finite.all()):
        reason = f"diverged: {int((~finite).sum())} of {n} samples non-finite"
    supported = set(supported_metrics(target))
    reference = None
    if "reference" in target.provides:
        reference = target.sample(n, make_generator(reference_seed, target.device))
    if not reason:
        # Finite but absurd (e.g. a chain that blew up to 1e20 without overflowing): metrics
        # of such samples are meaningless numbers, so the cell is diverged, with the count.
        scale = (reference if reference is not None else
                 target.initial_positions(n, make_generator(reference_seed, target.device)))
        absurd = int(absurd_samples(samples, scale).sum())
        if absurd:
            reason = (f"diverged: {absurd} of {n} samples farther than {ABSURD_FACTOR:g} x the "
                      f"reference's extent from its mean")
    if reason:
        return "diverged", [{"metric": m, "value": math.nan, "reason": reason,
                             "metric_seconds": 0.0} for m in metrics]
    rows = []
    for metric in metrics:
        value, reason, seconds = math.nan, "", 0.0
        if metric not in supported:
            missing = METRICS[metric].requires - target.provides
            reason = (f"not applicable: target '{target_label}' does not provide "
                      f"{', '.join(sorted(missing))}")
        elif "trace" in METRICS[metric].sampler_requires and trace is None:
            reason = f"not applicable: {no_trace}"
        else:
            if deadline is not None:
                deadline.check()
            context = MetricContext(reference=reference,
                                    generator=make_generator(reference_seed + 1, target.device),
                                    trace=None if trace is None else trace.positions,
                                    trace_nfe=None if trace is None else trace.nfe)
            try:
                value, seconds = timed(
                    lambda m=metric, c=context: METRICS[m](samples, target, c), target.device)
                value = float(value)
                if not math.isfinite(value):
                    reason = "metric is non-finite"
            except Exception as error:
                value, reason = math.nan, f"metric failed: {one_line(error)}"
        rows.append({"metric": metric, "value": value, "reason": reason,
                     "metric_seconds": seconds})
    return "ok", rows


# -- sampling ----------------------------------------------------------------------------------
def _sample_iterative(cell: Cell, sampler: IterativeSampler, target: Target,
                      generator: torch.Generator, deadline: Deadline,
                      trace: TraceRecorder | None = None) -> tuple[Tensor, dict]:
    """Samples and costs of ``cell.budget`` transitions of ``cell.n`` chains; ``trace``, when
    given, records the chain trace of the run (only when a metric of the cell needs it)."""
    device = target.device
    # Warm-up on a few throwaway chains (uncounted): first-call allocations, kernels, caches.
    warm = make_generator(0, device)
    state = sampler.init(target, sampler.initial_positions(target, min(cell.n, 16), warm), 2)
    sampler.step(target, state, warm)

    counting = CountingTarget(target)

    def on_step(state, info) -> None:
        # The deadline is checked after every transition (~100 ns: invisible next to a step).
        deadline.check()
        if trace is not None:
            trace.record(state, counting)

    def chain() -> Tensor:
        state = drive_chain(sampler, counting,
                            sampler.initial_positions(counting, cell.n, generator), cell.budget,
                            generator, on_step=on_step)
        samples = sampler.finalize(counting, state)
        if not cell.denoise:
            return samples
        # The state caches the score at its positions (counted when it was evaluated): when
        # the samples *are* those positions, the final step needs no new evaluation, so
        # annealed Langevin at K costs K + 1 with its denoising step
        # (docs/methods.md#nfe-counting-rule).
        cached = state.score if samples is state.x else None
        return denoise(cell, counting, samples, cached)

    samples, seconds = timed(chain, device)
    return samples, {"nfe": counting.nfe_per_particle(cell.n), "sample_seconds": seconds}


def denoise(cell: Cell, target: Target | CountingTarget, samples: Tensor,
            score: Tensor | None = None) -> Tensor:
    """The optional final denoising step ``x + sigma_0^2 s(x)`` (= ``x - sigma_0^2 grad E``).

    Tweedie's formula for a model of data noised at ``sigma_0`` (MDSM's ``SS_denoise``),
    applied alike to every sampler of a matrix entry with ``denoise = true``.

    Args:
        cell: the cell (for the error message).
        target: the counting target, so a new score evaluation costs 1 NFE per sample.
        samples: ``(n, d)``.
        score: ``(n, d)`` score at ``samples`` already evaluated (and counted), or None.

    Raises:
        ValueError: the target has no ``denoise_sigma``.
    """
    sigma = target.denoise_sigma
    if sigma is None:
        raise ValueError(f"sampler '{cell.sampler_label}' asks for denoise = true but target "
                         f"'{cell.target.label}' has no denoise_sigma (the sigma_0 of a "
                         f"noise-trained energy, which the step needs)")
    if score is None:
        score = target.score(samples.detach())
    return samples + float(sigma) ** 2 * score


#: Metrics logged during neural training (as ``<metric>_eval`` history rows) when the matrix
#: reports them and the target supports them: training-curve figures read them from the store.
TRAINING_METRICS = ("ksd", "energy_distance", "accuracy", "mean_error", "std_error", "fid_data",
                    "fid_ref")


def _training_callback(cell: Cell, target: Target) -> Callable | None:
    """Log KSD and energy distance (BLR accuracy / moment errors, image-EBM FIDs) on a fixed
    evaluation batch during training, for those of :data:`TRAINING_METRICS` that the matrix
    reports and the target supports. Energy distance is taken against a fixed set of exact
    samples of the same size (drawn once, from the cell's reference seed), so the training
    curves of the time-to-quality figure are in the tables' ground-truth metric."""
    supported = set(supported_metrics(target))
    names = [m for m in TRAINING_METRICS if m in cell.metrics and m in supported]
    if not names:
        return None
    batch = min(cell.n, 500)
    reference = (target.sample(batch, make_generator(cell.reference_seed, target.device))
                 if "energy_distance" in names else None)
    context = MetricContext(reference=reference, generator=make_generator(0, target.device))

    def callback(iteration: int, sampler: NeuralSampler) -> dict[str, float]:
        # The same evaluation noise at every logged iteration, so the curve is smooth.
        with torch.no_grad():
            x = sampler.draw(batch, make_generator(cell.cell_seed + 1, target.device), target)
        if not torch.isfinite(x).all():
            return {f"{name}_eval": math.nan for name in names}
        return {f"{name}_eval": _logged_value(name, x) for name in names}

    def _logged_value(name: str, x: Tensor) -> float:
        # A metric that cannot be computed (e.g. fid_ref before its reference samples are
        # stored) leaves a NaN in the history; the final evaluation records the reason.
        try:
            return float(METRICS[name](x, target, context))
        except Exception:
            return math.nan

    return callback


def _trained(cell: Cell, sampler: NeuralSampler, target: Target, cache_dir: Path,
             deadline: Deadline, progress: bool) -> tuple[dict, list[dict] | None]:
    """Train (or load from the cache); the training ledger and history rows."""
    path = cache_dir / f"{cell.train_key}.pt"
    if path.exists():
        payload = torch.load(path, map_location=target.device, weights_only=True)
        sampler.load_state_dict(payload["state"])
        return dict(payload["ledger"]), payload.get("history")
    counting = CountingTarget(target)
    generator = make_generator(cell.cell_seed, target.device)
    # The driver checks the deadline before every iteration, so a cell overruns its limit by
    # at most one training iteration.
    history = run_training(sampler, counting, generator, sampler.params.num_iterations,
                           callback=_training_callback(cell, target), progress=progress,
                           before_step=deadline.check if deadline.seconds is not None else None,
                           checkpoint=_training_checkpoint(path, counting))
    ledger = {"train_nfe": counting.num_evaluations, "train_hvp": counting.num_hvp,
              "train_iterations": sampler.ledger["train_iterations"],
              "train_seconds": sampler.ledger["train_seconds"]}
    rows = [{"train_key": cell.train_key, "target": cell.target.label,
             "sampler": cell.sampler_label, "params": canonical_json(cell.params),
             "seed": cell.seed, **row} for row in history]
    # The history travels with the weights, so a store that missed it (killed between the two
    # writes) gets it from the cache on the rerun.
    save_atomically({"state": sampler.state_dict(), "ledger": ledger, "history": rows}, path)
    partial_path(path).unlink(missing_ok=True)
    return ledger, rows


#: Training seconds between snapshots of a training in progress: a run stopped (killed, cell
#: timeout, end of a session) loses at most this much of it.
CHECKPOINT_SECONDS = 300.0


def save_atomically(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it: a run killed while
    writing leaves the previous file (or none), never a truncated one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def partial_path(path: Path) -> Path:
    """The snapshot of an unfinished training beside its cache entry ``path``."""
    return path.with_suffix(".partial.pt")


def _training_checkpoint(path: Path, counting: CountingTarget) -> TrainingCheckpoint:
    """Snapshots of the training cached at ``path``, with the evaluation counts so far; the
    snapshot to resume from if a stopped run left one (same train key: same sampler,
    parameters, target, seed, device and code)."""
    partial = partial_path(path)
    resume = None
    if partial.exists():
        resume = torch.load(partial, map_location=counting.device, weights_only=True)
        # Generator states are CPU byte tensors whatever the device (set_state needs that).
        resume["initial_rng"], resume["rng"] = resume["initial_rng"].cpu(), resume["rng"].cpu()
        counting.num_evaluations, counting.num_hvp, counting.num_calls = resume["counts"]

    def save(snapshot: dict[str, Any]) -> None:
        counts = [counting.num_evaluations, counting.num_hvp, counting.num_calls]
        save_atomically({**snapshot, "counts": counts}, partial)

    return TrainingCheckpoint(save=save, resume_from=resume, every_seconds=CHECKPOINT_SECONDS)


def _sample_neural(cell: Cell, sampler: NeuralSampler, target: Target,
                   generator: torch.Generator, cache_dir: Path, deadline: Deadline,
                   progress: bool) -> tuple[Tensor, dict, list[dict] | None]:
    ledger, history = _trained(cell, sampler, target, cache_dir, deadline, progress)
    if sampler.step_axis:
        # Trained once (cached per train key, shared by every budget); sampled as a chain of
        # ``budget`` steps by the same loop, counting and denoising as iterative samplers.
        samples, costs = _sample_iterative(cell, sampler, target, generator, deadline)
        return samples, {**ledger, **costs}, history
    sampler.sample(min(cell.n, 16), make_generator(0, target.device))  # warm-up
    # ``sample`` is given no target, so the sampling phase costs 0 target evaluations (plus
    # the final denoising step's one, through the counting wrapper, when the cell asks).
    counting = CountingTarget(target)

    def draw() -> Tensor:
        samples = sampler.sample(cell.n, generator)
        return denoise(cell, counting, samples) if cell.denoise else samples

    samples, seconds = timed(draw, target.device)
    return samples, {**ledger, "nfe": counting.nfe_per_particle(cell.n),
                     "sample_seconds": seconds}, history


# -- one cell ----------------------------------------------------------------------------------
def provenance(cell: Cell) -> dict[str, Any]:
    """The identity, cost placeholders and provenance columns of every row of ``cell``."""
    return {
        "matrix": cell.matrix, "cell_id": cell.cell_id, "target": cell.target.label,
        "target_name": cell.target.name,
        "target_params": canonical_json(dict(cell.target.params)),
        "sampler": cell.sampler_label,
        "sampler_name": cell.sampler.name if cell.sampler else REFERENCE_LABEL,
        "params": canonical_json(cell.params), "denoise": cell.denoise,
        "budget": cell.budget, "seed": cell.seed, "cell_seed": cell.cell_seed, "n": cell.n,
        "nfe": math.nan, "train_nfe": math.nan,
        "train_hvp": math.nan, "train_iterations": math.nan, "train_seconds": math.nan,
        "sample_seconds": math.nan, "device": cell.device, **runtime_provenance(),
    }


def runtime_provenance() -> dict[str, Any]:
    """Who computed a row, with which code, and when (the columns that are not the cell's)."""
    return {
        "num_threads": torch.get_num_threads(),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "torch_version": torch.__version__, "package_version": package_version(),
        "git_commit": git_commit(),
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def failure_rows(cell: Cell, reason: str, costs: dict | None = None) -> list[dict]:
    """Rows of a ``failed`` cell: every metric NaN with ``reason``."""
    base = {**provenance(cell), **(costs or {})}
    return [{**base, "status": "failed", "metric": metric, "value": math.nan, "reason": reason,
             "metric_seconds": 0.0} for metric in cell.metrics]


def _own_floor_rows(cell: Cell, target: Target, generator: torch.Generator) -> list[dict]:
    """Floor rows of a target without exact samples, from each metric's ``floor`` function."""
    supported = set(supported_metrics(target))
    rows = []
    for metric in cell.metrics:
        floor = METRICS[metric].floor if metric in METRICS else None
        row = {**provenance(cell), "status": "ok", "metric": metric, "value": math.nan,
               "metric_seconds": 0.0,
               "reason": f"not applicable: target '{cell.target.label}' has no reference samples"}
        if floor is not None and metric in supported:
            try:
                with exact_float32():
                    value, seconds = timed(lambda f=floor: float(f(target, cell.n, generator)),
                                           target.device)
                row.update(value=value, reason="", metric_seconds=seconds)
            except Exception as error:  # a missing floor input is a reason, not a crash
                row["reason"] = f"floor not computed: {type(error).__name__}: {error}"
        rows.append(row)
    return rows


def run_cell(cell: Cell, cache_dir: str | os.PathLike, *, timeout: float | None = None,
             save_samples: bool = False, progress: bool = False,
             num_threads: int | None = None) -> CellResult:
    """Run one cell; never raises for a failing sampler, metric or time limit.

    A pure function of its arguments apart from the trained-sampler cache (so it is picklable
    and runs on a Dask worker): it writes no results store.

    Args:
        cell: the cell.
        cache_dir: trained neural samplers, keyed by :attr:`Cell.train_key`.
        timeout: the cell's time limit in seconds (see the module docstring), or None.
        save_samples: return the samples (float32, CPU) in the result.
        progress: tqdm bars inside training.
        num_threads: set torch's intra-op threads first (workers inherit no client setting).
    """
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    deadline = Deadline.after(timeout)
    costs: dict[str, Any] = {}
    history = None
    try:
        target = build_target(cell.target.name, dict(cell.target.params), cell.device,
                              cell.dtype, cell.target.plugin_dir)
        generator = make_generator(cell.cell_seed, target.device)
        if cell.sampler is None and "reference" not in target.provides:
            # No exact samples (image energies; BLR without a stored reference run): a metric
            # with its own floor (Metric.floor) computes it; for the others the floor does not
            # exist, which is not a failure of the run.
            return CellResult(_own_floor_rows(cell, target, generator))
        trace, no_trace = None, ""
        if cell.sampler is None:
            samples, seconds = timed(lambda: target.sample(cell.n, generator), target.device)
            costs = {"nfe": 0.0, "sample_seconds": seconds}
            if needs_trace(cell.metrics):  # the floor of ESS: i.i.d. exact draws, after samples
                trace = iid_trace(target, cell.n, generator)
        else:
            sampler = build_sampler(cell.sampler, cell.params)
            # The chain trace only when a metric needs it, and only of Markov chains.
            no_trace = sampler.not_a_chain() or ""
            recorder = (TraceRecorder(cell.n, cell.budget, sampler.warmup_steps(cell.budget))
                        if needs_trace(cell.metrics) and not no_trace else None)
            if sampler.kind == "neural":
                samples, costs, history = _sample_neural(cell, sampler, target, generator,
                                                         Path(cache_dir), deadline, progress)
            else:
                samples, costs = _sample_iterative(cell, sampler, target, generator, deadline,
                                                   recorder)
            trace = recorder.result() if recorder is not None else None
        status, evaluated = evaluate_samples(samples, target, cell.metrics, n=cell.n,
                                             reference_seed=cell.reference_seed,
                                             target_label=cell.target.label, deadline=deadline,
                                             trace=trace, no_trace=no_trace)
    except Exception as error:  # a failing cell is a result, not a crash
        if os.environ.get("BENCHMARK_DEBUG"):
            traceback.print_exc()
        history = (cell.train_key, history) if history else None
        return CellResult(failure_rows(cell, one_line(error), costs), None, history)
    base = {**provenance(cell), **costs, "status": status}
    kept = samples.detach().to("cpu", torch.float32) if save_samples else None
    return CellResult([{**base, **row} for row in evaluated], kept,
                      (cell.train_key, history) if history else None)


def run_matrix(plan: Plan, store: ResultsStore, cache_dir: str | os.PathLike,
               progress: bool = False, save_samples: bool | None = None
               ) -> Iterator[tuple[Cell, list[dict]]]:
    """Run the cells of ``plan`` still to do, in plan order, writing each when it ends.

    Shards are disjoint sets of cells, and each cell is its own file, so ``count`` processes
    with the same matrix and store but different shard indices never write the same file.
    A cell another process finished after the plan was made is skipped (unless the plan
    forces reruns). The matrix's ``cell_timeout`` applies to each cell; ``save_samples``
    (default: the matrix's) stores each cell's samples before its rows. Yields
    ``(cell, rows)`` after each write so callers can report progress.

    Args:
        plan: what to run (:func:`benchmark.plan.plan.make_plan`).
        store: the results store the plan was made against.
        cache_dir: trained neural samplers, keyed by :attr:`Cell.train_key`.
        progress: tqdm bars inside training.
        save_samples: keep each cell's samples; None: the matrix's ``save_samples``.
    """
    pin_provenance()
    keep = plan.matrix.save_samples if save_samples is None else save_samples
    for cell in plan.todo:
        if not plan.force and store.has_cell(cell.cell_id):
            continue
        result = run_cell(cell, cache_dir, timeout=plan.matrix.cell_timeout, save_samples=keep,
                          progress=progress)
        write_result(store, cell, result)
        yield cell, result.rows
