"""KL-NS: neural implicit sampler trained on the reverse KL divergence (docs/methods.md#kl-ns)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from samplers.neural.training import NeuralImplicitSampler, NeuralParams, ScoreFunction
from targets.base import Target


@dataclass(frozen=True)
class KLParams(NeuralParams):
    """KL-NS hyper-parameters: only the shared ones (:class:`NeuralParams`).

    ``sigma`` is the DSM noise level of the score network, which estimates the *clean* sampler
    score with an ``O(sigma^2)`` bias, so it should stay small. Samples are clean.
    """


class KLNS(NeuralImplicitSampler):
    """Neural implicit sampler minimising ``KL(p_theta || q)``.

    With ``x = g_theta(z)``, ``grad_theta KL = E_z[J_theta(z)^T (s_theta(x) - s_q(x))]`` (the
    ``E_{p_theta}[grad_theta log p_theta] = 0`` term vanishes), and the unknown ``s_theta`` is
    replaced by the DSM score network. Reverse KL is mode-seeking: on separated mixtures it is
    expected to drop modes.

    References:
        W. Luo, B. Zhang, Z. Zhang, "Entropy-based Training Methods for Scalable Neural
        Implicit Samplers", NeurIPS 2023, arXiv:2306.04952.
    """

    name: ClassVar[str] = "kl_ns"
    pretty_name: ClassVar[str] = "KL-NS"
    description: ClassVar[str] = "neural implicit sampler, reverse KL divergence"
    Params: ClassVar[type] = KLParams

    def surrogate(self, x: Tensor, noise: Tensor, target: Target, score_fn: ScoreFunction,
                  generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """``<sg[s_bar(x) - s_q(x)], x>`` at clean ``x``: one target score, no HVP.

        Args:
            x: ``(n, d)`` generator output with its graph.
            noise: ``(n, d)``, unused (KL-NS works on clean samples).
            target: the target; its score is requested once without a graph.
            score_fn: frozen clean-sampler score ``s_bar``.
            generator: unused.

        Returns:
            ``(n,)`` surrogate and ``{"score_gap": (n,)}``, ``||s_bar - s_q||^2`` per sample.
        """
        points = x.detach()
        target_score = target.score(points)
        with torch.no_grad():
            direction = score_fn(points) - target_score
        surrogate = (direction * x).sum(dim=-1)
        return surrogate, {"score_gap": direction.square().sum(dim=-1)}
