"""The four energies of Rezende & Mohamed (2015), Table 1, as targets u1-u4.

Reference: D. Rezende and S. Mohamed, "Variational Inference with Normalizing Flows", ICML 2015.
u2-u4 as published do not decay in x1 (improper on R^2), so each gets a N(0, 2^2) envelope on
x1 (docs/targets.md#rezende-mohamed-energies); u1 is proper as published and is sampled on a fine
grid.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import torch
from torch import Tensor

from targets.base import AnalyticScoreTarget
from targets.grid import GridSampler


def _w1(x1: Tensor) -> tuple[Tensor, Tensor]:
    """``w₁ = sin(2πx₁/4)`` and its derivative."""
    return torch.sin(0.5 * math.pi * x1), 0.5 * math.pi * torch.cos(0.5 * math.pi * x1)


class RezendeMohamedU1(AnalyticScoreTarget):
    """``log q~ = −U₁``, ``U₁ = ½((‖x‖−2)/0.4)² − log(e^{−½((x₁−2)/0.6)²} + e^{−½((x₁+2)/0.6)²})``.

    Rezende & Mohamed (2015), "Variational inference with normalizing flows", Table 1.

    Reference samples come from a 1601² grid (:class:`targets.grid.GridSampler`) over
    ``[−4, 4]²``: outside it ``‖x‖ > 4``, five radial standard deviations (0.4) past the ring of
    radius 2, where ``q~`` is below ``e^{−12.5} ≈ 4e-6`` of its peak (the ``x₁`` factor only
    lowers it further); the measured outside mass is 1e-8. The cell width 0.005 is 1/80 of
    the narrowest length scale (0.4).
    """

    name = "u1"
    pretty_name = "U1"
    description = "Energy U1 of Rezende & Mohamed 2015, Table 1 (ring with two lobes)."
    grid_window: ClassVar[tuple[tuple[float, float], tuple[float, float]]] = ((-4.0, 4.0),
                                                                            (-4.0, 4.0))
    grid_resolution: ClassVar[int] = 1601
    length_scale = 0.4  # radial s.d. of the ring

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__(2, device, dtype)
        self._lobe_centres = self.tensor([2.0, -2.0])
        self._grid: GridSampler | None = None  # built on the first call to sample

    def _lobes(self, x1: Tensor) -> Tensor:
        """``(n, 2)``: the exponents ``−½((x₁ ∓ 2)/0.6)²``."""
        return -0.5 * ((x1[:, None] - self._lobe_centres) / 0.6).square()

    def log_prob(self, x: Tensor) -> Tensor:
        r = torch.linalg.vector_norm(x, dim=-1)
        return -0.5 * ((r - 2) / 0.4).square() + torch.logsumexp(self._lobes(x[:, 0]), dim=-1)

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r = torch.linalg.vector_norm(x, dim=-1)
        lobes = self._lobes(x[:, 0])
        log_prob = -0.5 * ((r - 2) / 0.4).square() + torch.logsumexp(lobes, dim=-1)
        unit = x / r.clamp_min(torch.finfo(x.dtype).tiny)[:, None]
        ring = (-(r - 2) / 0.4**2)[:, None] * unit
        # d/dx₁ logsumexp = Σ_k a_k · (−(x₁ − c_k)/0.36), a = softmax of the lobe exponents.
        weights = torch.softmax(lobes, dim=-1)
        lobe = -(weights * (x[:, :1] - self._lobe_centres)).sum(-1) / 0.6**2
        return log_prob, ring + torch.stack((lobe, torch.zeros_like(lobe)), dim=1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        if self._grid is None:
            self._grid = GridSampler(self.log_prob, self.grid_window, self.grid_resolution,
                                     self.device, self.dtype)
        return self._grid.sample(n, generator)


class _RezendeMohamedConditional(AnalyticScoreTarget):
    """U2–U4 of Rezende & Mohamed (2015), Table 1, each with an added ``−x₁²/8`` envelope.

    ``log q~ = logsumexp_k −½((x₂ − m_k(x₁))/s_k)² − x₁²/8``. As published (without the
    envelope) these do not decay in ``x₁`` and are improper on R²; the suite adds ``−x₁²/8``,
    i.e. a ``N(0, 2²)`` factor on ``x₁`` (docs/targets.md#rezende-mohamed-energies). Exact
    sampler: ``x₂ | x₁`` is the mixture of ``N(m_k(x₁), s_k²)`` with weights ``∝ s_k√(2π)``
    (each component's integral), independent of ``x₁``, so the ``x₁``-marginal is exactly
    ``N(0, 4)``.
    """

    component_stds: ClassVar[tuple[float, ...]]

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__(2, device, dtype)
        self._stds = self.tensor(self.component_stds)

    @abc.abstractmethod
    def _component_means(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        """``m_k(x₁)`` and ``m_k'(x₁)``, both ``(n, K)``."""

    def _exponents(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        means, slopes = self._component_means(x[:, 0])
        standardised = (x[:, 1:] - means) / self._stds  # (n, K)
        return -0.5 * standardised.square(), standardised, slopes

    def log_prob(self, x: Tensor) -> Tensor:
        exponents, _, _ = self._exponents(x)
        return torch.logsumexp(exponents, dim=-1) - x[:, 0].square() / 8

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        exponents, standardised, slopes = self._exponents(x)
        log_prob = torch.logsumexp(exponents, dim=-1) - x[:, 0].square() / 8
        # ∂/∂x₂ of exponent k is −(x₂ − m_k)/s_k²; ∂/∂x₁ is +(x₂ − m_k)/s_k² · m_k'.
        pull = torch.softmax(exponents, dim=-1) * standardised / self._stds
        score1 = (pull * slopes).sum(-1) - x[:, 0] / 4
        return log_prob, torch.stack((score1, -pull.sum(-1)), dim=1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        x1 = 2 * self.randn(n, generator=generator)
        component = torch.multinomial(self._stds / self._stds.sum(), n, replacement=True,
                                      generator=generator)
        means, _ = self._component_means(x1)
        mean = means.gather(1, component[:, None]).squeeze(1)
        x2 = mean + self._stds[component] * self.randn(n, generator=generator)
        return torch.stack((x1, x2), dim=1)


class RezendeMohamedU2(_RezendeMohamedConditional):
    """``U₂ = ½((x₂ − w₁)/0.4)²``, ``w₁ = sin(2πx₁/4)``; ``log q~ = −U₂ − x₁²/8``."""

    name = "u2"
    pretty_name = "U2"
    description = "Energy U2 of Rezende & Mohamed 2015, Table 1, times a N(0, 4) envelope on x₁."
    component_stds = (0.4,)
    length_scale = 0.4

    def _component_means(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        w1, dw1 = _w1(x1)
        return w1[:, None], dw1[:, None]


class RezendeMohamedU3(_RezendeMohamedConditional):
    """``U₃ = −log(e^{−½((x₂−w₁)/0.35)²} + e^{−½((x₂−w₁+w₂)/0.35)²})``; ``log q~ = −U₃ − x₁²/8``.

    ``w₂ = 3e^{−½((x₁−1)/0.6)²}``.
    """

    name = "u3"
    pretty_name = "U3"
    description = "Energy U3 of Rezende & Mohamed 2015, Table 1, times a N(0, 4) envelope on x₁."
    component_stds = (0.35, 0.35)
    length_scale = 0.35

    def _component_means(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        w1, dw1 = _w1(x1)
        w2 = 3 * torch.exp(-0.5 * ((x1 - 1) / 0.6).square())
        dw2 = -w2 * (x1 - 1) / 0.6**2
        return torch.stack((w1, w1 - w2), dim=1), torch.stack((dw1, dw1 - dw2), dim=1)


class RezendeMohamedU4(_RezendeMohamedConditional):
    """``U₄ = −log(e^{−½((x₂−w₁)/0.4)²} + e^{−½((x₂−w₁+w₃)/0.35)²})``, ``w₃ = 3σ((x₁−1)/0.3)``.

    ``log q~ = −U₄ − x₁²/8``.
    """

    name = "u4"
    pretty_name = "U4"
    description = "Energy U4 of Rezende & Mohamed 2015, Table 1, times a N(0, 4) envelope on x₁."
    component_stds = (0.4, 0.35)
    length_scale = 0.35

    def _component_means(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        w1, dw1 = _w1(x1)
        sigmoid = torch.sigmoid((x1 - 1) / 0.3)
        w3 = 3 * sigmoid
        dw3 = 3 * sigmoid * (1 - sigmoid) / 0.3
        return torch.stack((w1, w1 - w3), dim=1), torch.stack((dw1, dw1 - dw3), dim=1)
