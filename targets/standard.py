"""Standard multimodal targets of the recent sampler literature: ``gmm40`` and ``manywell32``.

* ``gmm40``: 40 equal-weight unit-covariance Gaussians in 2-D with means uniform in
  ``[−40, 40]²`` (Midgley et al., "Flow annealed importance sampling bootstrap", ICLR 2023;
  also iDEM, Akhound-Sadegh et al. 2024, and Blessing et al., "Beyond ELBOs", ICML 2024).
* ``manywell32``: 16 independent copies of a 2-D double well, ``2¹⁶`` modes (Noé et al.,
  "Boltzmann generators", Science 2019, for the double well; Midgley et al. 2023 for the
  32-dimensional product).

Both have exact samplers, so every reference-based metric and its floor applies. ``manywell32``
exposes its modes as :class:`FactorisedModes` (one local mode per well, not ``2¹⁶`` centres);
``benchmark.metrics.modes`` counts per-well coverage for it (see that class).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from targets.base import AnalyticScoreTarget, Modes
from targets.toy2d import GaussianMixture

# -- gmm40 -------------------------------------------------------------------------------------

#: The 40 component means of ``gmm40``, ``(40, 2)``. Generated once, in float32 on CPU, by
#:
#:     torch.manual_seed(0); means = (torch.rand(40, 2) - 0.5) * 2 * 40
#:
#: (torch 2.x; the same draw as FAB's reference implementation of its GMM target) and printed
#: rounded to 6 decimals. This table, not the RNG, defines the target: it stays the same whatever
#: a future library version's generator does.
GMM40_MEANS: tuple[tuple[float, float], ...] = (
    (-0.299473, 21.457745), (-32.921806, -29.437561), (-15.406175, 10.726295),
    (-0.792527, 31.715580), (-3.549762, 10.584502), (-12.088523, -7.862616),
    (-38.213940, -26.491283), (-16.488924, 1.481743), (15.813408, 24.000912),
    (-27.117643, -17.418514), (14.528685, 33.215519), (-8.232007, 29.932470),
    (-6.447334, 4.232564), (36.219048, -37.106815), (-25.181519, -10.126610),
    (-15.591998, 34.560032), (-25.927185, -18.413315), (-27.945618, -37.462440),
    (-23.349619, 34.383923), (17.848736, 19.386902), (2.103662, -20.507339),
    (6.767387, -37.347790), (-28.902649, -20.621201), (25.237518, 23.452850),
    (-17.739801, -1.443295), (25.582428, 39.765324), (15.875287, 5.403714),
    (26.819454, -23.552094), (7.453761, -31.012220), (-27.723446, -20.663342),
    (18.098923, 16.086416), (-23.694099, 12.084284), (21.958881, -5.048695),
    (1.527262, 9.268188), (24.815063, 38.407764), (-30.824944, -14.658790),
    (15.720396, 33.141975), (34.808292, 35.294270), (7.960582, -34.783306),
    (3.679700, -25.024214),
)


class GMM40(GaussianMixture):
    """Equal mixture of 40 Gaussians ``N(μ_k, I)`` in 2-D, ``μ_k`` uniform in ``[−40, 40]²``.

    The FAB benchmark target (Midgley et al. 2023): modes far apart relative to their width,
    so a sampler must travel ~tens of length scales between them. The means are the literal
    table :data:`GMM40_MEANS`; their nearest-neighbour distances range from 1.2 (two pairs
    nearly merge into single bumps) to 16.5. ``log q~``, the score (responsibilities through
    ``logsumexp``, so stable far from every mean), the exact sampler and :meth:`modes` are those
    of :class:`targets.toy2d.GaussianMixture`. FAB's and iDEM's code give the components a
    diagonal covariance ``softplus(log_var_scaling)²``; here, as in the problem statement,
    the covariance is the identity.

    ``initial_positions``: uniform on the box ``[−40, 40]²``, the law the means were drawn from,
    instead of the default ``N(0, I)``, which sits inside a few of the 40 modes and would hand
    iterative samplers the answer for those and no chance at the others. Uniform rather than
    ``N(0, 40² I)``: the Gaussian puts about half its mass outside the box, where the score
    reaches ``|x − μ|`` ~ 100 and step sizes tuned for the modes blow up; the box reaches every
    mode with the same probability (in expectation over the draw of the means) and no further.
    """

    name = "gmm40"
    pretty_name = "GMM-40"
    description = ("40 equal N(μ_k, I) in 2-D, μ_k uniform in [−40, 40]² from a fixed seed "
                   "(FAB, Midgley et al. 2023).")
    length_scale = 1.0  # component s.d.
    box: ClassVar[float] = 40.0  # half-width of the square the means were drawn from

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__(GMM40_MEANS, [1.0] * len(GMM40_MEANS), 1.0, device, dtype)

    def initial_positions(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, 2)`` uniform on ``[−40, 40]²`` (see the class docstring for why)."""
        return self.box * (2.0 * self.rand(n, self.dim, generator=generator) - 1.0)


