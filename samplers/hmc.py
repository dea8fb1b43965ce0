"""Hamiltonian Monte Carlo (HMC): ``n`` independent chains, batched, identity mass matrix.

Each transition draws a momentum ``p ~ N(0, I)``, follows the Hamiltonian dynamics of
``H(x, p) = -log q~(x) + ||p||^2 / 2`` for ``L`` leapfrog steps of size ``epsilon``, and accepts
the end point with probability ``min(1, exp(H(x, p) - H(x', p')))``. The leapfrog map is
volume-preserving and time-reversible, which is what makes this Metropolis test exact.

The step size is adapted during warm-up exactly as MALA's (:mod:`samplers.langevin`): the same
dual averaging, the same ``"shared"`` / ``"per_chain"`` modes, the same state
(:class:`samplers.langevin.MALAState`, with ``h = epsilon``), the same accept/reject helper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from samplers.base import IterativeSampler
from samplers.langevin import (
    ADAPTATIONS,
    MALAState,
    adaptation_steps,
    adaptive_chain_state,
    metropolis_accept,
    warmup_adaptation,
)
from targets.base import Target
from targets.precision import exact_float32

#: HMC's state is MALA's: positions, cached ``log q~`` and score, and the dual-averaging fields
#: of the step size (here the leapfrog step ``epsilon``).
HMCState = MALAState


def check_dual_averaging_params(owner: str, params: Any) -> None:
    """Validate the step-size and warm-up fields shared with MALA; one-line ``ValueError``s.

    Args:
        owner: the sampler's registry name, which starts every message.
        params: a Params dataclass with ``step_size``, ``target_acceptance``,
            ``warmup_fraction``, ``adaptation_gamma``, ``adaptation_t0``, ``adaptation_kappa``.
    """
    p = params
    if not p.step_size > 0:
        raise ValueError(f"{owner}: step_size must be > 0, got {p.step_size}")
    if not 0.0 < p.target_acceptance < 1.0:
        raise ValueError(f"{owner}: target_acceptance must be in (0, 1), "
                         f"got {p.target_acceptance}")
    if not 0.0 <= p.warmup_fraction <= 1.0:
        raise ValueError(f"{owner}: warmup_fraction must be in [0, 1], got {p.warmup_fraction}")
    if not p.adaptation_gamma > 0:
        raise ValueError(f"{owner}: adaptation_gamma must be > 0, got {p.adaptation_gamma}")
    if not p.adaptation_t0 >= 0:
        raise ValueError(f"{owner}: adaptation_t0 must be >= 0, got {p.adaptation_t0}")
    if not 0.5 < p.adaptation_kappa <= 1.0:
        raise ValueError(f"{owner}: adaptation_kappa must be in (0.5, 1], "
                         f"got {p.adaptation_kappa}")


def leapfrog(target: Target, x: Tensor, momentum: Tensor, score: Tensor,
             step_size: Tensor | float, num_steps: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``num_steps`` leapfrog (kick-drift-kick) steps of ``H = -log q~(x) + ||p||^2 / 2``.

    ``p <- p + (eps/2) s(x); x <- x + eps p; p <- p + (eps/2) s(x)``, with the two half kicks
    between consecutive steps fused into one full kick. ``s = grad log q~ = -grad U``, hence
    the ``+`` signs. Each step evaluates the target once at its new position (``score`` at the
    start is given, cached by the caller), the last one fused with ``log q~`` for the accept
    test: ``num_steps`` evaluations per row in all.

    Args:
        target: queried through ``score`` / ``log_prob_and_score`` only.
        x: ``(n, dim)`` start positions.
        momentum: ``(n, dim)`` start momenta.
        score: ``(n, dim)`` score at ``x``.
        step_size: ``eps``: a float, a ``()`` tensor, or ``(n, 1)`` (one per chain).
        num_steps: ``L >= 1``.

    Returns:
        ``(x, momentum, log_prob, score)`` at the end point: ``(n, dim)``, ``(n, dim)``,
        ``(n,)``, ``(n, dim)``.
    """
    momentum = momentum + 0.5 * step_size * score
    for index in range(num_steps):
        x = x + step_size * momentum
        if index < num_steps - 1:
            momentum = momentum + step_size * target.score(x)
        else:
            log_prob, score = target.log_prob_and_score(x)
            momentum = momentum + 0.5 * step_size * score
    return x, momentum, log_prob, score


