"""Annealed Langevin dynamics with the MDSM temperature schedule (Li, Chen & Sommer 2019).

ULA on the tempered targets ``q^{1/T_k}``, cooling from ``T_max`` to 0, then an optional
one-step denoising (docs/methods.md#annealed-langevin and docs/methods.md#nfe-counting-rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from samplers.base import ChainState, IterativeSampler
from targets.base import Target

#: Segment proportions of the reference schedule: hot constant, geometric cooling, linear
#: cooling (500 + 2000 + 200 = 2700 steps in MDSM's sample.py).
SEGMENT_PROPORTIONS: tuple[int, int, int] = (500, 2000, 200)


def segment_lengths(num_steps: int) -> tuple[int, int, int]:
    """Steps in the (hot, geometric, linear) segments for a budget ``K = num_steps``.

    ``K = 1``: ``(0, 0, 1)`` (one step at ``T = 1``); ``K = 2``: ``(1, 0, 1)`` (one at
    ``T_max``, one at ``T = 1``); ``K >= 3``: the proportions 500:2000:200 rounded by largest
    remainder (Hamilton's method, ties to the earlier segment) so they sum to ``K``, then any
    empty segment takes one step from the largest. ``K = 2700`` gives exactly (500, 2000, 200).
    """
    num_steps = int(num_steps)
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if num_steps == 0:
        return (0, 0, 0)
    if num_steps == 1:
        return (0, 0, 1)
    if num_steps == 2:
        return (1, 0, 1)
    total = sum(SEGMENT_PROPORTIONS)
    # Integer arithmetic, so the quotas and remainders are exact (no float ties).
    lengths = [num_steps * p // total for p in SEGMENT_PROPORTIONS]
    remainders = [num_steps * p % total for p in SEGMENT_PROPORTIONS]
    order = sorted(range(3), key=lambda i: (-remainders[i], i))
    for i in order[: num_steps - sum(lengths)]:
        lengths[i] += 1
    for i in range(3):
        if lengths[i] == 0:
            lengths[max(range(3), key=lambda j: lengths[j])] -= 1
            lengths[i] = 1
    return (lengths[0], lengths[1], lengths[2])


def temperature_schedule(num_steps: int, max_temperature: float,
                         final_temperature: float = 0.0) -> list[float]:
    """The temperature ``T_k`` of each of the ``K = num_steps`` transitions.

    Segments (lengths from :func:`segment_lengths`; for ``K = 2700`` they are 500, 2000, 200,
    and the values are those of MDSM's ``sample.py``, 'exp' schedule, to float64 round-off:
    bit for bit except for an occasional last-bit difference between ``math.exp`` and
    ``numpy.exp``):

    1. hot: ``n_1`` steps at ``T_max``;
    2. geometric: ``T_max * exp(-k ln(T_max) / n_2)`` for ``k = 0, ..., n_2 - 1``, so it starts
       *at* ``T_max`` and stops one ratio short of 1 (its last value is ``T_max^{1/n_2}``);
    3. linear: ``n_3`` values evenly spaced from 1 down to ``final_temperature``, both
       included (``numpy.linspace(1, T_final, n_3)``; a single step is ``T = 1``). MDSM's
       images use ``T_final = 0`` (the last transition is noise-free, then the denoising
       step); for an exact density ``T_final = 1`` ends the run on ``q`` itself.

    Args:
        num_steps: budget ``K >= 0``.
        max_temperature: ``T_max >= 1``.
        final_temperature: ``T_final`` in ``[0, 1]``, the last temperature.

    Returns:
        ``K`` temperatures, as Python floats (the schedule is data, not a device tensor).
    """
    if max_temperature < 1.0:
        raise ValueError(f"max_temperature must be >= 1, got {max_temperature}")
    if not 0.0 <= final_temperature <= 1.0:
        raise ValueError(f"final_temperature must be in [0, 1], got {final_temperature}")
    hot, geometric, linear = segment_lengths(num_steps)
    log_ratio = math.log(max_temperature) / geometric if geometric else 0.0
    temperatures = [float(max_temperature)] * hot
    temperatures += [max_temperature * math.exp(-k * log_ratio) for k in range(geometric)]
    # numpy.linspace's arithmetic (start + k * step, last value set to the endpoint), so the
    # K = 2700 schedule matches the reference bit for bit in this segment.
    if linear == 1:
        temperatures.append(1.0)
    elif linear > 1:
        step = (final_temperature - 1.0) / (linear - 1)
        temperatures += [1.0 + k * step for k in range(linear - 1)] + [float(final_temperature)]
    return temperatures


@dataclass(frozen=True)
class AnnealedLangevinParams:
    """Hyper-parameters of :class:`AnnealedLangevin` (defaults for the 2-D targets).

    Attributes:
        step_size: ``epsilon``. The update is ULA on ``q^{1/T}`` with ``h = T epsilon^2``, whose
            linear stability (``h L / T < 4`` for curvature ``L / T``) does not depend on ``T``:
            0.1 gives ``h = 0.01`` at ``T = 1``, the ULA default, stable on the 2-D targets.
            MDSM's images use 0.02 (set per family by the experiment matrix).
        max_temperature: ``T_max``. 10 widens a unit-scale 2-D target by ``sqrt(10) ~ 3.2``,
            enough to merge modes a few units apart (mog2, mog8) at the start; MDSM's images
            use 100.
        denoise_sigma: ``sigma_0`` of the final step ``x + sigma_0^2 s(x)``; 0 disables it. The
            default is 0 because the 2-D targets are exact densities, not noise-smoothed models,
            so a Tweedie step would only shrink the samples; MDSM's images use 0.1.
        final_temperature: ``T_final`` where the last (linear) segment ends. 0 (default) is
            MDSM's image schedule, made for a noise-smoothed energy followed by the denoising
            step; on an exact density it ends the chains colder than ``q`` (on gaussian_d the
            1,000-step runs were worse than the 100-step ones), so the tuning protocol
            (docs/tuning.md) also tries 1, which ends on ``q`` itself. Added after cells were
            stored: left out of a cell's identity at its default.
    """

    step_size: float = 0.1
    max_temperature: float = 10.0
    denoise_sigma: float = 0.0
    final_temperature: float = field(default=0.0, metadata={"identity": "omit_default"})

    def __post_init__(self) -> None:
        if not self.step_size > 0:
            raise ValueError(f"annealed_langevin: step_size must be > 0, got {self.step_size}")
        if not self.max_temperature >= 1.0:
            raise ValueError("annealed_langevin: max_temperature must be >= 1, "
                             f"got {self.max_temperature}")
        if not 0.0 <= self.final_temperature <= 1.0:
            raise ValueError("annealed_langevin: final_temperature must be in [0, 1], "
                             f"got {self.final_temperature}")
        if not self.denoise_sigma >= 0.0:
            raise ValueError("annealed_langevin: denoise_sigma must be >= 0, "
                             f"got {self.denoise_sigma}")


@dataclass
class AnnealedLangevinState(ChainState):
    """:class:`ChainState` plus the temperatures of the run.

    Attributes:
        temperatures: the ``num_steps`` values of :func:`temperature_schedule`.
    """

    temperatures: list[float]


class AnnealedLangevin(IterativeSampler):
    """Annealed Langevin dynamics: ULA on ``q^{1/T_k}`` along the MDSM schedule.

    Transition ``k``: ``x <- x + (1/2) epsilon^2 s(x) + sqrt(T_k) epsilon xi`` (equivalently ULA
    on ``q^{1/T_k}`` with ``h = T_k epsilon^2``), ``T_k`` from :func:`temperature_schedule`.
    The returned samples are ``x + sigma_0^2 s(x)`` (Tweedie denoising, MDSM's ``SS_denoise``)
    with the score cached at the final positions, so ``K`` transitions cost ``K + 1``
    evaluations per particle, denoised or not.

    References:
        Z. Li, Y. Chen and F. T. Sommer, "Learning Energy-Based Models in High-Dimensional
        Spaces with Multi-scale Denoising Score Matching", 2019 (arXiv 1910.07762); code:
        github.com/zengyi-li/MDSM.
    """

    name: ClassVar[str] = "annealed_langevin"
    pretty_name: ClassVar[str] = "Annealed Langevin"
    description: ClassVar[str] = ("ULA on q^(1/T) cooled from T_max to 0 (MDSM schedule), "
                                  "optional final denoising step")
    Params: ClassVar[type] = AnnealedLangevinParams

    def not_a_chain(self) -> str:
        return ("sampler 'annealed_langevin' has no ESS: it is non-stationary by design (it "
                "anneals through a sequence of temperatures)")

    def init(self, target: Target, x: Tensor, num_steps: int) -> AnnealedLangevinState:
        """State at ``x`` ``(n, dim)`` with the schedule for ``num_steps``; one score evaluation."""
        return AnnealedLangevinState(
            x=x, log_prob=None, score=target.score(x), step_index=0, num_steps=int(num_steps),
            temperatures=temperature_schedule(num_steps, self.params.max_temperature,
                                              self.params.final_temperature))

    def step(self, target: Target, state: AnnealedLangevinState,
             generator: torch.Generator) -> tuple[AnnealedLangevinState, dict[str, Tensor]]:
        """Transition ``step_index`` of the schedule; one score evaluation.

        ``info``: ``temperature`` ``()`` and ``step_size`` ``()``, the ULA step ``T epsilon^2``.

        Raises:
            ValueError: if the planned ``num_steps`` transitions have all been taken.
        """
        if state.step_index >= len(state.temperatures):
            raise ValueError(f"annealed_langevin was planned for {state.num_steps} steps; "
                             f"step {state.step_index + 1} is beyond its schedule")
        temperature = state.temperatures[state.step_index]
        epsilon = self.params.step_size
        noise = torch.randn(state.x.shape, generator=generator, device=state.x.device,
                            dtype=state.x.dtype)
        x = state.x + 0.5 * epsilon**2 * state.score + math.sqrt(temperature) * epsilon * noise
        new_state = AnnealedLangevinState(
            x=x, log_prob=None, score=target.score(x), step_index=state.step_index + 1,
            num_steps=state.num_steps, temperatures=state.temperatures)
        info = {"temperature": torch.as_tensor(temperature, device=x.device, dtype=x.dtype),
                "step_size": torch.as_tensor(temperature * epsilon**2, device=x.device,
                                             dtype=x.dtype)}
        return new_state, info

    def finalize(self, target: Target, state: AnnealedLangevinState) -> Tensor:
        """``x + sigma_0^2 s(x)`` ``(n, dim)`` from the cached score (no new evaluation)."""
        sigma = self.params.denoise_sigma
        return state.x + sigma**2 * state.score if sigma > 0 else state.x