# -- factorised modes --------------------------------------------------------------------------

@dataclass(frozen=True)
class FactorisedModes(Modes):
    """Modes of a product target ``q(x) = Π_g q₁(x_g)`` of ``G`` identical independent factors.

    If each factor has ``K`` local modes, the target has ``K^G`` joint modes (``2¹⁶`` for
    ``manywell32``): too many to list as centres (nearest-centre assignment would need an
    ``(n, K^G)`` distance matrix), and at any practical ``n`` most of them hold no sample even
    under exact sampling, so joint mode recall would measure ``n`` rather than the sampler.
    Because the factors are independent, the joint law of the local modes is the product of the
    per-factor laws; the mode metrics therefore count **per-factor coverage**: each sample gets
    one local-mode label per factor (:meth:`assign`, shape ``(n, G)``), and the empirical share
    of every (factor, local mode) pair is compared with :attr:`weights`. Mode recall becomes the
    fraction of the ``G·K`` pairs that receive at least half their expected share (a sampler
    stuck in one joint mode scores ``1/K``, as one stuck in one of ``K`` mixture components
    does), the mode-weight error the largest share error over the pairs, and the entropic mode
    coverage the mean over factors of the per-factor normalised entropy (which equals the joint
    entropy over ``log K^G`` for a sampler whose factors are independent, as the target's are;
    otherwise it is an upper bound on it: it sees marginal, not joint, coverage).

    Attributes:
        locations: ``(K, factor_dim)`` the local modes of one factor, in that factor's
            coordinates (for reading and plotting; assignment uses :attr:`label`).
        weights: ``(K,)`` their probabilities within one factor (sum to one); a joint mode's
            weight is the product of its factors' weights.
        num_factors: ``G``; factor ``g`` is ``x[:, g·factor_dim:(g + 1)·factor_dim]``.
        label: maps ``(..., factor_dim)`` factor coordinates to ``(...,)`` int64 local-mode
            indices in ``[0, K)`` (a module-level function, so the object pickles).
    """

    num_factors: int
    label: Callable[[Tensor], Tensor]

    @property
    def factor_dim(self) -> int:
        return int(self.locations.shape[1])

    def assign(self, x: Tensor) -> Tensor:
        """Local-mode label of every factor of every sample; ``-1`` on non-finite rows.

        Args:
            x: ``(n, G · factor_dim)`` samples.

        Returns:
            ``(n, G)`` int64 on ``x.device``. A row with any non-finite coordinate belongs to no
            mode in any factor (missing mass, as for plain :class:`Modes`).
        """
        dim = self.num_factors * self.factor_dim
        if x.ndim != 2 or x.shape[1] != dim:
            raise ValueError(f"samples of shape {tuple(x.shape)} do not match {self.num_factors} "
                             f"factors of dimension {self.factor_dim}")
        finite = torch.isfinite(x).all(dim=1)
        factors = torch.where(finite[:, None], x, 0.0).reshape(x.shape[0], self.num_factors,
                                                                self.factor_dim)
        return torch.where(finite[:, None], self.label(factors).long(), -1)


# -- manywell32 --------------------------------------------------------------------------------

#: Stationary points of the well ``w(x₁) = −x₁⁴ + 6x₁² + ½x₁``: the roots of
#: ``w'(x) = −4x³ + 12x + ½``, i.e. of the depressed cubic ``x³ − 3x − 1/8 = 0``, in the
#: trigonometric form ``x_k = 2 cos(θ/3 − 2πk/3)``, ``θ = arccos(1/16)``.
_THETA = math.acos(1.0 / 16.0)
WELL_RIGHT = 2.0 * math.cos(_THETA / 3.0)  # 1.752520, the deeper well (the ½x₁ tilt favours it)
WELL_BARRIER = 2.0 * math.cos(_THETA / 3.0 - 2.0 * math.pi / 3.0)  # −0.041691, the saddle
WELL_LEFT = 2.0 * math.cos(_THETA / 3.0 - 4.0 * math.pi / 3.0)  # −1.710829

