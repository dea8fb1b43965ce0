"""Stochastic gradient Langevin dynamics (SGLD) for large-N Bayesian models.

Welling & Teh (2011): the Langevin update of :mod:`samplers.langevin` with the full score
replaced by an unbiased minibatch estimate (likelihood gradient over ``m`` rows scaled by
``N/m``) and a decreasing step size, with no Metropolis correction:

    x' = x + (h_t / 2) s_hat(x) + sqrt(h_t) xi,      h_t = h_0 (1 + t / t_0)^(-gamma).

With ``sum h_t = inf`` and ``sum h_t^2 < inf`` (``0.5 < gamma <= 1``) the minibatch noise
vanishes relative to the injected noise and the chain targets the posterior; with a finite
budget it is biased like ULA. Targets without a ``minibatch_score`` method get the full score,
which makes this ULA with a decreasing step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from samplers.base import ChainState, IterativeSampler
from samplers.langevin import langevin_proposal
from targets.base import Target


@dataclass(frozen=True)
class SGLDParams:
    """Hyper-parameters of :class:`SGLD`.

    Attributes:
        step_size: ``h_0``, the first step. 1e-4 suits posteriors a few hundred data points
            wide at unit feature scale; tune per target (BLR overrides live in the matrix).
        batch_size: ``m`` rows per score estimate (the SVGD paper's BLR used 100). A target
            with ``N <= m`` gets its exact score.
        decay_exponent: ``gamma`` of the schedule; 0.55 is Welling & Teh's choice, inside the
            convergent range ``(0.5, 1]``.
        decay_steps: ``t_0``: steps after which ``h`` has shrunk by ``2^-gamma``.
    """

    step_size: float = 1e-4
    batch_size: int = 100
    decay_exponent: float = 0.55
    decay_steps: float = 100.0

    def __post_init__(self) -> None:
        if not self.step_size > 0:
            raise ValueError(f"sgld: step_size must be > 0, got {self.step_size}")
        if int(self.batch_size) < 1:
            raise ValueError(f"sgld: batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.decay_exponent <= 1.0:
            raise ValueError(f"sgld: decay_exponent must be in [0, 1], got {self.decay_exponent}")
        if not self.decay_steps > 0:
            raise ValueError(f"sgld: decay_steps must be > 0, got {self.decay_steps}")


class SGLD(IterativeSampler):
    """Stochastic gradient Langevin dynamics with a polynomially decreasing step.

    ``init`` evaluates the *full* score once (it is given no generator to draw a batch); every
    step then moves with the cached estimate and draws a fresh minibatch score at the new
    positions, so ``K`` steps cost ``1 + K m / N`` full evaluations per particle, which the
    counting wrapper records as such. Chains share each minibatch (one batch per step).

    References:
        M. Welling and Y. W. Teh, "Bayesian Learning via Stochastic Gradient Langevin
        Dynamics", ICML 2011.
    """

    name: ClassVar[str] = "sgld"
    pretty_name: ClassVar[str] = "SGLD"
    description: ClassVar[str] = ("stochastic gradient Langevin dynamics: minibatch score "
                                  "(N/m-scaled), decreasing step, no MH correction")
    Params: ClassVar[type] = SGLDParams

    def not_a_chain(self) -> str:
        return ("sampler 'sgld' has no ESS: its step size decreases every transition, so its "
                "chain is time-inhomogeneous")

    def step_size_at(self, step_index: int) -> float:
        """``h_t`` for transition ``t = step_index`` (0-based)."""
        p = self.params
        return p.step_size * (1.0 + step_index / p.decay_steps) ** (-p.decay_exponent)

    def _score(self, target: Target, x: Tensor, generator: torch.Generator) -> Tensor:
        # The exact score on a target without a data set (Target.minibatch_score).
        return target.minibatch_score(x, int(self.params.batch_size), generator)

    def init(self, target: Target, x: Tensor, num_steps: int) -> ChainState:
        """State at ``x`` ``(n, dim)``: one full score evaluation."""
        return ChainState(x=x, log_prob=None, score=target.score(x), step_index=0,
                          num_steps=int(num_steps))

    def step(self, target: Target, state: ChainState,
             generator: torch.Generator) -> tuple[ChainState, dict[str, Tensor]]:
        """One SGLD move; one minibatch score at the new positions (cached for the next step).

        ``info``: ``step_size`` ``()``, the ``h_t`` this transition used.
        """
        step_size = self.step_size_at(state.step_index)
        x = langevin_proposal(state.x, state.score, step_size, generator)
        new_state = ChainState(x=x, log_prob=None, score=self._score(target, x, generator),
                               step_index=state.step_index + 1, num_steps=state.num_steps)
        return new_state, {"step_size": torch.as_tensor(step_size, device=x.device,
                                                        dtype=x.dtype)}


__all__ = ["SGLD", "SGLDParams"]
