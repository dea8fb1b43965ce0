"""DFT-NS: neural implicit sampler trained by Denoising Fisher Training (docs/methods.md#dft-ns)."""

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


@dataclass(frozen=True)
class DFTParams(NeuralParams):
    """DFT-NS hyper-parameters (shared ones in :class:`NeuralParams`).

    Attributes:
        gradient: ``"full"`` (exact gradient of the objective) or ``"partial"`` (location term
            only, biased; the paper's ablation).
        output: ``"noised"`` returns ``g_theta(z) + sigma * eps``, the quantity the objective
            makes correct; ``"clean"`` returns ``g_theta(z)``, under-dispersed by ``sigma^2``
            per coordinate at the optimum.
    """

    gradient: str = "full"
    output: str = "noised"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("gradient", self.gradient, ("full", "partial"))
        check_choice("output", self.output, ("noised", "clean"))


class DFTNS(NeuralImplicitSampler):
    """Denoising Fisher Training of a neural implicit sampler.

    Minimises the Fisher divergence between the *noised* sampler ``p_{theta,sigma} = p_theta *
    N(0, sigma^2 I)`` and the target, with the target score evaluated at noisy points,

        D(theta) = E_{x_s ~ p_{theta,sigma}} || s_q(x_s) - s_{theta,sigma}(x_s) ||^2 .

    Stein's lemma in ``eps`` (``E<u(x_s), s_{theta,sigma}(x_s)> = E<u(x_s), -eps/sigma>`` for a
    frozen field ``u``) gives the exact gradient ``E[(dx_s/dtheta)^T grad_x f(x_s)]`` with

        f(x) = ||s_q(x) + eps/sigma||^2 - ||s_bar(x) + eps/sigma||^2,  s_bar = sg[s_{theta,sigma}],

    and ``s_bar`` is replaced by the DSM score network. ``grad_x f`` contains the
    Hessian-vector product ``(grad s_q)^T (...)`` of the target, hence ``create_graph=True``;
    without it the gradient is wrong (zero for a location parameter).

    References:
        W. Luo, Z. Deng, "Denoising Fisher Training for Neural Implicit Samplers",
        arXiv:2411.01453 (2024). Reconstructed from the stated objective; see
        docs/methods.md#dft-ns.
    """

    name: ClassVar[str] = "dft_ns"
    pretty_name: ClassVar[str] = "DFT-NS"
    description: ClassVar[str] = ("neural implicit sampler, denoising Fisher training "
                                  "(Fisher divergence of the noised sampler)")
    Params: ClassVar[type] = DFTParams

    def output_noise_scale(self) -> float:
        return float(self.sigma) if self.params.output == "noised" else 0.0

    def surrogate(self, x: Tensor, noise: Tensor, target: Target, score_fn: ScoreFunction,
                  generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """``<c_b, x_b>`` with ``c = sg[grad_{x_s} sum_b f_b]`` at ``x_s = sg[x] + sigma eps``.

        Since ``dx_s/dtheta = dx/dtheta``, the gradient of the mean is the DFT gradient.

        Args:
            x: ``(n, d)`` generator output with its graph.
            noise: ``(n, d)`` ``eps``.
            target: the target; its score is requested once with ``create_graph=True``.
            score_fn: frozen noised-sampler score ``s_bar``.
            generator: unused (the estimator is deterministic given ``eps``).

        Returns:
            ``(n,)`` surrogate and ``{"f": (n,)}``. ``E[f] = D - E||s_phi - s_{theta,sigma}||^2``
            (full), a lower bound on ``D``; for ``"partial"``, ``f`` is the location term.
        """
        sigma = self.sigma
        with torch.enable_grad():
            x_noised = (x.detach() + sigma * noise).requires_grad_(True)
            target_score, other_score = self.target_scores(target, x_noised, generator)
            sampler_score = score_fn(x_noised)
            gap = target_score - sampler_score
            if other_score is target_score:
                if self.params.gradient == "full":
                    # ||a + e||^2 - ||b + e||^2 = <a - b, a + b + 2e>: avoids cancelling two
                    # terms of size ~ d / sigma^2 (eps / sigma dominates for small sigma).
                    f = (gap * (target_score + sampler_score + 2.0 * noise / sigma)).sum(dim=-1)
                else:
                    f = gap.square().sum(dim=-1)
            else:  # two independent unbiased estimates A, B of s_q: f is bilinear in (A, B)
                other_gap = other_score - sampler_score
                if self.params.gradient == "full":
                    # (1/2)[<A - b, B + b + 2e> + <B - b, A + b + 2e>]
                    #   = <A + e, B + e> - ||b + e||^2, whose mean over A, B is f at s_q.
                    shift = sampler_score + 2.0 * noise / sigma
                    f = 0.5 * (gap * (other_score + shift)
                               + other_gap * (target_score + shift)).sum(dim=-1)
                else:
                    f = (gap * other_gap).sum(dim=-1)
            (direction,) = torch.autograd.grad(f.sum(), x_noised)
        return (direction.detach() * x).sum(dim=-1), {"f": f.detach()}

    def target_scores(self, target: Target, x_noised: Tensor,
                      generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """The target score in the two factors of ``f``, with ``create_graph=True``.

        ``f`` is quadratic in ``s_q``, so a noisy (minibatch) score plugged into both factors
        biases it by the estimator's variance (docs/methods.md#minibatch-variants). This
        returns the exact score twice (the same tensor);
        :class:`samplers.neural.minibatch.DFTNSMinibatch` returns two independent minibatch
        estimates instead, making ``f`` and its gradient unbiased.

        Returns:
            ``(A, B)``, each ``(n, d)``; ``B is A`` for a single (exact) evaluation.
        """
        score = target.score(x_noised, create_graph=True)
        return score, score