#: Window and resolution of the inverse-CDF table of ``x₁``. Outside ``[−3.5, 3.5]`` the well
#: holds ``1.3e-39`` of its mass (numerical integration), far below float64 resolution of a CDF.
X1_WINDOW = 3.5
X1_CELLS = 2**16  # cell width 7 / 2¹⁶ = 1.07e-4; x₁ = 0 is a node (cell 2¹⁵ starts there)


def well_log_density(x1: Tensor) -> Tensor:
    """``w(x₁) = −x₁⁴ + 6x₁² + ½x₁``, the unnormalised log-density of one well's ``x₁``."""
    square = x1.square()
    return -square.square() + 6.0 * square + 0.5 * x1


@functools.lru_cache(maxsize=1)
def _x1_cdf_table() -> Tensor:
    """CDF of ``x₁`` at the ``X1_CELLS + 1`` nodes of ``[−3.5, 3.5]``, float64 on CPU.

    Cell masses by Simpson's rule (nodes and midpoints; error ``O(h⁴)``, below 1e-15 here),
    accumulated and normalised; the last node is set to exactly 1. Built once per process.
    """
    h = 2.0 * X1_WINDOW / X1_CELLS
    points = -X1_WINDOW + 0.5 * h * torch.arange(2 * X1_CELLS + 1, dtype=torch.float64)
    log_density = well_log_density(points)
    density = torch.exp(log_density - log_density.max())
    nodes, midpoints = density[0::2], density[1::2]
    masses = (h / 6.0) * (nodes[:-1] + 4.0 * midpoints + nodes[1:])
    cdf = torch.cat((torch.zeros(1, dtype=torch.float64), torch.cumsum(masses, 0)))
    cdf = cdf / cdf[-1]
    cdf[-1] = 1.0
    return cdf


def _well_sign(factors: Tensor) -> Tensor:
    """Local-mode label of a well: 0 for ``x₁ ≤ 0`` (left well), 1 for ``x₁ > 0`` (right)."""
    return (factors[..., 0] > 0).long()


