"""The two sampler protocols and the helpers they share.

**Iterative samplers** (ULA, MALA, SVGD, annealed Langevin, ...) are a pair of pure-ish methods
over an explicit state, after blackjax: ``init(target, x, num_steps) -> state`` and
``step(target, state, generator) -> (state, info)``. The state caches ``log_prob`` and ``score``
at the current positions, so ``init`` evaluates the target once and each ``step`` once more:
``K`` transitions cost ``K + 1`` target evaluations per particle. Kernels own no loops,
progress bars or timers; the driver (the harness, or :func:`run_chain` in tests) does.

**Neural samplers** (DFT-NS, KL-NS, Fisher-NS, PIS) are trained once, with the same shape:
``init_training(target, num_iterations, generator) -> state`` and ``train_step(target, state,
generator) -> (state, losses)``, driven by :func:`run_training`, which owns the loop, timers,
ledger and deadline. They then draw samples with one generator forward pass,
``sample(n, generator)``, costing 0 target evaluations (PIS: a chain of ``K`` steps).

Hyper-parameters are a frozen dataclass per sampler (``Params``); ``Sampler(**overrides)``
rejects unknown keys with a one-line error listing the valid ones.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from targets.base import Target

#: What a value of each simple annotated type may be (bool is not an int here; floats are finite).
_SIMPLE_TYPES: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: (isinstance(v, int | float) and not isinstance(v, bool)
                        and math.isfinite(v)),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "None": lambda v: v is None,
}


def check_annotated_value(owner: str, key: str, value: Any, annotation: Any) -> None:
    """Raise ``ValueError`` when ``value`` does not fit a simple annotation (``"float"``,
    ``"int | None"``, ...); richer annotations (callables, tuples) are left to the dataclass."""
    names = [part.strip() for part in str(annotation).split("|")]
    if not all(name in _SIMPLE_TYPES for name in names):
        return
    if not any(_SIMPLE_TYPES[name](value) for name in names):
        kinds = " or ".join("a finite number" if n == "float" else n for n in names)
        raise ValueError(f"parameter '{key}' of '{owner}' must be {kinds}, got {value!r}")


def build_params(params_class: type, owner: str, overrides: Mapping[str, Any]) -> Any:
    """Instantiate a frozen params dataclass, naming the bad key and valid keys on error.

    Values are checked against the fields' simple annotations first (a string for a float,
    ``inf``, ``true`` for an int), so each dataclass's ``__post_init__`` sees the right types.
    """
    fields = {f.name: f for f in dataclasses.fields(params_class)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown parameter '{unknown[0]}' for sampler '{owner}'; "
                         f"valid parameters: {', '.join(sorted(fields)) or '(none)'}")
    for key, value in overrides.items():
        check_annotated_value(owner, key, value, fields[key].type)
    return params_class(**overrides)


@dataclass(frozen=True)
class NoParams:
    """For samplers without hyper-parameters."""


@dataclass
class ChainState:
    """State shared by every iterative sampler (subclasses add fields).

    Attributes:
        x: ``(n, dim)`` current positions.
        log_prob: ``(n,)`` cached ``log q~(x)``; ``None`` for samplers that need only the score.
        score: ``(n, dim)`` cached score at ``x``.
        step_index: number of transitions taken so far.
        num_steps: total transitions planned (budget ``K``); schedules and warm-up use it.
    """

    x: Tensor
    log_prob: Tensor | None
    score: Tensor
    step_index: int
    num_steps: int


class Sampler(abc.ABC):  # noqa: B024 - abstract through its two subclasses
    """Common surface of both kinds: registry metadata and typed parameters."""

    name: ClassVar[str] = ""
    pretty_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # "iterative" or "neural"
    Params: ClassVar[type] = NoParams

    def __init__(self, **overrides: Any) -> None:
        self.params = build_params(self.Params, self.name, overrides)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"

    def not_a_chain(self) -> str | None:
        """Why this sampler's ``n`` particles are not independent, time-homogeneous Markov
        chains once warm-up is over — so chain diagnostics (ESS) do not apply — or ``None``
        when they are. Declared by each sampler; the harness records a chain trace only where
        it is ``None``, and reports the reason otherwise."""
        return (f"sampler '{self.name}' does not declare its particles independent Markov "
                f"chains")


class IterativeSampler(Sampler):
    """A Markov-chain or particle sampler driven for ``num_steps`` transitions by the harness."""

    kind: ClassVar[str] = "iterative"
    #: Target evaluations per particle per transition when that is fixed (``K`` transitions then
    #: cost ``K + 1`` with ``init``'s); ``None`` when it varies by transition (NUTS trees).
    evaluations_per_step: ClassVar[int | None] = 1
    #: The ``n`` particles are independent, time-homogeneous Markov chains once
    #: :meth:`warmup_steps` are over (ULA, MALA, HMC, PT; not SVGD, annealed Langevin, SGLD).
    markov_chain: ClassVar[bool] = False

    def not_a_chain(self) -> str | None:
        return None if self.markov_chain else super().not_a_chain()

    def warmup_steps(self, num_steps: int) -> int:
        """Transitions of a ``num_steps`` run that still adapt the kernel (step sizes), after
        which it is fixed; 0 for samplers without adaptation."""
        return 0

    def initial_positions(self, target: Target, n: int, generator: torch.Generator) -> Tensor:
        """Starting points ``(n, dim)``: the target's own choice (``N(0, I)`` by default)."""
        return target.initial_positions(n, generator)

    @abc.abstractmethod
    def init(self, target: Target, x: Tensor, num_steps: int) -> ChainState:
        """State at positions ``x`` ``(n, dim)`` for a run of ``num_steps`` transitions."""

    @abc.abstractmethod
    def step(self, target: Target, state: ChainState,
             generator: torch.Generator) -> tuple[ChainState, dict[str, Tensor]]:
        """One transition. ``info`` holds diagnostics only (acceptance rate, step size, ...)."""

    def finalize(self, target: Target, state: ChainState) -> Tensor:
        """The returned samples ``(n, dim)``; samplers with a final denoising step override it."""
        return state.x


