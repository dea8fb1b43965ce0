"""``ess``: effective sample size per target evaluation of a Markov-chain sampler's chains.

docs/metrics.md#effective-sample-size is the contract. The quality metrics judge where a
sampler's final particles are; this one judges how much independent information its chains
deliver per unit of the suite's cost, the target evaluation:

* **Trace.** The runner records, with :class:`TraceRecorder` in ``drive_chain``'s ``on_step``
  hook, the positions of the first ``min(TRACE_CHAINS, n)`` chains after the transitions of the
  second half of the run, thinned to at most :data:`TRACE_DRAWS` draws per chain: a
  ``(chains, draws, dim)`` tensor on the CPU, and the target evaluations per chain spent over
  the traced transitions. The first half is discarded as warm-up: it is the samplers' step-size
  adaptation (``warmup_fraction = 0.5``; a longer adaptation moves the start later) and the
  burn-in from the initial law.
* **Statistic.** ArviZ's bulk ESS (rank-normalised, split chains; Vehtari et al. 2021) of each
  coordinate over all traced chains and draws, the minimum over coordinates, divided by
  ``chains x evaluations per chain`` over the traced transitions. The minimum, because the
  slowest-mixing direction bounds the precision of every expectation that depends on it. Bulk
  ESS uses the between-chain variance, so chains stuck in different modes score low.
* **Who has it.** Only samplers that declare their particles independent, time-homogeneous
  Markov chains after warm-up (``IterativeSampler.markov_chain``: ULA, MALA, HMC, PT, Pyro NUTS
  with independent chains); the others get NaN with the reason their ``not_a_chain()`` gives
  (SVGD's particles interact; annealed Langevin and SGLD change their kernel every step;
  neural samplers have no chain).
* **Floor.** The value on an i.i.d. trace of exact samples of shape
  ``(min(TRACE_CHAINS, n), TRACE_DRAWS, dim)`` charged one evaluation per draw
  (:func:`iid_trace`): about 1, "one independent draw per target evaluation", a little below 1
  through the minimum over coordinates of noisy estimates.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmark.metrics.base import MetricContext, MetricRequirementError
from benchmark.metrics.info import TRACE_CHAINS, TRACE_DRAWS
from targets.base import Target

# TRACE_CHAINS (32): the chains traced (the first rows of the state). ESS needs chains, not
# particles: 32 are enough for ArviZ's between-chain variance to see chains that sit in
# different modes, while the trace and the ESS computation stay small whatever n is. ESS per
# evaluation divides by the number of chains traced, so for chains that mix it does not depend
# on this choice.
# TRACE_DRAWS (1,000): the most draws kept per chain. The traced half of a run of K transitions
# is thinned by ceil((K - K // 2) / TRACE_DRAWS): at most 32 x 1,000 x dim floats (6.4 MB at
# d = 50) and about 0.6 s of ArviZ at d = 50 on one core. Thinning discards information only
# for chains whose ESS per transition exceeds about 1 / thin (budgets up to 2,000 are not
# thinned; 5,000 keeps every third state). Both live in benchmark.metrics.info, so that
# reports can state them without torch.
#: ArviZ's split-chain estimator needs at least 4 draws per chain (it returns NaN below).
MIN_TRACE_DRAWS = 4

#: The reason for samples that come without a trace (``evaluate`` of stored samples).
NO_TRACE_STORED = ("stored samples keep no chain trace; ESS is computed only while the sampler "
                   "runs")


@dataclass(frozen=True)
class ChainTrace:
    """The chains a metric of the chain sees.

    Attributes:
        positions: ``(chains, draws, dim)``, on the CPU.
        nfe: target evaluations per chain over the transitions the draws span.
    """

    positions: Tensor
    nfe: float


class TraceRecorder:
    """Records the chain trace of one run of ``num_steps`` transitions of ``n`` chains.

    ``record(state, counting)`` is called after every transition (from ``drive_chain``'s
    ``on_step``). Transitions ``1 .. start`` with ``start = max(num_steps // 2, warmup)`` are
    warm-up (``warmup``: the sampler's ``warmup_steps(num_steps)``, its adapting transitions);
    of the rest, the positions after every ``thin``-th transition are kept,
    ``thin = ceil(rest / TRACE_DRAWS)``. The target
    evaluations per chain are read from the counting target at ``start`` and at the last kept
    draw, so their difference is exactly the cost of the transitions the draws span.

    Args:
        n: chains in the run (rows of the samples).
        num_steps: transitions of the run (the budget ``K``).
        warmup: transitions that adapt the kernel (``IterativeSampler.warmup_steps``); a
            sampler warming up for more than half the run is traced only after it.
    """

    def __init__(self, n: int, num_steps: int, warmup: int = 0) -> None:
        self.n = int(n)
        self.num_steps = int(num_steps)
        self.warmup = int(warmup)
        self.chains = min(TRACE_CHAINS, self.n)
        self.steps = 0
        self.start = self.thin = self.draws = self.dim = 0
        self._nfe_start = 0.0
        self._nfe: float | None = None
        self._positions: Tensor | None = None

    def _plan(self, state: Any) -> None:
        self.start = max(self.num_steps // 2, self.warmup)
        rest = self.num_steps - self.start
        self.thin = max(1, math.ceil(rest / TRACE_DRAWS))
        self.draws = rest // self.thin
        self.dim = int(state.x.shape[-1])

    def record(self, state: Any, counting: Any) -> None:
        """After a transition: keep ``state.x[:chains]`` ``(chains, dim)`` when it is a draw.

        Args:
            state: the new chain state (its ``x``: ``(n, dim)``, or ``(K n, dim)`` for PT,
                whose first ``n`` rows are the ``T = 1`` chains).
            counting: the run's :class:`targets.counting.CountingTarget`.
        """
        self.steps += 1
        if self.steps == 1:
            self._plan(state)
        if self.steps == self.start:
            self._nfe_start = counting.nfe_per_particle(self.n)
        offset = self.steps - self.start
        if offset <= 0 or offset % self.thin or offset // self.thin > self.draws:
            return
        # On the CPU: the trace must not hold device memory through the metrics; one copy of
        # (chains, dim) per kept draw (on CUDA a host synchronisation, inside sample_seconds).
        rows = state.x[: self.chains].detach().to("cpu")
        if self._positions is None:
            self._positions = torch.empty((self.chains, self.draws, self.dim),
                                          dtype=rows.dtype)
        self._positions[:, offset // self.thin - 1] = rows
        if offset == self.draws * self.thin:
            self._nfe = counting.nfe_per_particle(self.n) - self._nfe_start

    def result(self) -> ChainTrace | None:
        """The trace (``(chains, 0, dim)`` when the warm-up left no draw); None before any
        transition."""
        if self.steps == 0:
            return None
        positions = self._positions
        if positions is None:
            positions = torch.empty((self.chains, 0, self.dim))
        return ChainTrace(positions, 0.0 if self._nfe is None else float(self._nfe))


def iid_trace(target: Target, n: int, generator: torch.Generator) -> ChainTrace:
    """The floor's trace: ``(min(TRACE_CHAINS, n), TRACE_DRAWS, dim)`` exact samples, charged
    one target evaluation per draw (an ideal sampler whose every evaluation yields an
    independent draw)."""
    chains = min(TRACE_CHAINS, n)
    positions = target.sample(chains * TRACE_DRAWS, generator).reshape(chains, TRACE_DRAWS, -1)
    return ChainTrace(positions.detach().to("cpu"), float(TRACE_DRAWS))


def _arviz() -> Any:
    with warnings.catch_warnings():
        # ArviZ announces its 1.0 refactor on import; the functions used here are stable.
        warnings.simplefilter("ignore", FutureWarning)
        import arviz
    return arviz


def bulk_ess(positions: Tensor) -> np.ndarray:
    """ArviZ bulk ESS of each coordinate of ``positions`` ``(chains, draws, dim)``: ``(dim,)``.

    A coordinate that no chain ever moved in (one value over the whole trace) gets 0: ArviZ
    would return ``chains x draws`` for it, as for independent draws, but such a trace carries
    no information about that coordinate.
    """
    az = _arviz()
    values = positions.detach().to("cpu", torch.float64).numpy()
    with warnings.catch_warnings():
        # ArviZ guesses that fewer draws than chains means transposed axes; ours are explicit.
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        dataset = az.convert_to_dataset({"x": values})
    ess = np.asarray(az.ess(dataset, method="bulk")["x"].values, dtype=np.float64)
    constant = np.ptp(values.reshape(-1, values.shape[-1]), axis=0) == 0
    return np.where(constant, 0.0, ess)


def ess_per_evaluation(samples: Tensor, target: Target, context: MetricContext) -> float:
    """``min_j ESS_bulk(trace[..., j]) / (chains x trace_nfe)`` (module docstring).

    Args:
        samples: ``(n, dim)`` (unused: the metric is of the chains, not the final particles).
        target: the unwrapped target (for the dimension).
        context: ``trace`` ``(chains, draws, dim)`` and ``trace_nfe`` (evaluations per chain
            over the traced transitions).

    Raises:
        MetricRequirementError: no trace, no evaluation count, or fewer than
            :data:`MIN_TRACE_DRAWS` draws per chain.
        ValueError: a trace of the wrong shape or with non-finite positions.
    """
    trace, nfe = context.trace, context.trace_nfe
    if trace is None:
        raise MetricRequirementError("metric 'ess' needs the chain trace that the runner "
                                     "records for Markov-chain samplers")
    if trace.ndim != 3 or trace.shape[-1] != target.dim:
        raise ValueError(f"trace must have shape (chains, draws, {target.dim}), got "
                         f"{tuple(trace.shape)}")
    chains, draws = trace.shape[:2]
    if draws < MIN_TRACE_DRAWS:
        raise MetricRequirementError(f"metric 'ess' needs at least {MIN_TRACE_DRAWS} draws per "
                                     f"chain after the warm-up; the trace has {draws} (budget "
                                     f"too small)")
    if nfe is None or not nfe > 0:
        raise MetricRequirementError(f"metric 'ess' needs the target evaluations per chain of "
                                     f"the traced transitions, got {nfe!r}")
    if not bool(torch.isfinite(trace).all()):
        raise ValueError("the chain trace has non-finite positions")
    return float(bulk_ess(trace).min()) / (chains * float(nfe))


__all__ = ["MIN_TRACE_DRAWS", "NO_TRACE_STORED", "TRACE_CHAINS",
           "TRACE_DRAWS", "ChainTrace", "TraceRecorder", "bulk_ess", "ess_per_evaluation",
           "iid_trace"]
