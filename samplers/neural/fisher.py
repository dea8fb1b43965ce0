"""Fisher-NS: neural implicit sampler trained on the Fisher divergence.

See docs/methods.md#fisher-ns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from samplers.neural.training import (
    NeuralImplicitSampler,
    NeuralParams,
    ScoreFunction,
    check_choice,
)
from targets.base import Target


def divergence(field: Tensor, x: Tensor, exact: bool,
               generator: torch.Generator | None = None) -> Tensor:
    """``div field(x)`` per sample, differentiable in ``x`` (the graph is kept).

    Args:
        field: ``(n, d)`` values of a vector field computed from ``x`` with a graph.
        x: ``(n, d)`` the points, requiring grad.
        exact: sum of ``d`` per-coordinate derivatives (``d`` backward passes; a loop over
            coordinates, not samples) or Hutchinson's estimator ``E[rho^T (grad field) rho]``
            with one Rademacher probe ``rho`` per sample (unbiased, one backward pass).
        generator: source of the probes (required when ``exact`` is false).

    Returns:
        ``(n,)`` divergences.
    """
    if exact:
        total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for index in range(x.shape[1]):
            (row,) = torch.autograd.grad(field[:, index].sum(), x, create_graph=True,
                                         allow_unused=True)
            if row is not None:  # None: this component does not depend on x at all
                total = total + row[:, index]
        return total
    if generator is None:
        raise ValueError("Hutchinson divergence needs a torch.Generator for its probes")
    probe = torch.randint(0, 2, x.shape, generator=generator, device=x.device)
    probe = (2 * probe - 1).to(x.dtype)
    (product,) = torch.autograd.grad((field * probe).sum(), x, create_graph=True,
                                     allow_unused=True)
    if product is None:
        return torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    return (product * probe).sum(dim=-1)


@dataclass(frozen=True)
class FisherParams(NeuralParams):
    """Fisher-NS hyper-parameters (shared ones in :class:`NeuralParams`).

    Attributes:
        gradient: ``"full"`` (exact gradient, needs divergences and third derivatives of
            ``log q~``) or ``"location"`` (``f = ||s_bar - s_q||^2``, biased ablation).
        exact_divergence_max_dim: exact per-coordinate divergences up to this dimension,
            Hutchinson with Rademacher probes above it.
    """

    gradient: str = "full"
    exact_divergence_max_dim: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("gradient", self.gradient, ("full", "location"))
        if int(self.exact_divergence_max_dim) < 0:
            raise ValueError("parameter 'exact_divergence_max_dim' must be non-negative")


class FisherNS(NeuralImplicitSampler):
    """Neural implicit sampler minimising the Fisher divergence ``E_{p_theta}||s_theta - s_q||^2``.

    Integrating by parts, ``E||s_theta||^2 = -E div s_theta`` and ``E<s_theta, s_q> =
    -E div s_q``, and the exact gradient is ``E_z[J_theta^T grad_x f(x)]`` with ``s_bar =
    sg[s_theta]`` frozen and

        f = ||s_q||^2 + 2 div s_q - ||s_bar||^2 - 2 div s_bar,

    where ``s_bar`` is replaced by the DSM score network (small ``sigma``). ``grad_x div s_q``
    needs third derivatives of ``log q~`` (double backprop through the target score).

    References:
        W. Luo, B. Zhang, Z. Zhang, "Entropy-based Training Methods for Scalable Neural
        Implicit Samplers", NeurIPS 2023, arXiv:2306.04952.
    """

    name: ClassVar[str] = "fisher_ns"
    pretty_name: ClassVar[str] = "Fisher-NS"
    description: ClassVar[str] = "neural implicit sampler, Fisher divergence of the clean sampler"
    Params: ClassVar[type] = FisherParams

    def surrogate(self, x: Tensor, noise: Tensor, target: Target, score_fn: ScoreFunction,
                  generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """``<sg[grad_x f], x>`` at clean ``x``.

        Args:
            x: ``(n, d)`` generator output with its graph.
            noise: ``(n, d)``, unused (Fisher-NS works on clean samples).
            target: the target; its score is requested once with ``create_graph=True``.
            score_fn: frozen clean-sampler score ``s_bar``, differentiable in its input.
            generator: Rademacher probes when ``d > exact_divergence_max_dim``.

        Returns:
            ``(n,)`` surrogate and ``{"f": (n,)}``.
        """
        exact = x.shape[1] <= self.params.exact_divergence_max_dim
        with torch.enable_grad():
            points = x.detach().requires_grad_(True)
            target_score = target.score(points, create_graph=True)
            sampler_score = score_fn(points)
            if self.params.gradient == "full":
                f = (target_score.square().sum(dim=-1)
                     + 2.0 * divergence(target_score, points, exact, generator)
                     - sampler_score.square().sum(dim=-1)
                     - 2.0 * divergence(sampler_score, points, exact, generator))
            else:
                f = (sampler_score - target_score).square().sum(dim=-1)
            (direction,) = torch.autograd.grad(f.sum(), points)
        return (direction.detach() * x).sum(dim=-1), {"f": f.detach()}