#: ``on_step(state, info)``, called by the chain driver after every transition.
StepHook = Callable[[ChainState, dict[str, Tensor]], None]


def drive_chain(sampler: IterativeSampler, target: Target, x0: Tensor, num_steps: int,
                generator: torch.Generator, on_step: StepHook | None = None) -> ChainState:
    """The one chain loop: ``init`` at ``x0`` ``(n, dim)``, then ``num_steps`` transitions.

    Every caller that runs a chain (the harness, the EBM and BLR references, PIS sampling,
    tests) goes through here, so a chain means the same thing everywhere. ``on_step`` sees
    each new state and its diagnostics: the harness checks its deadline there, references
    record acceptance rates, thinned traces or progress.

    Returns:
        The final state; ``sampler.finalize(target, state)`` gives the samples.
    """
    state = sampler.init(target, x0, num_steps)
    for _ in range(num_steps):
        state, info = sampler.step(target, state, generator)
        if on_step is not None:
            on_step(state, info)
    return state


def run_chain(sampler: IterativeSampler, target: Target, n: int, num_steps: int,
              generator: torch.Generator, on_step: StepHook | None = None) -> Tensor:
    """:func:`drive_chain` from the sampler's initial positions, then ``finalize``.

    Returns:
        ``(n, dim)`` samples.
    """
    x0 = sampler.initial_positions(target, n, generator)
    return sampler.finalize(target, drive_chain(sampler, target, x0, num_steps, generator,
                                                on_step))


#: ``callback(iteration, sampler) -> {metric: value}``, called every ``log_every`` iterations by
#: the training driver; the harness uses it to log e.g. KSD on a fixed batch.
TrainingCallback = Callable[[int, "NeuralSampler"], Mapping[str, float]]


