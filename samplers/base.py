"""The two sampler protocols and the helpers they share.

**Iterative samplers** (ULA, MALA, SVGD, annealed Langevin, ...) are a pair of pure-ish methods
over an explicit state, after blackjax: ``init(target, x, num_steps) -> state`` and
``step(target, state, generator) -> (state, info)``. The state caches ``log_prob`` and ``score``
at the current positions, so ``init`` evaluates the target once and each ``step`` once more:
``K`` transitions cost ``K + 1`` target evaluations per particle. Kernels own no loops,
progress bars or timers; the driver (the harness, or :func:`run_chain` in tests) does.

**Neural implicit samplers** (DFT-NS, KL-NS, Fisher-NS) are trained once,
``train(target, num_iterations, generator, callback) -> history``, and then draw samples with
one generator forward pass, ``sample(n, generator)``, costing 0 target evaluations.

Hyper-parameters are a frozen dataclass per sampler (``Params``); ``Sampler(**overrides)``
rejects unknown keys with a one-line error listing the valid ones.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

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


class IterativeSampler(Sampler):
    """A Markov-chain or particle sampler driven for ``num_steps`` transitions by the harness."""

    kind: ClassVar[str] = "iterative"
    #: Target evaluations per particle per transition when that is fixed (``K`` transitions then
    #: cost ``K + 1`` with ``init``'s); ``None`` when it varies by transition (NUTS trees).
    evaluations_per_step: ClassVar[int | None] = 1

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
#: neural samplers during training; the harness uses it to log e.g. KSD on a fixed batch.
TrainingCallback = Callable[[int, "NeuralSampler"], Mapping[str, float]]


class NeuralSampler(Sampler):
    """A trained generator ``x = g_theta(z)``: train once, then sample in one forward pass.

    A neural sampler with a *step axis* (``step_axis = True``, e.g. PIS) is trained once and
    then sampled as an explicit chain of ``K`` steps (``initial_positions`` / ``init`` /
    ``step`` / ``finalize``, the iterative interface), so its matrix budgets are step counts
    of the same trained network and the harness drives and counts its sampling like a chain.
    """

    kind: ClassVar[str] = "neural"
    step_axis: ClassVar[bool] = False

    @abc.abstractmethod
    def train(self, target: Target, num_iterations: int, generator: torch.Generator,
              callback: TrainingCallback | None = None, progress: bool = False) -> list[dict]:
        """Train against ``target``; returns the history, rows ``{iteration, metric, value}``."""

    @abc.abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, dim)`` samples from one generator pass; evaluates no target."""

    def draw(self, n: int, generator: torch.Generator, target: Target) -> Tensor:
        """``(n, dim)`` samples for a training curve, at the sampler's own default cost.

        One generator pass by default; a step-axis sampler runs its chain at its training
        discretisation, evaluating ``target`` where its steps need it.
        """
        return self.sample(n, generator)

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to sample again (network weights and their shapes)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
