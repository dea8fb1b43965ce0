"""Langevin samplers: the unadjusted (ULA) and Metropolis-adjusted (MALA) Langevin algorithms.

Both use the Euler-Maruyama discretisation of the Langevin diffusion
``dX = (1/2) grad log q(X) dt + dW`` with step ``h``:

    x' = x + (h/2) s(x) + sqrt(h) xi,        xi ~ N(0, I).

ULA accepts every move (biased: its stationary law is not ``q``); MALA treats ``x'`` as a
Metropolis-Hastings proposal, which removes the bias. Both run ``n`` independent chains in
parallel, as ``(n, dim)`` tensors, with one step size shared by every chain
(docs/methods.md#budgets-and-initial-positions).

MALA's building blocks are module functions so that the other Metropolis samplers reuse them
rather than copy them: the proposal ratio (:func:`langevin_log_proposal_ratio`), the
accept/reject draw (:func:`metropolis_accept`), the dual-averaging step-size warm-up
(:func:`dual_averaging_update`, :func:`warmup_adaptation`) and the initial state with its
step-size fields (:func:`adaptive_chain_state`). HMC (:mod:`samplers.hmc`) and parallel
tempering (:mod:`samplers.tempering`) use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from samplers.base import ChainState, IterativeSampler
from targets.base import Target
from targets.precision import exact_float32


def langevin_proposal(x: Tensor, score: Tensor, step_size: Tensor | float,
                      generator: torch.Generator) -> Tensor:
    """One Euler-Maruyama step ``x + (h/2) s(x) + sqrt(h) xi``.

    Args:
        x: ``(n, dim)`` current positions.
        score: ``(n, dim)`` score at ``x``.
        step_size: ``h`` (a float or a 0-dim tensor on ``x``'s device).
        generator: source of the Gaussian noise ``xi``.

    Returns:
        ``(n, dim)`` proposed positions.
    """
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    noise_scale = step_size.sqrt() if isinstance(step_size, Tensor) else math.sqrt(step_size)
    return x + 0.5 * step_size * score + noise_scale * noise


def langevin_log_proposal_ratio(x: Tensor, x_new: Tensor, score: Tensor, score_new: Tensor,
                                step_size: Tensor) -> Tensor:
    """``log Q(x | x') - log Q(x' | x)`` for the Langevin proposal. Returns ``(n,)``.

    Args:
        x, x_new: ``(n, dim)`` current and proposed positions.
        score, score_new: ``(n, dim)`` scores of the density being sampled at ``x`` and
            ``x_new`` (for a tempered density ``q^(1/T)``, the tempered scores ``s / T``).
        step_size: ``h``, ``()`` shared or ``(n,)`` one per row.
    """
    column = step_size.unsqueeze(-1) if step_size.ndim else step_size  # per-chain h
    forward = x_new - x - 0.5 * column * score
    backward = x - x_new - 0.5 * column * score_new
    return (forward.square().sum(-1) - backward.square().sum(-1)) / (2.0 * step_size)


def metropolis_accept(log_accept: Tensor, finite: Tensor, generator: torch.Generator,
                      dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """The Metropolis-Hastings decision for a batch of independent proposals.

    Proposals whose ``finite`` entry is False (a non-finite position, log-density or score)
    get probability 0, so a chain never moves into a region where the target breaks down.

    Args:
        log_accept: ``(m,)`` log acceptance ratios (any shape; the uniforms follow it).
        finite: ``(m,)`` bool, whether each proposal may be accepted at all.
        generator: source of the acceptance uniforms (one draw of ``log_accept``'s shape).
        dtype: dtype of the uniforms (default ``log_accept``'s); MALA draws them in the
            positions' dtype.

    Returns:
        ``(accept_probability, accepted)``: ``(m,)`` ``min(1, ratio)`` and the bool decisions.
    """
    log_accept = torch.where(finite, log_accept, torch.full_like(log_accept, -math.inf))
    accept_probability = log_accept.clamp(max=0.0).exp()  # exp(-inf) = 0 for rejections
    uniform = torch.rand(log_accept.shape, generator=generator, device=log_accept.device,
                         dtype=log_accept.dtype if dtype is None else dtype)
    return accept_probability, uniform < accept_probability


def dual_averaging_update(params: Any, state: MALAState, acceptance: Tensor,
                          mu: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One dual-averaging update after warm-up transition ``t = step_index + 1``.

    Nesterov dual averaging on ``log h`` (Hoffman & Gelman 2014, sec. 3.2):
    ``H_bar_t = (1 - 1/(t + t0)) H_bar_{t-1} + (delta - a_t) / (t + t0)``,
    ``log h_t = mu - sqrt(t) / gamma * H_bar_t``,
    ``log h_bar_t = t^-kappa log h_t + (1 - t^-kappa) log h_bar_{t-1}``; at ``t = num_warmup``
    the step freezes at ``h_bar``. Element-wise, so ``state``'s step-size fields and
    ``acceptance`` may be ``()`` (one shared step), ``(n,)`` (per chain) or ``(K,)`` (per
    temperature).

    Args:
        params: a Params dataclass with ``target_acceptance`` (``delta``),
            ``adaptation_gamma``, ``adaptation_t0`` and ``adaptation_kappa``.
        state: holds ``step_index``, ``num_warmup``, ``acceptance_error_average`` and
            ``log_step_size_average``.
        acceptance: the acceptance probability ``a_t`` steering the step(s).
        mu: the point the iterates shrink towards, ``log(10 h0)`` in NUTS (a float, or a
            tensor broadcasting against the step-size fields).

    Returns:
        The new ``(log_step_size, log_step_size_average, acceptance_error_average)``.
    """
    p = params
    t = state.step_index + 1
    eta = 1.0 / (t + p.adaptation_t0)
    error_average = ((1.0 - eta) * state.acceptance_error_average
                     + eta * (p.target_acceptance - acceptance))
    log_step_size = mu - math.sqrt(t) / p.adaptation_gamma * error_average
    weight = t ** (-p.adaptation_kappa)
    log_average = weight * log_step_size + (1.0 - weight) * state.log_step_size_average
    if t == state.num_warmup:  # end of warm-up: freeze h at the averaged iterate
        log_step_size = log_average
    return log_step_size, log_average, error_average


def warmup_adaptation(params: Any, state: MALAState, acceptance: Tensor,
                      mu: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`dual_averaging_update` during warm-up (``step_index < num_warmup``); afterwards
    the state's step-size fields unchanged, so the chain is time-homogeneous from then on."""
    if state.step_index < state.num_warmup:
        return dual_averaging_update(params, state, acceptance, mu)
    return state.log_step_size, state.log_step_size_average, state.acceptance_error_average


def adaptive_chain_state(target: Target, x: Tensor, num_steps: int, params: Any) -> MALAState:
    """The initial :class:`MALAState` at ``x`` ``(n, dim)``: one fused evaluation, in full float32.

    ``params`` supplies ``step_size`` (the initial ``h``), ``adaptation`` (``"shared"``: ``()``
    step-size fields; ``"per_chain"``: ``(n,)``) and ``warmup_fraction``.
    """
    with exact_float32():  # the accept test needs exact log-density differences
        log_prob, score = target.log_prob_and_score(x)
    log_step_size = torch.as_tensor(math.log(params.step_size), device=x.device, dtype=x.dtype)
    if params.adaptation == "per_chain":
        log_step_size = log_step_size.expand(x.shape[0]).clone()
    return MALAState(x=x, log_prob=log_prob, score=score, step_index=0,
                     num_steps=int(num_steps), log_step_size=log_step_size,
                     log_step_size_average=log_step_size.clone(),
                     acceptance_error_average=torch.zeros_like(log_step_size),
                     num_warmup=adaptation_steps(params.warmup_fraction, num_steps))


def adaptation_steps(warmup_fraction: float, num_steps: int) -> int:
    """Transitions that adapt the step size in a run of ``num_steps``:
    ``floor(warmup_fraction * num_steps)``."""
    return int(math.floor(warmup_fraction * num_steps))


# ---------------------------------------------------------------------------------------------
# ULA
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ULAParams:
    """Hyper-parameters of :class:`ULA`.

    Attributes:
        step_size: ``h``. The default 0.01 keeps the step linearly stable (``h * L < 4`` for a
            curvature ``L`` of ``-log q``) on the 2-D targets' stiffest bulk regions -- the donut's
            radial curvature is ``2 / 0.033 ~ 61``, so ``h < 0.066`` -- while its bias on a unit
            Gaussian stays small (stationary variance ``1 / (1 - h/4) ~ 1.0025``). The funnel's
            neck and Rosenbrock's far tails are stiffer still; override per target there.
    """

    step_size: float = 0.01

    def __post_init__(self) -> None:
        if not self.step_size > 0:
            raise ValueError(f"ula: step_size must be > 0, got {self.step_size}")


class ULA(IterativeSampler):
    """Unadjusted Langevin algorithm: ``x' = x + (h/2) s(x) + sqrt(h) xi``, every move accepted.

    On ``N(0, sigma^2)`` its stationary variance is ``sigma^2 / (1 - h / (4 sigma^2))`` (biased
    upwards; the chain diverges for ``h >= 4 sigma^2``).

    References:
        G. O. Roberts and R. L. Tweedie, "Exponential convergence of Langevin distributions and
        their discrete approximations", Bernoulli 2(4), 1996.
    """

    name: ClassVar[str] = "ula"
    pretty_name: ClassVar[str] = "ULA"
    description: ClassVar[str] = "Unadjusted Langevin algorithm (Euler-Maruyama, fixed step)"
    Params: ClassVar[type] = ULAParams
    markov_chain: ClassVar[bool] = True

    def init(self, target: Target, x: Tensor, num_steps: int) -> ChainState:
        """State at ``x`` ``(n, dim)``; one score evaluation. ``log_prob`` is not needed."""
        return ChainState(x=x, log_prob=None, score=target.score(x), step_index=0,
                          num_steps=int(num_steps))

    def step(self, target: Target, state: ChainState,
             generator: torch.Generator) -> tuple[ChainState, dict[str, Tensor]]:
        """One ULA move; one score evaluation at the new positions (cached for the next step)."""
        step_size = float(self.params.step_size)
        x = langevin_proposal(state.x, state.score, step_size, generator)
        new_state = ChainState(x=x, log_prob=None, score=target.score(x),
                               step_index=state.step_index + 1, num_steps=state.num_steps)
        return new_state, {"step_size": torch.as_tensor(step_size, device=x.device,
                                                        dtype=x.dtype)}


# ---------------------------------------------------------------------------------------------
# MALA
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MALAParams:
    """Hyper-parameters of :class:`MALA`.

    Attributes:
        step_size: initial ``h``, before adaptation (and the fixed ``h`` if
            ``warmup_fraction == 0``). 0.1 is of the order of the optimum on the unit-scale 2-D
            targets; warm-up corrects it either way within a few dozen steps.
        target_acceptance: mean acceptance probability that warm-up steers to. 0.574 is the
            asymptotically optimal rate for MALA (Roberts & Rosenthal 1998).
        warmup_fraction: fraction of the budget ``K`` (first ``floor(fraction * K)``
            transitions) during which ``h`` is adapted; it is frozen afterwards, so the second
            half (by default) is a time-homogeneous, exactly ``q``-invariant chain. Warm-up steps
            are part of the budget and of the NFE.
        adaptation_gamma: dual-averaging shrinkage ``gamma`` (Hoffman & Gelman 2014, sec. 3.2,
            recommended 0.05).
        adaptation_t0: dual-averaging offset ``t0`` damping the first iterations (recommended
            10).
        adaptation_kappa: dual-averaging weight decay ``kappa`` of the iterate average, in
            (0.5, 1] (recommended 0.75).
        adaptation: ``"shared"`` (default: one ``h`` for all chains, steered by their mean
            acceptance probability) or ``"per_chain"`` (each chain runs its own dual averaging
            on its own acceptance probability). One shared ``h`` suits the chains that are in
            the bulk when warm-up ends; on a target whose curvature varies by orders of
            magnitude (Rosenbrock's valley, the funnel's neck) it can leave chains in the
            stiff region rejecting almost every proposal (10.6% of rosenbrock chains never
            moved in 200 steps). Per-chain steps are frozen at the end of warm-up like the
            shared one, so every chain is then an exactly ``q``-invariant MALA chain. Added after
            cells were stored: left out of a cell's identity at its default.
    """

    step_size: float = 0.1
    target_acceptance: float = 0.574
    warmup_fraction: float = 0.5
    adaptation_gamma: float = 0.05
    adaptation_t0: float = 10.0
    adaptation_kappa: float = 0.75
    adaptation: str = field(default="shared", metadata={"identity": "omit_default"})

    def __post_init__(self) -> None:
        if not self.step_size > 0:
            raise ValueError(f"mala: step_size must be > 0, got {self.step_size}")
        if self.adaptation not in ADAPTATIONS:
            raise ValueError(f"mala: invalid value {self.adaptation!r} for parameter "
                             f"'adaptation'; valid choices: {', '.join(ADAPTATIONS)}")
        if not 0.0 < self.target_acceptance < 1.0:
            raise ValueError("mala: target_acceptance must be in (0, 1), "
                             f"got {self.target_acceptance}")
        if not 0.0 <= self.warmup_fraction <= 1.0:
            raise ValueError(f"mala: warmup_fraction must be in [0, 1], got {self.warmup_fraction}")


#: Step-size adaptation modes of :class:`MALA`.
ADAPTATIONS: tuple[str, ...] = ("shared", "per_chain")


@dataclass
class MALAState(ChainState):
    """:class:`ChainState` plus the shared step size and its dual-averaging state.

    Also the state of :class:`samplers.hmc.HMC` (there ``h`` is the leapfrog step ``epsilon``).
    Every step-size field is ``()`` with ``adaptation = "shared"`` and ``(n,)`` (one per chain)
    with ``"per_chain"``.

    Attributes:
        log_step_size: ``()`` log of the ``h`` used by the next transition.
        log_step_size_average: ``()`` dual-averaging iterate average ``log h_bar``; it becomes
            the frozen step size at the end of warm-up.
        acceptance_error_average: ``()`` running average ``H_bar`` of
            ``target_acceptance - acceptance``.
        num_warmup: number of adapting transitions (``floor(warmup_fraction * num_steps)``).
    """

    log_step_size: Tensor
    log_step_size_average: Tensor
    acceptance_error_average: Tensor
    num_warmup: int


class MALA(IterativeSampler):
    """Metropolis-adjusted Langevin algorithm with dual-averaging step-size warm-up.

    Proposal ``x' = x + (h/2) s(x) + sqrt(h) xi``, accepted with probability
    ``min(1, q(x') Q(x | x') / (q(x) Q(x' | x)))``, where
    ``log Q(x'|x) = -||x' - x - (h/2) s(x)||^2 / (2h)`` (+ a constant that cancels).
    One fused ``log_prob_and_score`` evaluation per proposal. Proposals with a non-finite
    position, log-density or score are rejected.

    During warm-up (the first ``floor(warmup_fraction * K)`` transitions) the shared ``log h``
    follows Nesterov dual averaging on ``target_acceptance - mean acceptance probability``
    (with ``adaptation = "per_chain"``, each chain's ``log h`` on its own acceptance
    probability); at the end of warm-up ``h`` is frozen at the averaged iterate.

    References:
        G. O. Roberts and R. L. Tweedie, Bernoulli 2(4), 1996 (MALA).
        G. O. Roberts and J. S. Rosenthal, "Optimal scaling of discrete approximations to
        Langevin diffusions", JRSS B 60(1), 1998 (the 0.574 acceptance rate).
        M. D. Hoffman and A. Gelman, "The No-U-Turn Sampler", JMLR 15, 2014, sec. 3.2 (dual
        averaging).
    """

    name: ClassVar[str] = "mala"
    pretty_name: ClassVar[str] = "MALA"
    description: ClassVar[str] = ("Metropolis-adjusted Langevin, step size adapted by dual "
                                  "averaging during warm-up")
    Params: ClassVar[type] = MALAParams
    markov_chain: ClassVar[bool] = True

    def warmup_steps(self, num_steps: int) -> int:
        return adaptation_steps(self.params.warmup_fraction, num_steps)

    def init(self, target: Target, x: Tensor, num_steps: int) -> MALAState:
        """State at ``x`` ``(n, dim)``; one fused ``log_prob_and_score`` evaluation."""
        return adaptive_chain_state(target, x, num_steps, self.params)

    def _log_proposal_ratio(self, x: Tensor, x_new: Tensor, score: Tensor, score_new: Tensor,
                            step_size: Tensor) -> Tensor:
        """``log Q(x | x') - log Q(x' | x)`` for the Langevin proposal. Returns ``(n,)``.

        Overridable so that a test can build a deliberately broken variant (e.g. returning
        zeros, which turns MALA into a biased random-walk-with-drift sampler).
        """
        return langevin_log_proposal_ratio(x, x_new, score, score_new, step_size)

    def _adapt(self, state: MALAState, acceptance_rate: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One dual-averaging update after warm-up transition ``t = step_index + 1``.

        Returns the new ``(log_step_size, log_step_size_average, acceptance_error_average)``.
        """
        # mu = log(10 h0) biases the iterates towards larger steps than h0, as in NUTS.
        return dual_averaging_update(self.params, state, acceptance_rate,
                                     math.log(10.0 * self.params.step_size))

    def step(self, target: Target, state: MALAState,
             generator: torch.Generator) -> tuple[MALAState, dict[str, Tensor]]:
        """One MALA transition; one fused evaluation at the proposal.

        ``info``: ``acceptance_rate`` (mean acceptance probability over chains, ``()``) and
        ``step_size`` (the ``h`` this transition used, ``()``; per chain, their geometric
        mean).
        """
        x, step_size = state.x, state.log_step_size.exp()
        column = step_size.unsqueeze(-1) if step_size.ndim else step_size  # per-chain h
        x_new = langevin_proposal(x, state.score, column, generator)
        # Full float32 even on targets that allow TF32: its ~1e-3 relative error in log p does
        # not shrink with the step and would drive the adapted step to zero (targets.precision).
        with exact_float32():
            log_prob_new, score_new = target.log_prob_and_score(x_new)

        log_accept = (log_prob_new - state.log_prob
                      + self._log_proposal_ratio(x, x_new, state.score, score_new, step_size))
        finite = (torch.isfinite(log_accept) & torch.isfinite(x_new).all(-1)
                  & torch.isfinite(score_new).all(-1))
        accept_probability, accepted = metropolis_accept(log_accept, finite, generator,
                                                         dtype=x.dtype)

        keep = accepted.unsqueeze(-1)
        acceptance_rate = accept_probability.mean()
        # Shared: steer by the mean acceptance probability; per chain: by each chain's own.
        steering = accept_probability if state.log_step_size.ndim else acceptance_rate
        log_step_size, log_average, error_average = (
            self._adapt(state, steering) if state.step_index < state.num_warmup
            else (state.log_step_size, state.log_step_size_average,
                  state.acceptance_error_average))
        new_state = MALAState(
            x=torch.where(keep, x_new, x),
            log_prob=torch.where(accepted, log_prob_new, state.log_prob),
            score=torch.where(keep, score_new, state.score),
            step_index=state.step_index + 1, num_steps=state.num_steps,
            log_step_size=log_step_size, log_step_size_average=log_average,
            acceptance_error_average=error_average, num_warmup=state.num_warmup)
        # Per chain, ``step_size`` reports the geometric mean of the chains' steps.
        reported = step_size.log().mean().exp() if step_size.ndim else step_size
        return new_state, {"acceptance_rate": acceptance_rate, "step_size": reported}
