"""The two-dimensional targets (docs/targets.md#two-dimensional-targets), with analytic scores
and reference samplers.

Every target here has an exact sampler except ``u1`` (fine-grid sampler, :mod:`targets.grid`).
Log-densities are unnormalised; additive constants are dropped freely, except where a term
depending on ``x`` must stay (the funnel's ``−x₂/2``; docs/targets.md#two-dimensional-targets).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from targets.base import AnalyticScoreTarget, Modes


class StandardGaussian(AnalyticScoreTarget):
    """``log q~(x) = −½‖x‖²`` on R²: the sanity-check target."""

    name = "gaussian"
    pretty_name = "Gaussian"
    description = "Standard normal N(0, I) on R^2 (sanity check)."
    length_scale = 1.0

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__(2, device, dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        return -0.5 * x.square().sum(-1)

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.log_prob(x), -x

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.randn(n, self.dim, generator=generator)


class GaussianMixture(AnalyticScoreTarget):
    """Mixture of isotropic Gaussians ``Σ_k w_k N(μ_k, σ² I)``; shared by mog2, mog2w, mog8.

    ``log q~(x) = logsumexp_k (log w_k − ‖x − μ_k‖² / 2σ²)`` (the common ``(2πσ²)^{-d/2}`` is
    dropped); score ``Σ_k r_k(x) (μ_k − x) / σ²`` with responsibilities ``r = softmax``.

    Args:
        means: ``(K, d)`` component centres.
        weights: ``(K,)`` positive mixing weights (normalised here).
        std: the common component standard deviation σ.
    """

    def __init__(self, means: Sequence[Sequence[float]], weights: Sequence[float], std: float,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        means64 = torch.as_tensor(means, dtype=torch.float64)
        weights64 = torch.as_tensor(weights, dtype=torch.float64)
        super().__init__(means64.shape[1], device, dtype)
        self.means = self.tensor(means64)
        self.weights = self.tensor(weights64 / weights64.sum())
        self.std = float(std)
        self._log_weights = self.tensor((weights64 / weights64.sum()).log())

    def _component_log_probs(self, x: Tensor) -> Tensor:
        """``(n, K)``: ``log w_k − ‖x − μ_k‖² / 2σ²``."""
        squared = (x[:, None, :] - self.means).square().sum(-1)
        return self._log_weights - 0.5 * squared / self.std**2

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self._component_log_probs(x), dim=-1)

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        components = self._component_log_probs(x)
        log_prob = torch.logsumexp(components, dim=-1)
        responsibilities = torch.exp(components - log_prob[:, None])
        # Σ_k r_k (μ_k − x) = r @ μ − x because the responsibilities sum to one.
        return log_prob, (responsibilities @ self.means - x) / self.std**2

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return self.means[component] + self.std * self.randn(n, self.dim, generator=generator)

    def modes(self) -> Modes:
        return Modes(locations=self.means, weights=self.weights)


class MoG2(GaussianMixture):
    """Equal mixture of ``N((−2,−2), I)`` and ``N((2,2), I)``: two separated modes."""

    name = "mog2"
    pretty_name = "MoG-2"
    description = "Equal mixture of N(±(2,2), I): two separated modes."
    length_scale = 1.0  # component s.d.

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__([[-2.0, -2.0], [2.0, 2.0]], [0.5, 0.5], 1.0, device, dtype)


class MoG2Weighted(GaussianMixture):
    """mog2 with weights 0.8 on ``(−2,−2)`` and 0.2 on ``(2,2)``: mixing-weight sensitivity."""

    name = "mog2w"
    pretty_name = "MoG-2 (0.8/0.2)"
    description = "mog2 with weights 0.8/0.2: mixing-weight sensitivity."
    length_scale = 1.0  # component s.d.

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__([[-2.0, -2.0], [2.0, 2.0]], [0.8, 0.2], 1.0, device, dtype)


class MoG8(GaussianMixture):
    """Equal mixture of ``N(μ_k, 0.25 I)``, ``μ_k = 3(cos 2πk/8, sin 2πk/8)``: a ring of 8 modes."""

    name = "mog8"
    pretty_name = "MoG-8"
    description = "Ring of 8 equal modes N(3(cos 2πk/8, sin 2πk/8), 0.25 I)."
    length_scale = 0.5  # component s.d.

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        angles = [2.0 * math.pi * k / 8 for k in range(8)]
        means = [[3.0 * math.cos(a), 3.0 * math.sin(a)] for a in angles]
        super().__init__(means, [1.0] * 8, 0.5, device, dtype)


class Donut(AnalyticScoreTarget):
    """``log q~(x) = −(‖x‖ − 2.6)² / 0.033`` (chi-feng/mcmc-demo "donut").

    Exact sampler: angle uniform; in polar coordinates the radius has density
    ``f(r) ∝ r·exp(−(r − m)²/2s²)``, ``m = 2.6``, ``s² = 0.033/2``. Propose ``r ~ N(r*, s²)`` with
    ``r*`` the mode of ``f`` (the root of ``r² − m r − s² = 0``); then
    ``f/proposal ∝ r·exp(−r/r*)`` (using ``(r* − m)/s² = 1/r*``), maximal at ``r = r*``, so accept
    with probability ``(r/r*)·exp(1 − r/r*)`` (and never for ``r ≤ 0``). Acceptance is ≈ 0.999.
    """

    name = "donut"
    pretty_name = "Donut"
    description = "Ring −(‖x‖−2.6)²/0.033 (chi-feng/mcmc-demo)."
    length_scale = math.sqrt(0.033 / 2)  # radial s.d. of the ring, 0.128
    radius: ClassVar[float] = 2.6
    width: ClassVar[float] = 0.033

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__(2, device, dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        return -(torch.linalg.vector_norm(x, dim=-1) - self.radius).square() / self.width

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r = torch.linalg.vector_norm(x, dim=-1)
        log_prob = -(r - self.radius).square() / self.width
        # d/dx of −(r − m)²/w is −2(r − m)/w · x/r; at x = 0 the clamp gives the subgradient 0.
        unit = x / r.clamp_min(torch.finfo(x.dtype).tiny)[:, None]
        return log_prob, (-2.0 * (r - self.radius) / self.width)[:, None] * unit

    def _sample_radius(self, n: int, generator: torch.Generator) -> Tensor:
        s = math.sqrt(self.width / 2)
        mode = (self.radius + math.sqrt(self.radius**2 + 4 * s**2)) / 2
        accepted: list[Tensor] = []
        remaining = n
        while remaining > 0:  # rounds, not samples: one round almost always suffices
            count = int(1.05 * remaining) + 16
            r = mode + s * self.randn(count, generator=generator)
            ratio = (r / mode) * torch.exp(1 - r / mode)
            keep = r[(r > 0) & (self.rand(count, generator=generator) < ratio)]
            accepted.append(keep[:remaining])
            remaining -= accepted[-1].shape[0]
        return torch.cat(accepted)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        r = self._sample_radius(n, generator)
        angle = 2 * math.pi * self.rand(n, generator=generator)
        return torch.stack((r * torch.cos(angle), r * torch.sin(angle)), dim=1)


class Rosenbrock(AnalyticScoreTarget):
    """``log q~(x) = −[100(x₂ − x₁²)² + (1 − x₁)²]/20`` (Goodman & Weare 2010).

    Gaussian in ``(x₁, x₂ − x₁²)``: ``(1 − x₁)²/20 = (x₁ − 1)²/(2·10)`` gives ``x₁ ~ N(1, 10)``
    and ``100u²/20 = u²/(2·0.1)`` gives ``x₂ | x₁ ~ N(x₁², 0.1)``; so ``E[x₂] = E[x₁²] = 11``.
    """

    name = "rosenbrock"
    pretty_name = "Rosenbrock"
    description = "−[100(x₂−x₁²)²+(1−x₁)²]/20 (Goodman & Weare 2010)."
    length_scale = math.sqrt(0.1)  # s.d. of x₂ − x₁² across the valley, 0.316

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__(2, device, dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        x1, x2 = x[:, 0], x[:, 1]
        return -(100 * (x2 - x1.square()).square() + (1 - x1).square()) / 20

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = x[:, 0], x[:, 1]
        u = x2 - x1.square()
        log_prob = -(100 * u.square() + (1 - x1).square()) / 20
        score = torch.stack((20 * x1 * u - (x1 - 1) / 10, -10 * u), dim=1)
        return log_prob, score

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        z = self.randn(n, 2, generator=generator)
        x1 = 1 + math.sqrt(10.0) * z[:, 0]
        return torch.stack((x1, x1.square() + math.sqrt(0.1) * z[:, 1]), dim=1)


class Funnel(AnalyticScoreTarget):
    """Neal's funnel (Neal 2003): ``log N(v; 0, 3²) + Σ_i log N(x_i; 0, e^v)``, ``v = x_d``.

    In 2-D (``funnel``) ``v = x₂``. The normaliser of ``N(x_i; 0, e^v)`` depends on ``v`` and is
    kept (``−(d−1)v/2``): dropping it would shift the ``v``-marginal to ``N(4.5(d−1), 9)``.
    ``log q~ = −v²/18 − ½e^{−v}Σx_i² − (d−1)v/2``. Exact: ``v ~ N(0, 9)``, ``x_i ~ N(0, e^v)``.
    """

    name = "funnel"
    pretty_name = "Funnel"
    description = "Neal's funnel: x₂ ~ N(0, 9), x₁ | x₂ ~ N(0, e^{x₂}) (Neal 2003)."
    # s.d. of x₁ at v = −3, one s.d. below the neck's mean (16% of the mass lies deeper,
    # where the neck narrows without bound): e^{−3/2} = 0.22.
    length_scale = math.exp(-1.5)
    neck_std: ClassVar[float] = 3.0

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__(2, device, dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        v, rest = x[:, -1], x[:, :-1]
        return (-0.5 * (v / self.neck_std).square() - 0.5 * torch.exp(-v) * rest.square().sum(-1)
                - 0.5 * (self.dim - 1) * v)

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        v, rest = x[:, -1], x[:, :-1]
        precision = torch.exp(-v)
        half_sq = 0.5 * precision * rest.square().sum(-1)
        log_prob = -0.5 * (v / self.neck_std).square() - half_sq - 0.5 * (self.dim - 1) * v
        neck = -v / self.neck_std**2 + half_sq - 0.5 * (self.dim - 1)
        return log_prob, torch.cat((-precision[:, None] * rest, neck[:, None]), dim=1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        z = self.randn(n, self.dim, generator=generator)
        v = self.neck_std * z[:, -1:]
        return torch.cat((torch.exp(v / 2) * z[:, :-1], v), dim=1)


class _TriangularGaussianMap(AnalyticScoreTarget):
    """``log q~(x) = log N(T(x); loc, Σ)`` for a triangular map ``T`` with unit Jacobian.

    ``T`` has unit Jacobian determinant, so ``x = T⁻¹(y)``, ``y ~ N(loc, Σ)`` is exact; the score
    is ``J_T(x)ᵀ g`` with ``g = −Σ⁻¹(T(x) − loc)``.
    """

    loc: ClassVar[tuple[float, float]] = (0.0, 0.0)
    covariance: ClassVar[tuple[tuple[float, float], tuple[float, float]]]

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__(2, device, dtype)
        covariance = torch.tensor(self.covariance, dtype=torch.float64)
        self._loc = self.tensor(self.loc)
        self._precision = self.tensor(torch.linalg.inv(covariance))
        self._cholesky = self.tensor(torch.linalg.cholesky(covariance))

    @abc.abstractmethod
    def _forward(self, x: Tensor) -> Tensor:
        """``T(x)``, ``(n, 2) -> (n, 2)``."""

    @abc.abstractmethod
    def _vjp(self, x: Tensor, g: Tensor) -> Tensor:
        """``J_T(x)ᵀ g``, ``(n, 2), (n, 2) -> (n, 2)``."""

    @abc.abstractmethod
    def _inverse(self, y: Tensor) -> Tensor:
        """``T⁻¹(y)``, ``(n, 2) -> (n, 2)``."""

    def log_prob(self, x: Tensor) -> Tensor:
        centred = self._forward(x) - self._loc
        return -0.5 * ((centred @ self._precision) * centred).sum(-1)

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        centred = self._forward(x) - self._loc
        g = -(centred @ self._precision)  # Σ⁻¹ is symmetric
        return 0.5 * (g * centred).sum(-1), self._vjp(x, g)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        y = self._loc + self.randn(n, 2, generator=generator) @ self._cholesky.T
        return self._inverse(y)


class Squiggle(_TriangularGaussianMap):
    """``log N((x₁, x₂ + sin 5x₁); 0, [[2, .25], [.25, .5]])`` (chi-feng/mcmc-demo "squiggle")."""

    name = "squiggle"
    pretty_name = "Squiggle"
    description = "N((x₁, x₂+sin 5x₁); 0, [[2,.25],[.25,.5]]) (chi-feng/mcmc-demo)."
    length_scale = math.sqrt(0.5 - 0.25**2 / 2)  # s.d. of x₂ + sin 5x₁ given x₁, 0.68
    covariance = ((2.0, 0.25), (0.25, 0.5))

    def _forward(self, x: Tensor) -> Tensor:
        return torch.stack((x[:, 0], x[:, 1] + torch.sin(5 * x[:, 0])), dim=1)

    def _vjp(self, x: Tensor, g: Tensor) -> Tensor:
        return torch.stack((g[:, 0] + 5 * torch.cos(5 * x[:, 0]) * g[:, 1], g[:, 1]), dim=1)

    def _inverse(self, y: Tensor) -> Tensor:
        return torch.stack((y[:, 0], y[:, 1] - torch.sin(5 * y[:, 0])), dim=1)


class Banana(_TriangularGaussianMap):
    """``log N((x₁/2, 2x₂ + 0.4(x₁² + 4)); (0, 4), [[1, .5], [.5, 1]])`` (chi-feng/mcmc-demo).

    The map's Jacobian ``[[1/2, 0], [0.8x₁, 2]]`` has determinant 1, so no Jacobian term arises.
    """

    name = "banana"
    pretty_name = "Banana"
    description = "N((x₁/2, 2x₂+0.4(x₁²+4)); (0,4), [[1,.5],[.5,1]]) (chi-feng/mcmc-demo)."
    length_scale = math.sqrt(0.75) / 2  # s.d. of x₂ given x₁ (the map scales it by 1/2)
    loc = (0.0, 4.0)
    covariance = ((1.0, 0.5), (0.5, 1.0))

    def _forward(self, x: Tensor) -> Tensor:
        x1 = x[:, 0]
        return torch.stack((x1 / 2, 2 * x[:, 1] + 0.4 * (x1.square() + 4)), dim=1)

    def _vjp(self, x: Tensor, g: Tensor) -> Tensor:
        return torch.stack((0.5 * g[:, 0] + 0.8 * x[:, 0] * g[:, 1], 2 * g[:, 1]), dim=1)

    def _inverse(self, y: Tensor) -> Tensor:
        x1 = 2 * y[:, 0]
        return torch.stack((x1, (y[:, 1] - 0.4 * (x1.square() + 4)) / 2), dim=1)


# -- Rezende & Mohamed (2015), Table 1 ---------------------------------------------------------
