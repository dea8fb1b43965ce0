"""Parallel tempering (replica exchange) with MALA moves: ``n`` independent PT systems, batched.

Each of the ``n`` returned chains is one PT system of ``K`` replicas at temperatures
``1 = T_1 < ... < T_K = T_max`` (geometric ladder). Replica ``k`` targets the tempered density
``q^(1/T_k)``, i.e. ``beta_k log q~`` with score ``beta_k s``, ``beta_k = 1 / T_k``. Every
transition moves all ``K n`` replicas with one MALA step each (per-temperature step sizes, the
Langevin proposal, ratio, accept/reject and dual averaging of :mod:`samplers.langevin`); every
``swap_every`` transitions, neighbouring replicas of each system propose to exchange positions.
Hot replicas cross the barriers between modes and pass their positions down the ladder, so the
``T = 1`` replica samples ``q`` across separated modes that a single MALA chain would not leave.

Layout: the ``K`` replicas of all systems live in one ``(K n, dim)`` batch, temperature-major
(rows ``k n ... (k + 1) n - 1`` are temperature ``k``), so the target is evaluated in one call
per transition. The state caches the *untempered* ``log q~`` and score, so a swap needs no new
evaluation and positions move between temperatures with their cached values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from samplers.base import IterativeSampler
from samplers.hmc import check_dual_averaging_params
from samplers.langevin import (
    MALAState,
    adaptation_steps,
    langevin_log_proposal_ratio,
    langevin_proposal,
    metropolis_accept,
    warmup_adaptation,
)
from targets.base import Target
from targets.precision import exact_float32


def geometric_temperatures(num_temperatures: int, max_temperature: float) -> Tensor:
    """The ladder ``T_k = T_max^(k / (K - 1))``, ``k = 0 .. K-1``, float64 ``(K,)``.

    ``T_1 = 1`` and ``T_K = T_max`` exactly; ``K = 1`` gives ``[1]``. A geometric ladder keeps
    the ratio ``T_{k+1} / T_k`` constant, which for a target whose log-density has roughly
    constant heat capacity gives equal swap acceptance between all neighbours (Kofke 2002).
    """
    if num_temperatures == 1:
        return torch.ones(1, dtype=torch.float64)
    exponents = torch.arange(num_temperatures, dtype=torch.float64) / (num_temperatures - 1)
    return torch.as_tensor(max_temperature, dtype=torch.float64) ** exponents


def swap_replicas(x: Tensor, log_prob: Tensor, score: Tensor, inverse_temperatures: Tensor,
                  parity: int, generator: torch.Generator
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One round of neighbour swaps between replicas ``(k, k+1)`` with ``k = parity mod 2``.

    For each system ``i`` and each such pair, independently: exchange the positions of
    temperatures ``k`` and ``k+1`` with probability
    ``min(1, exp((beta_k - beta_{k+1}) (log q~(x_{k+1}) - log q~(x_k))))``, the Metropolis
    ratio of the exchange under the product ``prod_k q^(beta_k)(x_k)``; the pairs of one round
    are disjoint, so the round is a product of such moves and leaves that product invariant.
    Draws one ``(num_pairs, n)`` batch of uniforms; none when there is no pair.

    Args:
        x: ``(K n, dim)`` positions, temperature-major.
        log_prob: ``(K n,)`` untempered ``log q~`` at ``x``.
        score: ``(K n, dim)`` untempered score at ``x``.
        inverse_temperatures: ``(K,)`` ``beta_k``, in ``x``'s dtype.
        parity: 0 swaps pairs (0, 1), (2, 3), ...; 1 swaps (1, 2), (3, 4), ...
        generator: source of the acceptance uniforms.

    Returns:
        ``(x, log_prob, score, accept_probability)`` after the round, the last ``(num_pairs,
        n)`` (``None`` if the round had no pair).
    """
    num_temperatures = inverse_temperatures.shape[0]
    n = x.shape[0] // num_temperatures
    pairs = list(range(parity % 2, num_temperatures - 1, 2))  # lower rung of each pair
    if not pairs:
        return x, log_prob, score, None
    lower = torch.tensor(pairs, device=x.device)
    upper = lower + 1
    levels = log_prob.view(num_temperatures, n)
    log_accept = ((inverse_temperatures[lower] - inverse_temperatures[upper]).unsqueeze(-1)
                  * (levels[upper] - levels[lower]))
    accept_probability, accepted = metropolis_accept(log_accept, torch.isfinite(log_accept),
                                                     generator)
    # Source level of each (level, system) slot: itself, or its partner where the swap is taken.
    source = torch.arange(num_temperatures, device=x.device).unsqueeze(-1).expand(
        num_temperatures, n).clone()
    source[lower] = torch.where(accepted, upper.unsqueeze(-1), source[lower])
    source[upper] = torch.where(accepted, lower.unsqueeze(-1), source[upper])
    rows = (source * n + torch.arange(n, device=x.device)).reshape(-1)
    return x[rows], log_prob[rows], score[rows], accept_probability