@dataclass(kw_only=True)
class TrainingState:
    """State of a neural sampler's training run (samplers subclass it with their optimisers).

    Attributes:
        iteration: outer iterations taken so far.
        num_iterations: the most the run may take (schedules read it).
        stop: set by the sampler's own stopping rule (e.g. a plateau of a held-out monitor);
            the driver ends the run after this iteration.
        checks: values measured on held-out data at *this* iteration (empty on others), logged
            as they are rather than averaged over a window.
    """

    iteration: int = 0
    num_iterations: int
    stop: bool = False
    checks: dict[str, float] = dataclasses.field(default_factory=dict)


class NeuralSampler(Sampler):
    """A trained generator ``x = g_theta(z)``: train once, then sample in one forward pass.

    Training has the shape of a chain: ``init_training`` builds the networks and optimisers
    into a :class:`TrainingState`, ``train_step`` takes one outer iteration and
    ``finish_training`` installs the weights to sample with. The driver
    (:func:`run_training`) owns the loop, the progress bar, the timers, the logging windows,
    the callbacks, the divergence cut-off and any deadline, and writes :attr:`ledger`.

    A neural sampler with a *step axis* (``step_axis = True``, e.g. PIS) is trained once and
    then sampled as an explicit chain of ``K`` steps (``initial_positions`` / ``init`` /
    ``step`` / ``finalize``, the iterative interface), so its matrix budgets are step counts
    of the same trained network and the harness drives and counts its sampling like a chain.

    Attributes:
        ledger: the last training's cost, written by :func:`run_training`:
            ``train_iterations``, ``train_seconds`` (callback time excluded),
            ``callback_seconds``, ``diverged_iteration`` if its losses became non-finite, and
            the sampler's own entries from :meth:`finish_training`. Target evaluations and
            HVPs are counted by the caller's ``CountingTarget``.
    """

    kind: ClassVar[str] = "neural"
    step_axis: ClassVar[bool] = False

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.ledger: dict[str, float] = {}

    def not_a_chain(self) -> str:
        return (f"sampler '{self.name}' is a neural sampler: its samples are independent "
                f"generator draws, not the states of a Markov chain")

    @abc.abstractmethod
    def init_training(self, target: Target, num_iterations: int,
                      generator: torch.Generator) -> TrainingState:
        """Fresh networks on the target's device and dtype, their optimisers; no step yet."""

    @abc.abstractmethod
    def train_step(self, target: Target, state: TrainingState, generator: torch.Generator
                   ) -> tuple[TrainingState, dict[str, Tensor]]:
        """One outer iteration; advances ``state.iteration``.

        Returns the state and this iteration's losses and monitors ``{name: 0-d tensor}``,
        detached: the driver averages them over each logging window (on the device, so only
        logging iterations synchronise) and ends training when one becomes non-finite.
        """

    def finish_training(self, target: Target, state: TrainingState) -> dict[str, float]:
        """Install the weights to sample with (e.g. their moving average); extra ledger
        entries. Nothing by default."""
        return {}

    def sampling_weights(self, state: TrainingState) -> contextlib.AbstractContextManager:
        """During training, the weights callbacks and monitors should see (default: the
        live ones)."""
        return contextlib.nullcontext()

    def train(self, target: Target, num_iterations: int | None = None,
              generator: torch.Generator | None = None,
              callback: TrainingCallback | None = None, progress: bool = False) -> list[dict]:
        """:func:`run_training`: train against ``target``; the history rows."""
        return run_training(self, target, generator, num_iterations, callback, progress)

    @abc.abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, dim)`` samples from one generator pass; evaluates no target."""

    def draw(self, n: int, generator: torch.Generator, target: Target) -> Tensor:
        """``(n, dim)`` samples for a training curve, at the sampler's own default cost.

        One generator pass by default; a step-axis sampler runs its chain at its training
        discretisation, evaluating ``target`` where its steps need it.
        """
        return self.sample(n, generator)

    # -- resumable training ------------------------------------------------------------------
    def training_snapshot(self, state: TrainingState) -> dict[str, Any]:
        """Everything of a training in progress that :meth:`init_training` does not rebuild
        from the same generator state: the weights of every network (each ``nn.Module``
        attribute of the sampler) and every field of ``state`` (optimisers as their
        ``state_dict``, dataclasses such as a plateau rule as dicts, tensors cloned).

        A sampler whose training keeps state elsewhere overrides this and
        :meth:`restore_training`.
        """
        def plain(value: Any) -> Any:
            if isinstance(value, torch.optim.Optimizer):
                return value.state_dict()
            if dataclasses.is_dataclass(value):
                return dataclasses.asdict(value)
            if isinstance(value, Tensor):
                return value.detach().clone()
            if isinstance(value, list | tuple):
                return [plain(item) for item in value]
            return value

        modules = {name: module.state_dict() for name, module in vars(self).items()
                   if isinstance(module, torch.nn.Module)}
        return {"modules": modules,
                "state": {field.name: plain(getattr(state, field.name))
                          for field in dataclasses.fields(state)}}

    def restore_training(self, state: TrainingState, snapshot: dict[str, Any]) -> TrainingState:
        """Load a :meth:`training_snapshot` into ``state``, freshly made by
        :meth:`init_training` from the generator state the snapshotted run started from (so
        the networks, shapes and derived constants already match). Weights are copied into the
        existing modules in place, so the optimisers keep pointing at them."""
        for name, weights in snapshot["modules"].items():
            getattr(self, name).load_state_dict(weights)
        for name, saved in snapshot["state"].items():
            current = getattr(state, name)
            if isinstance(current, torch.optim.Optimizer):
                current.load_state_dict(saved)
            elif dataclasses.is_dataclass(current):
                setattr(state, name, type(current)(**saved))
            elif isinstance(current, tuple):
                setattr(state, name, tuple(saved))
            else:
                setattr(state, name, saved)
        return state

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to sample again (network weights and their shapes)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""


def _synchronize(device: torch.device) -> None:
    """Wait for queued kernels so wall-clock times are real (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class TrainingCheckpoint:
    """Where :func:`run_training` keeps a resumable snapshot of a long training.

    Attributes:
        save: ``save(snapshot)`` writes the driver's snapshot (a dict of tensors, numbers and
            lists; the caller may add its own entries, e.g. evaluation counts, and should
            write atomically).
        resume_from: a snapshot ``save`` wrote earlier for the *same* training (same sampler,
            parameters, target, seed and code), or ``None`` to start afresh.
        every_seconds: training seconds between snapshots (``0``: after every iteration).
    """

    save: Callable[[dict[str, Any]], None]
    resume_from: dict[str, Any] | None = None
    every_seconds: float = 300.0


def run_training(sampler: NeuralSampler, target: Target, generator: torch.Generator | None,
                 num_iterations: int | None = None, callback: TrainingCallback | None = None,
                 progress: bool = False,
                 before_step: Callable[[], None] | None = None,
                 checkpoint: TrainingCheckpoint | None = None) -> list[dict]:
    """The one training loop of every neural sampler; writes ``sampler.ledger``.

    Args:
        sampler: the sampler; its ``params`` give ``num_iterations`` (when the argument is
            ``None``) and ``log_every``.
        target: the target (wrap it in ``CountingTarget`` to count NFE and HVPs).
        generator: the only source of randomness (weights, latents, noise, probes).
        num_iterations: the most outer iterations; ``0`` only builds the untrained networks.
        callback: ``callback(iteration, sampler) -> {metric: value}`` every ``log_every``
            iterations and at the last, run under :meth:`NeuralSampler.sampling_weights`; its
            time is excluded from ``train_seconds``.
        progress: a tqdm bar (only on an interactive terminal).
        before_step: called before every iteration; it may raise to end training (the
            harness's cell deadline).
        checkpoint: periodic snapshots, and the one to resume from. A resumed training is
            bit-for-bit the uninterrupted one (weights, optimiser moments, generator state,
            history): the snapshot holds the generator state training started from, so
            ``init_training`` rebuilds the same networks, and everything it does not rebuild.
            ``train_seconds`` counts the iterations that made the result once: work lost
            after the last snapshot is redone and not counted, nor is the time spent writing
            snapshots.

    Returns:
        History rows ``{"iteration": i, "metric": name, "value": float}`` at every
        ``log_every``-th iteration, at the last, and at iterations with held-out checks: each
        loss averaged over the iterations since the previous row, the checks, the training
        seconds so far (the time-to-quality axis) and the callback's metrics.
    """
    if generator is None:
        raise ValueError("training needs a torch.Generator on the target's device")
    params = sampler.params
    num_iterations = params.num_iterations if num_iterations is None else int(num_iterations)
    log_every = int(params.log_every)
    device = torch.device(target.device)
    resume = checkpoint.resume_from if checkpoint is not None else None
    if resume is not None:
        generator.set_state(resume["initial_rng"])
    initial_rng = generator.get_state()
    state = sampler.init_training(target, num_iterations, generator)
    history: list[dict] = []
    sums: dict[str, Tensor] = {}
    window = 0
    # Seconds excluded from train_seconds: callbacks (reported) and snapshot writes (not).
    callback_seconds = excluded = done = 0.0
    if resume is not None:
        state = sampler.restore_training(state, resume["sampler"])
        generator.set_state(resume["rng"])
        history, sums, window = list(resume["history"]), dict(resume["sums"]), resume["window"]
        callback_seconds, done = resume["callback_seconds"], resume["train_seconds"]
    ledger: dict[str, float] = {"train_iterations": 0, "train_seconds": 0.0,
                                "callback_seconds": 0.0}
    bar = tqdm(total=num_iterations, initial=state.iteration, desc=f"train {sampler.name}",
               leave=False, disable=not (progress and sys.stderr.isatty()))

    def seconds_so_far() -> float:
        return done + time.perf_counter() - start - excluded

    _synchronize(device)
    start = time.perf_counter()
    saved_at = done
    while state.iteration < num_iterations and not state.stop:
        if before_step is not None:
            before_step()
        if checkpoint is not None and seconds_so_far() - saved_at >= checkpoint.every_seconds:
            tick = time.perf_counter()
            saved_at = seconds_so_far()
            checkpoint.save({"initial_rng": initial_rng, "rng": generator.get_state(),
                             "sampler": sampler.training_snapshot(state),
                             "history": history, "sums": sums, "window": window,
                             "train_seconds": saved_at,
                             "callback_seconds": callback_seconds})
            excluded += time.perf_counter() - tick
        state, losses = sampler.train_step(target, state, generator)
        bar.update()
        for key, value in losses.items():
            sums[key] = sums[key] + value if key in sums else value
        window += 1
        iteration = state.iteration
        scheduled = iteration % log_every == 0 or iteration == num_iterations or state.stop
        if not (scheduled or state.checks):
            continue
        values = {key: float(total.item()) / window for key, total in sums.items()}
        sums, window = {}, 0
        values.update(state.checks)
        values["train_seconds"] = seconds_so_far()
        if callback is not None and scheduled:
            tick = time.perf_counter()
            with sampler.sampling_weights(state):
                values.update({key: float(value)
                               for key, value in callback(iteration, sampler).items()})
            callback_seconds += time.perf_counter() - tick
            excluded += time.perf_counter() - tick
        history.extend({"iteration": iteration, "metric": key, "value": value}
                       for key, value in values.items())
        if losses:
            first = next(iter(losses))
            bar.set_postfix({first: f"{values[first]:.3g}"}, refresh=False)
        ledger["train_iterations"] = iteration
        if not all(math.isfinite(values[key]) for key in losses):
            # Training has diverged; further steps only propagate NaNs. The harness sees
            # non-finite samples and records the cell as diverged.
            ledger["diverged_iteration"] = iteration
            break
    bar.close()
    ledger["train_iterations"] = state.iteration
    ledger.update(sampler.finish_training(target, state))
    _synchronize(device)
    ledger["train_seconds"] = seconds_so_far()
    ledger["callback_seconds"] = callback_seconds
    sampler.ledger = ledger
    return history