class ManyWell32(AnalyticScoreTarget):
    """``log q~(x) = Σ_{g<16} −x_{2g}⁴ + 6x_{2g}² + ½x_{2g} − ½x_{2g+1}²`` on R³².

    Sixteen independent copies of the double well of Noé et al. (2019), laid out as pairs
    ``(x₁, x₂) = (x_{2g}, x_{2g+1})`` (Midgley et al. 2023's ManyWell-32). Each ``x₁`` has two
    wells, at ``−1.7108`` (probability ``w₋ = 0.155693``) and ``1.7525`` (``w₊ = 0.844307``),
    split by a barrier at ``−0.0417`` where the density is ``e^{−9.88}`` of its peak; each
    ``x₂`` is ``N(0, 1)``. So there are ``2¹⁶`` modes, one per sign pattern of the 16 ``x₁``.

    Score: ``∂/∂x₁ = −4x₁³ + 12x₁ + ½``, ``∂/∂x₂ = −x₂``.

    Exact sampler: ``x₂ ~ N(0, 1)``; ``x₁ = F⁻¹(u)``, ``u ~ U[0, 1)`` in float64, by inverse CDF
    on a table of ``2¹⁶`` equal cells over ``[−3.5, 3.5]`` (:func:`_x1_cdf_table`): the cell is
    found by binary search and ``u`` is interpolated linearly inside it. That is an exact draw
    from the law whose density is constant on each cell with the cell's exact mass. Its CDF
    equals the true one at the nodes (to the ``1e-15`` of Simpson's rule and float64 rounding)
    and differs inside a cell by at most ``h² max|f'| / 8 = 7.9e-9`` (``h = 1.07e-4``,
    ``max|f'| = 5.51`` for the normalised density ``f``; 7.8e-9 measured at mid-cells against
    adaptive quadrature); the mass cut off outside the window is
    ``1.3e-39``. Both are far below anything a sample of any feasible size can resolve
    (a KS test at ``n = 10⁹`` resolves ~5e-5).

    Modes: :class:`FactorisedModes` with ``G = 16`` factors (the wells), local modes
    ``(−1.7108, 0)`` and ``(1.7525, 0)`` with weights ``(w₋, w₊)``, assigned by the sign of
    ``x₁`` (``x₁ ≤ 0`` → left). The sign and the barrier at ``−0.042`` disagree on 3.5e-6 of
    the mass. Mode metrics count the 32 (well, sign) pairs, e.g. mode recall 0.5 for a sampler that
    never leaves the right wells (see :class:`FactorisedModes`).

    ``length_scale``: the narrowest local s.d., that of ``x₁`` in the right well,
    ``1/√(−w''(1.7525)) = 1/√(12·1.7525² − 12) = 0.2006`` (left well: 0.2080; ``x₂``: 1).

    ``initial_positions``: the default ``N(0, I)``; both wells of every ``x₁`` lie within
    1.8 s.d. and ``x₂``'s marginal is exactly ``N(0, 1)``.
    """

    name = "manywell32"
    pretty_name = "ManyWell-32"
    description = ("16 independent double wells −x₁⁴+6x₁²+½x₁−½x₂² in 32-D, 2¹⁶ modes "
                   "(Noé et al. 2019; Midgley et al. 2023).")
    num_wells: ClassVar[int] = 16
    length_scale = 1.0 / math.sqrt(12.0 * WELL_RIGHT**2 - 12.0)  # 0.2006

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__(2 * self.num_wells, device, dtype)
        # The table stays in float64 (float32 where the device has no float64): its increments
        # near the tails are far below float32 resolution of u.
        self._table_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self._cdf = _x1_cdf_table().to(device=self.device, dtype=self._table_dtype)
        self.well_weights = self.tensor(self._well_weights())

    @staticmethod
    def _well_weights() -> tuple[float, float]:
        """``(w₋, w₊) = (P(x₁ ≤ 0), P(x₁ > 0))`` from the table (0 is the middle node)."""
        left = float(_x1_cdf_table()[X1_CELLS // 2])
        return left, 1.0 - left

    def log_prob(self, x: Tensor) -> Tensor:
        pairs = x.reshape(x.shape[0], self.num_wells, 2)
        return (well_log_density(pairs[..., 0]) - 0.5 * pairs[..., 1].square()).sum(-1)

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pairs = x.reshape(x.shape[0], self.num_wells, 2)
        x1, x2 = pairs[..., 0], pairs[..., 1]
        log_prob = (well_log_density(x1) - 0.5 * x2.square()).sum(-1)
        score = torch.stack((-4.0 * x1**3 + 12.0 * x1 + 0.5, -x2), dim=-1)
        return log_prob, score.reshape(x.shape)

    def x1_cdf(self, x1: Tensor) -> Tensor:
        """CDF of the law the sampler draws ``x₁`` from (the table, linear inside cells).

        ``(...) -> (...)`` in the table's dtype; for testing the sampler against an independent
        quadrature of the density.
        """
        h = 2.0 * X1_WINDOW / X1_CELLS
        position = ((x1.to(self._table_dtype) + X1_WINDOW) / h).clamp(0.0, X1_CELLS)
        index = position.floor().long().clamp_max(X1_CELLS - 1)
        low, high = self._cdf[index], self._cdf[index + 1]
        return low + (position - index) * (high - low)

    def sample_x1(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """Exact ``x₁`` draws (one well's first coordinate), in the target's dtype."""
        u = torch.rand(shape, generator=generator, device=self.device, dtype=self._table_dtype)
        # cdf[i] <= u < cdf[i + 1]: u < 1 = cdf[-1] and cdf[0] = 0, so i is a cell and the
        # cell's increment is positive (a flat cell can never contain u).
        index = (torch.searchsorted(self._cdf, u, right=True) - 1).clamp(0, X1_CELLS - 1)
        low, high = self._cdf[index], self._cdf[index + 1]
        fraction = ((u - low) / (high - low)).clamp(0.0, 1.0)
        h = 2.0 * X1_WINDOW / X1_CELLS
        return (-X1_WINDOW + (index + fraction) * h).to(self.dtype)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        x1 = self.sample_x1((n, self.num_wells), generator)
        x2 = self.randn(n, self.num_wells, generator=generator)
        return torch.stack((x1, x2), dim=-1).reshape(n, self.dim)

    def modes(self) -> FactorisedModes:
        return FactorisedModes(locations=self.tensor([[WELL_LEFT, 0.0], [WELL_RIGHT, 0.0]]),
                               weights=self.well_weights, num_factors=self.num_wells,
                               label=_well_sign)
