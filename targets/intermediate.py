"""Intermediate-dimension targets between the 2-D toys and images.

See docs/targets.md#intermediate-dimension.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from targets.base import AnalyticScoreTarget, Target
from targets.toy2d import Funnel


def _check_dim(name: str, dim: int) -> int:
    if int(dim) != dim or dim < 2:
        raise ValueError(f"target '{name}' needs an integer dim >= 2, got {dim!r}")
    return int(dim)


class CorrelatedGaussian(AnalyticScoreTarget):
    """``N(μ, Σ)`` on R^d, correlated and anisotropic with condition number exactly 100.

    ``Σ = Q diag(λ) Qᵀ`` with variances ``λ_i = 10^{−1 + 2i/(d−1)}`` log-spaced over
    ``[0.1, 10]`` (so ``λ_max/λ_min = 100`` for every ``d``: standard deviations from 0.32 to
    3.2) and ``Q`` a Haar-random rotation: the QR factor of a standard normal ``d × d`` matrix
    drawn in float64 on CPU from ``torch.Generator`` seeded with :attr:`rotation_seed`, with the
    signs fixed by ``diag(R) > 0`` (which makes ``Q`` unique, hence identical across machines up
    to rounding). ``μ = 0``. Everything is built in float64 on CPU and then moved.

    ``log q~(x) = −½ (x − μ)ᵀ Σ⁻¹ (x − μ)``; score ``−Σ⁻¹(x − μ)``; exact samples
    ``μ + Q diag(√λ) z``.

    Args:
        dim: dimension ``d >= 2`` (the benchmark uses 10, 50, 100).

    Attributes:
        mean: ``(d,)``.
        covariance: ``(d, d)``.
        precision: ``(d, d)``, ``Σ⁻¹``.
        eigenvalues: ``(d,)``, the variances ``λ`` along the columns of ``rotation``.
        rotation: ``(d, d)`` orthogonal ``Q``.
    """

    name = "gaussian_d"
    pretty_name = "Gaussian-d"
    description = "Correlated Gaussian in d dims, condition number 100, fixed random rotation."
    condition_number: ClassVar[float] = 100.0
    rotation_seed: ClassVar[int] = 20_150_101

    def __init__(self, dim: int = 10, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(_check_dim(self.name, dim), device, dtype)
        d = self.dim
        eigenvalues = torch.logspace(-1.0, 1.0, d, dtype=torch.float64)
        generator = torch.Generator(device="cpu").manual_seed(self.rotation_seed)
        q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r))
        self.mean = self.tensor(torch.zeros(d, dtype=torch.float64))
        self.covariance = self.tensor((q * eigenvalues) @ q.T)
        self.precision = self.tensor((q / eigenvalues) @ q.T)
        self.eigenvalues = self.tensor(eigenvalues)
        self.rotation = self.tensor(q)
        self._scale = self.tensor(q * eigenvalues.sqrt())  # Q diag(√λ)
        self.length_scale = math.sqrt(float(eigenvalues.min()))  # narrowest direction, 0.32

    def log_prob(self, x: Tensor) -> Tensor:
        centred = x - self.mean
        return -0.5 * ((centred @ self.precision) * centred).sum(-1)

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        centred = x - self.mean
        score = -(centred @ self.precision)  # Σ⁻¹ is symmetric
        return 0.5 * (score * centred).sum(-1), score

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.mean + self.randn(n, self.dim, generator=generator) @ self._scale.T


class FunnelD(Funnel):
    """Neal's funnel in ``d`` dims (Neal 2003): ``x_d ~ N(0, 9)``, ``x_i | x_d ~ N(0, e^{x_d})``.

    Same density, score and exact sampler as the 2-D ``funnel`` (see :class:`targets.toy2d.Funnel`,
    normaliser ``−(d−1)x_d/2`` kept); the neck variable is the last coordinate.

    Args:
        dim: dimension ``d >= 2`` (the benchmark uses 10).
    """

    name = "funnel_d"
    pretty_name = "Funnel-d"
    description = "Neal's funnel in d dims: x_d ~ N(0, 9), others N(0, e^{x_d}) (Neal 2003)."

    def __init__(self, dim: int = 10, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        Target.__init__(self, _check_dim(self.name, dim), device, dtype)