@dataclass(frozen=True)
class HMCParams:
    """Hyper-parameters of :class:`HMC`.

    Update: ``p ~ N(0, I)``; ``L`` leapfrog steps of size ``epsilon`` from ``(x, p)`` to
    ``(x', p')``; accept ``x'`` with probability ``min(1, exp(-H(x', p') + H(x, p)))``,
    ``H(x, p) = -log q~(x) + ||p||^2 / 2``; ``epsilon`` tuned by dual averaging in warm-up.

    Attributes:
        step_size: initial leapfrog step ``epsilon`` (the fixed one if
            ``warmup_fraction == 0``). 0.1: with ``L = 10`` a trajectory of length ~1, the
            unit-scale 2-D targets' length scale; warm-up corrects it either way. Note the
            convention: HMC's ``epsilon`` is a length, MALA's ``h`` a variance (one leapfrog
            step with ``epsilon`` is the MALA proposal with ``h = epsilon^2``).
        num_leapfrog: leapfrog steps per transition ``L``, integer >= 1; each costs one target
            evaluation per chain. 10: with the steps warm-up chose on the 2-D targets
            (measured: ``epsilon`` ~0.2 on the donut, ~0.4 on a Gaussian of s.d. 0.28-1.08,
            ~1.5 on the unit Gaussian and mog2w) a trajectory spans ``L epsilon`` ~ 2-15, long
            enough to cross a unit-scale mode in one transition, while ``K`` transitions cost
            only ``10 K`` evaluations. ``L = 1`` is MALA.
        target_acceptance: mean acceptance probability warm-up steers to. 0.65: the value
            Hoffman & Gelman (2014, sec. 3.2) use for HMC's dual averaging, next to the
            asymptotically optimal 0.651 of Beskos et al. (2013).
        warmup_fraction: fraction of the budget ``K`` (the first ``floor(fraction * K)``
            transitions) during which ``epsilon`` adapts; frozen afterwards, so the rest is an
            exactly ``q``-invariant chain. 0.5 as MALA. Warm-up is part of budget and NFE.
        adaptation_gamma: dual-averaging shrinkage ``gamma``, > 0 (0.05, recommended by
            Hoffman & Gelman 2014).
        adaptation_t0: dual-averaging offset ``t0`` >= 0 damping the first iterations (10,
            recommended).
        adaptation_kappa: iterate-average weight decay ``kappa`` in (0.5, 1] (0.75,
            recommended).
        adaptation: ``"shared"`` (one ``epsilon``, steered by the chains' mean acceptance
            probability) or ``"per_chain"`` (each chain adapts its own on its own acceptance
            probability, then freezes it); the same modes, for the same reasons, as MALA's.

    References:
        S. Duane, A. D. Kennedy, B. J. Pendleton and D. Roweth, "Hybrid Monte Carlo", Physics
        Letters B 195(2), 1987.
        R. M. Neal, "MCMC using Hamiltonian dynamics", Handbook of Markov Chain Monte Carlo,
        ch. 5, 2011.
        M. D. Hoffman and A. Gelman, "The No-U-Turn Sampler", JMLR 15, 2014, sec. 3.2.
        A. Beskos, N. Pillai, G. Roberts, J.-M. Sanz-Serna and A. Stuart, "Optimal tuning of
        the hybrid Monte Carlo algorithm", Bernoulli 19(5A), 2013.
    """

    step_size: float = 0.1
    num_leapfrog: int = 10
    target_acceptance: float = 0.65
    warmup_fraction: float = 0.5
    adaptation_gamma: float = 0.05
    adaptation_t0: float = 10.0
    adaptation_kappa: float = 0.75
    adaptation: str = "shared"

    def __post_init__(self) -> None:
        check_dual_averaging_params("hmc", self)
        if (isinstance(self.num_leapfrog, bool) or not isinstance(self.num_leapfrog, int)
                or self.num_leapfrog < 1):
            raise ValueError(f"hmc: num_leapfrog must be an integer >= 1, "
                             f"got {self.num_leapfrog!r}")
        if self.adaptation not in ADAPTATIONS:
            raise ValueError(f"hmc: invalid value {self.adaptation!r} for parameter "
                             f"'adaptation'; valid choices: {', '.join(ADAPTATIONS)}")