@dataclass(frozen=True)
class PTParams:
    """Hyper-parameters of :class:`ParallelTempering`.

    Update, per transition: every replica ``k`` of every system makes one MALA step on
    ``q^(1/T_k)``: ``x' = x + (h_k/2) s(x) / T_k + sqrt(h_k) xi``, accepted with the MALA
    probability for that density; then, if the transition index is a multiple of
    ``swap_every``, one round of neighbour swaps (even pairs ``(1,2), (3,4), ...`` and odd
    pairs ``(2,3), ...`` on alternate rounds), each accepted with probability
    ``min(1, exp((1/T_k - 1/T_{k+1}) (log q~(x_{k+1}) - log q~(x_k))))``.

    Attributes:
        num_temperatures: ``K``, integer >= 1; every replica costs one target evaluation per
            transition, so a transition costs ``K`` evaluations per returned chain. 4: with
            ``T_max = 10`` neighbouring temperatures differ by a factor ``r = 10^(1/3) ~ 2.15``.
            For a ``d``-dimensional Gaussian ``E log alpha = -(d/2) (r - 1)^2 / r``, -0.62 in
            2-D: swaps are accepted often (measured 0.63-0.76 on gaussian, mog2w, donut), so
            more rungs would cost evaluations without helping. ``K = 1`` is plain MALA
            (``max_temperature`` is then unused).
        max_temperature: ``T_max`` >= 1, the hottest rung. 10: it divides every log-density
            barrier by ten -- mog2's 3.3-nat saddle between modes becomes 0.33 nats -- and
            widens a unit-scale mode to s.d. ``sqrt(10) ~ 3.2``, enough for the hot replica to
            cover modes spread over the 2-D targets' window of a few units.
        swap_every: swap rounds happen after transitions ``swap_every, 2 swap_every, ...``;
            integer >= 1. 1: a swap round evaluates nothing (it reuses the cached
            ``log q~``), so attempting one every transition maximises exchanges for free.
        step_size: initial MALA step ``h`` at ``T = 1``; rung ``k`` starts at ``h T_k``,
            because the tempered density's variance, and with it MALA's best ``h``, grows
            like ``T``. 0.1 as MALA.
        target_acceptance: mean MALA acceptance probability each rung's warm-up steers to.
            0.574, MALA's optimal rate (Roberts & Rosenthal 1998).
        warmup_fraction: fraction of the budget ``K_steps`` during which the step sizes
            adapt (0.5, as MALA); frozen afterwards, when the joint chain is exactly invariant
            for ``prod_k q^(1/T_k)``, so its ``T = 1`` marginal is ``q``.
        adaptation_gamma, adaptation_t0, adaptation_kappa: dual averaging as MALA's (0.05,
            10, 0.75; Hoffman & Gelman 2014), run separately for each rung on the mean
            acceptance probability of its ``n`` replicas, with ``mu_k = log(10 h T_k)``.

    References:
        R. H. Swendsen and J.-S. Wang, "Replica Monte Carlo simulation of spin glasses",
        Physical Review Letters 57(21), 1986.
        C. J. Geyer, "Markov chain Monte Carlo maximum likelihood", Computing Science and
        Statistics: Proc. 23rd Symposium on the Interface, 1991.
        K. Hukushima and K. Nemoto, "Exchange Monte Carlo method and application to spin glass
        simulations", J. Phys. Soc. Japan 65(6), 1996.
        T. Okabe, M. Kawata, Y. Okamoto and M. Mikami, "Replica-exchange Monte Carlo method for
        the isobaric-isothermal ensemble", Chem. Phys. Lett. 335, 2001 (alternating even/odd
        swaps); S. Syed, A. Bouchard-Cote, G. Deligiannidis and A. Doucet, "Non-reversible
        parallel tempering: a scalable highly parallel MCMC scheme", JRSS B 84(2), 2022.
        D. A. Kofke, "On the acceptance probability of replica-exchange Monte Carlo trials",
        J. Chem. Phys. 117(15), 2002 (geometric ladders).
    """

    num_temperatures: int = 4
    max_temperature: float = 10.0
    swap_every: int = 1
    step_size: float = 0.1
    target_acceptance: float = 0.574
    warmup_fraction: float = 0.5
    adaptation_gamma: float = 0.05
    adaptation_t0: float = 10.0
    adaptation_kappa: float = 0.75

    def __post_init__(self) -> None:
        for name in ("num_temperatures", "swap_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"pt: {name} must be an integer >= 1, got {value!r}")
        if not (math.isfinite(self.max_temperature) and self.max_temperature >= 1.0):
            raise ValueError(f"pt: max_temperature must be finite and >= 1, "
                             f"got {self.max_temperature}")
        check_dual_averaging_params("pt", self)


@dataclass
class PTState(MALAState):
    """:class:`samplers.langevin.MALAState` over all replicas, plus the ladder.

    ``x`` ``(K n, dim)``, ``log_prob`` ``(K n,)`` and ``score`` ``(K n, dim)`` hold every
    replica, temperature-major, with the *untempered* ``log q~`` and score. The step-size
    fields are ``(K,)``, one per temperature.

    Attributes:
        inverse_temperatures: ``(K,)`` ``beta_k = 1 / T_k`` in the positions' dtype.
        log_step_size_centre: ``(K,)`` dual averaging's ``mu_k = log(10 h T_k)``.
        num_chains: ``n``, the number of PT systems (returned chains).
    """

    inverse_temperatures: Tensor
    log_step_size_centre: Tensor
    num_chains: int


class ParallelTempering(IterativeSampler):
    """Parallel tempering with MALA moves on a geometric ladder; returns the ``T = 1`` chains.

    ``init`` starts every replica of system ``i`` at the ``i``-th given position (the driver's
    ``(n, dim)`` starting points; ``init`` has no generator to draw more). ``finalize`` returns
    the ``T = 1`` replicas ``(n, dim)``.

    Cost (NFE): every one of the ``K n`` replicas evaluates the target once per transition
    (one fused ``log_prob_and_score``) and once in ``init``; swaps evaluate nothing. Per
    returned chain: ``K`` evaluations per transition, ``K (K_steps + 1)`` for a budget of
    ``K_steps`` transitions -- at equal NFE, PT gets ``K`` times fewer transitions than MALA.
    :attr:`evaluations_per_step` is ``None`` because ``K`` is a parameter.

    References:
        Swendsen and Wang 1986; Geyer 1991; Hukushima and Nemoto 1996 (replica exchange);
        Roberts and Tweedie 1996 (MALA); see :class:`PTParams`.
    """

    name: ClassVar[str] = "pt"
    pretty_name: ClassVar[str] = "PT"
    description: ClassVar[str] = ("Parallel tempering: MALA moves on a geometric temperature "
                                  "ladder, neighbour swaps; returns the T = 1 chains")
    Params: ClassVar[type] = PTParams
    # The T = 1 replicas (the first n rows) are the chains: together with their ladders they
    # are independent Markov chains, whose swaps are part of the fixed kernel after warm-up.
    markov_chain: ClassVar[bool] = True
    evaluations_per_step: ClassVar[int | None] = None  # num_temperatures per transition

    def warmup_steps(self, num_steps: int) -> int:
        return adaptation_steps(self.params.warmup_fraction, num_steps)

    def init(self, target: Target, x: Tensor, num_steps: int) -> PTState:
        """State with all ``K`` replicas of system ``i`` at ``x[i]`` (``x``: ``(n, dim)``).

        One fused evaluation of the ``K n`` replicas (``K`` per returned chain).
        """
        p = self.params
        n = x.shape[0]
        replicas = x.repeat(p.num_temperatures, 1)  # (K n, dim), temperature-major
        with exact_float32():  # the accept tests need exact log-density differences
            log_prob, score = target.log_prob_and_score(replicas)
        # The ladder and the step-size constants are computed in float64 on the CPU, then
        # cast: exact T_1 = 1 and T_K = T_max, and no float64 needed on the target's device.
        temperatures = geometric_temperatures(p.num_temperatures, p.max_temperature)
        log_step_size = torch.log(p.step_size * temperatures).to(device=x.device,
                                                                  dtype=x.dtype)
        centre = torch.log(10.0 * p.step_size * temperatures).to(device=x.device,
                                                                  dtype=x.dtype)
        return PTState(
            x=replicas, log_prob=log_prob, score=score, step_index=0, num_steps=int(num_steps),
            log_step_size=log_step_size, log_step_size_average=log_step_size.clone(),
            acceptance_error_average=torch.zeros_like(log_step_size),
            num_warmup=self.warmup_steps(num_steps),
            inverse_temperatures=(1.0 / temperatures).to(device=x.device, dtype=x.dtype),
            log_step_size_centre=centre, num_chains=n)

    def _swap(self, x: Tensor, log_prob: Tensor, score: Tensor, inverse_temperatures: Tensor,
              parity: int, generator: torch.Generator
              ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """One swap round, :func:`swap_replicas`.

        Overridable so that a test can build a deliberately broken variant (e.g. one that
        accepts every exchange, which leaks hot replicas' positions into the ``T = 1`` chain).
        """
        return swap_replicas(x, log_prob, score, inverse_temperatures, parity, generator)

    def step(self, target: Target, state: PTState,
             generator: torch.Generator) -> tuple[PTState, dict[str, Tensor]]:
        """One MALA move of every replica (``K`` evaluations per returned chain), then a swap
        round if ``step_index + 1`` is a multiple of ``swap_every``.

        ``info``: ``acceptance_rate`` and ``step_size`` of the ``T = 1`` rung (``()``), and,
        on transitions with a swap round that had pairs, ``swap_rate``, the mean swap
        acceptance probability of that round (``()``).
        """
        p = self.params
        num_temperatures, n = p.num_temperatures, state.num_chains
        x, step_size = state.x, state.log_step_size.exp()
        beta = state.inverse_temperatures.repeat_interleave(n)  # (K n,)
        row_step = step_size.repeat_interleave(n)  # (K n,)
        column, beta_column = row_step.unsqueeze(-1), beta.unsqueeze(-1)
        tempered_score = beta_column * state.score
        x_new = langevin_proposal(x, tempered_score, column, generator)
        with exact_float32():  # full float32 even on TF32 targets (targets.precision)
            log_prob_new, score_new = target.log_prob_and_score(x_new)

        log_accept = (beta * (log_prob_new - state.log_prob)
                      + langevin_log_proposal_ratio(x, x_new, tempered_score,
                                                    beta_column * score_new, row_step))
        finite = (torch.isfinite(log_accept) & torch.isfinite(x_new).all(-1)
                  & torch.isfinite(score_new).all(-1))
        accept_probability, accepted = metropolis_accept(log_accept, finite, generator,
                                                         dtype=x.dtype)
        keep = accepted.unsqueeze(-1)
        x = torch.where(keep, x_new, x)
        log_prob = torch.where(accepted, log_prob_new, state.log_prob)
        score = torch.where(keep, score_new, state.score)

        # Each rung steers its own step by the mean acceptance probability of its n replicas;
        # mu_k = log(10 h T_k), MALA's choice scaled like the rung's starting step.
        rung_acceptance = accept_probability.view(num_temperatures, n).mean(-1)
        log_step_size, log_average, error_average = warmup_adaptation(
            p, state, rung_acceptance, state.log_step_size_centre)
        info = {"acceptance_rate": rung_acceptance[0], "step_size": step_size[0]}

        if (state.step_index + 1) % p.swap_every == 0:
            # Alternate even and odd pairs on successive rounds (deterministic even-odd).
            parity = ((state.step_index + 1) // p.swap_every - 1) % 2
            x, log_prob, score, swap_probability = self._swap(
                x, log_prob, score, state.inverse_temperatures, parity, generator)
            if swap_probability is not None:
                info["swap_rate"] = swap_probability.mean()

        new_state = PTState(
            x=x, log_prob=log_prob, score=score, step_index=state.step_index + 1,
            num_steps=state.num_steps, log_step_size=log_step_size,
            log_step_size_average=log_average, acceptance_error_average=error_average,
            num_warmup=state.num_warmup, inverse_temperatures=state.inverse_temperatures,
            log_step_size_centre=state.log_step_size_centre, num_chains=n)
        return new_state, info

    def finalize(self, target: Target, state: PTState) -> Tensor:
        """The ``T = 1`` replicas, ``(n, dim)`` (a copy, not a view of the ``(K n, dim)``
        batch, so storing the samples does not store every replica)."""
        return state.x[: state.num_chains].clone()