class HMC(IterativeSampler):
    """Hamiltonian Monte Carlo with identity mass and dual-averaging step-size warm-up.

    One transition per chain: momentum ``p ~ N(0, I)``, ``L`` leapfrog steps
    (:func:`leapfrog`), Metropolis test on ``H = -log q~ + ||p||^2 / 2``. Proposals with a
    non-finite position, log-density or score are rejected (as MALA's).

    Cost (NFE): ``L = num_leapfrog`` target evaluations per chain per transition -- the score
    at the current point is cached in the state, so each leapfrog step evaluates only its new
    position, the last one fused with ``log q~`` -- plus one fused evaluation in ``init``:
    ``K`` transitions cost ``L K + 1`` per chain. At equal NFE, HMC gets ``L`` times fewer
    transitions than MALA. :attr:`evaluations_per_step` is ``None`` because ``L`` is a
    parameter, not a property of the class.

    References:
        S. Duane et al., Physics Letters B 195(2), 1987; R. M. Neal, Handbook of MCMC, ch. 5,
        2011; M. D. Hoffman and A. Gelman, JMLR 15, 2014, sec. 3.2 (dual averaging).
    """

    name: ClassVar[str] = "hmc"
    pretty_name: ClassVar[str] = "HMC"
    description: ClassVar[str] = ("Hamiltonian Monte Carlo (identity mass, L leapfrog steps), "
                                  "step size adapted by dual averaging during warm-up")
    Params: ClassVar[type] = HMCParams
    markov_chain: ClassVar[bool] = True
    evaluations_per_step: ClassVar[int | None] = None  # num_leapfrog per transition

    def warmup_steps(self, num_steps: int) -> int:
        return adaptation_steps(self.params.warmup_fraction, num_steps)

    def init(self, target: Target, x: Tensor, num_steps: int) -> MALAState:
        """State at ``x`` ``(n, dim)``; one fused ``log_prob_and_score`` evaluation."""
        return adaptive_chain_state(target, x, num_steps, self.params)

    def _log_acceptance(self, log_prob: Tensor, log_prob_new: Tensor, momentum: Tensor,
                        momentum_new: Tensor) -> Tensor:
        """``H(x, p) - H(x', p')``, the log Metropolis ratio. Returns ``(n,)``.

        Overridable so that a test can build a deliberately broken variant (e.g. one that
        forgets the kinetic energy and so targets the wrong distribution).
        """
        return ((log_prob_new - 0.5 * momentum_new.square().sum(-1))
                - (log_prob - 0.5 * momentum.square().sum(-1)))

    def step(self, target: Target, state: MALAState,
             generator: torch.Generator) -> tuple[MALAState, dict[str, Tensor]]:
        """One HMC transition; ``num_leapfrog`` evaluations per chain.

        ``info``: ``acceptance_rate`` (mean acceptance probability over chains, ``()``) and
        ``step_size`` (the ``epsilon`` this transition used, ``()``; per chain, their geometric
        mean).
        """
        x, step_size = state.x, state.log_step_size.exp()
        column = step_size.unsqueeze(-1) if step_size.ndim else step_size  # per-chain eps
        momentum = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        # Full float32 along the whole trajectory: the accept test compares energies, whose
        # TF32 error would not shrink with epsilon (targets.precision).
        with exact_float32():
            x_new, momentum_new, log_prob_new, score_new = leapfrog(
                target, x, momentum, state.score, column, self.params.num_leapfrog)
        log_accept = self._log_acceptance(state.log_prob, log_prob_new, momentum, momentum_new)
        finite = (torch.isfinite(log_accept) & torch.isfinite(x_new).all(-1)
                  & torch.isfinite(score_new).all(-1))
        accept_probability, accepted = metropolis_accept(log_accept, finite, generator,
                                                         dtype=x.dtype)
        keep = accepted.unsqueeze(-1)
        acceptance_rate = accept_probability.mean()
        # Shared: steer by the mean acceptance probability; per chain: by each chain's own.
        steering = accept_probability if state.log_step_size.ndim else acceptance_rate
        # mu = log(10 eps0), as in NUTS: the iterates lean towards larger steps than eps0.
        log_step_size, log_average, error_average = warmup_adaptation(
            self.params, state, steering, math.log(10.0 * self.params.step_size))
        new_state = MALAState(
            x=torch.where(keep, x_new, x),
            log_prob=torch.where(accepted, log_prob_new, state.log_prob),
            score=torch.where(keep, score_new, state.score),
            step_index=state.step_index + 1, num_steps=state.num_steps,
            log_step_size=log_step_size, log_step_size_average=log_average,
            acceptance_error_average=error_average, num_warmup=state.num_warmup)
        reported = step_size.log().mean().exp() if step_size.ndim else step_size
        return new_state, {"acceptance_rate": acceptance_rate, "step_size": reported}
