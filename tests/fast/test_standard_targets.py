"""Tests of the standard multimodal targets ``gmm40`` and ``manywell32`` (targets/standard.py).

The registry contract tests (tests/fast/test_targets.py) cover shapes, dtypes, the fused call
and Hessian-vector products; this file checks the numbers.

Statistical checks: seeded, hence deterministic, but each tolerance is derived from ``n`` so that
a fresh seed would fail with probability at most ``ALPHA = 1e-3`` per test function (two-sided;
Bonferroni over the checks of one test; CLT approximation for the moment checks, the DKW
inequality, exact at finite ``n``, for the KS check).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, stats

from targets import FactorisedModes, make_generator, make_target
from targets.standard import (
    GMM40_MEANS,
    WELL_BARRIER,
    WELL_LEFT,
    WELL_RIGHT,
    X1_CELLS,
    X1_WINDOW,
)

ALPHA = 1e-3
F64 = torch.float64

pytestmark = pytest.mark.usefixtures("single_thread")


def _z(num_checks: int) -> float:
    """Two-sided normal quantile at level ``ALPHA`` shared by ``num_checks`` checks."""
    return float(stats.norm.ppf(1 - ALPHA / (2 * num_checks)))


# -- scores against finite differences -----------------------------------------------------------
# Central differences in the target's own dtype. For a step h the error is at most
#   h²·M₃/6          (truncation; M₃ bounds |∂³ log q| on [x − h, x + h] along the coordinate)
# + C·eps·A/h        (rounding of the two log q evaluations, A = magnitude of the terms summed)
# and the analytic score itself carries rounding C·eps·B (B = magnitude of its terms); C = 16
# covers the few roundings per term and the sums. The step minimises the bound,
# h = (3·C·eps·A/M₃)^{1/3}, capped at a quarter of the length scale; the divisor is the step
# actually represented in the dtype, (x + h) − (x − h).
SAFETY = 16.0


def _well_bounds(x: torch.Tensor, h: torch.Tensor | None = None):
    """``A`` per row, ``M₃`` and ``B`` per coordinate for manywell32 (float64 inputs)."""
    x1, x2 = x[:, 0::2], x[:, 1::2]
    magnitude = (x1**4 + 6 * x1**2 + 0.5 * x1.abs() + 0.5 * x2**2).sum(1, keepdim=True)
    reach = 0.0 if h is None else h[:, 0::2]
    third = torch.zeros_like(x)
    third[:, 0::2] = 24 * (x1.abs() + reach)  # |d³/dx₁³| = 24|x₁|, largest at the stencil's end
    score_terms = torch.empty_like(x)
    score_terms[:, 0::2] = 4 * x1.abs() ** 3 + 12 * x1.abs() + 0.5
    score_terms[:, 1::2] = x2.abs()
    return magnitude.expand_as(x), third, score_terms


def _gmm_third_cumulant(x: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """``∂³_j log q = Σ_k r_k (μ_kj − m_j)³`` (third cumulant of μ under the responsibilities)."""
    logits = -0.5 * torch.cdist(x, means).square()
    r = torch.softmax(logits, dim=1)
    centred = means[None] - (r @ means)[:, None]  # (n, K, 2)
    return (r[..., None] * centred**3).sum(1)


def _gmm_bounds(x: torch.Tensor, means: torch.Tensor, h: torch.Tensor | None = None):
    """``A``, ``M₃``, ``B`` for gmm40 (float64 inputs)."""
    distance = torch.cdist(x, means)
    r = torch.softmax(-0.5 * distance.square(), dim=1)
    # Each component term −|x − μ_k|²/2 is off by ~eps·|x − μ_k|·(|x| + |μ_k|) (the difference
    # x − μ_k is rounded at the scale of its operands) plus eps·|term|; the logsumexp weighs
    # them by the responsibilities.
    scale = x.abs().amax(1, keepdim=True) + means.abs().amax(1)[None]
    term_error = 0.5 * distance.square() + 2 * distance * scale
    magnitude = (r * term_error).sum(1, keepdim=True) + math.log(len(means))
    third = _gmm_third_cumulant(x, means).abs()
    if h is not None:  # the largest value over the stencil (it varies on the scale 1/|μ_i − μ_j|)
        for j in range(x.shape[1]):
            for t in torch.linspace(-1, 1, 9, dtype=F64):
                shifted = x.clone()
                shifted[:, j] += t * h[:, j]
                value = _gmm_third_cumulant(shifted, means)[:, j].abs()
                third[:, j] = torch.maximum(third[:, j], value)
    spread = (r[..., None] * (means[None] - (r @ means)[:, None]).abs()).sum(1)
    score_terms = x.abs() + (r @ means.abs()) + magnitude * spread
    return magnitude.expand_as(x), third, score_terms


def _check_score_against_differences(target, x64: torch.Tensor, bounds) -> None:
    dtype = target.dtype
    eps = torch.finfo(dtype).eps
    x = x64.to(dtype)
    magnitude, third, _ = bounds(x64)
    cap = target.length_scale / 4
    h = torch.where(third > 0, (3 * SAFETY * eps * magnitude / third.clamp_min(1e-300)) ** (1 / 3),
                    torch.full_like(third, cap)).clamp_max(cap)
    magnitude, third, score_terms = bounds(x64, h)
    tolerance = h**2 * third / 6 + SAFETY * eps * (magnitude / h + score_terms)
    score = target.score(x).to(F64)
    for j in range(target.dim):
        plus, minus = x.clone(), x.clone()
        plus[:, j] += h[:, j].to(dtype)
        minus[:, j] -= h[:, j].to(dtype)
        step = (plus[:, j] - minus[:, j]).to(F64)
        difference = (target.log_prob(plus) - target.log_prob(minus)).to(F64) / step
        error = (difference - score[:, j]).abs()
        assert bool((error <= tolerance[:, j]).all()), (
            j, float(error.max()), float(tolerance[:, j][error.argmax()]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_manywell32_score_matches_finite_differences(dtype):
    target = make_target("manywell32", dtype=dtype)
    generator = make_generator(0)
    x64 = torch.cat((target.sample(24, generator).to(F64),  # where the mass is
                     1.5 * torch.randn(8, 32, generator=generator, dtype=F64)))  # and beyond
    _check_score_against_differences(target, x64, _well_bounds)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gmm40_score_matches_finite_differences(dtype):
    target = make_target("gmm40", dtype=dtype)
    means = torch.tensor(GMM40_MEANS, dtype=F64)
    generator = make_generator(1)
    x64 = torch.cat((target.sample(24, generator).to(F64),
                     # between modes too, where the responsibilities switch
                     40 * (2 * torch.rand(16, 2, generator=generator, dtype=F64) - 1)))
    _check_score_against_differences(
        target, x64, lambda x, h=None: _gmm_bounds(x, means, h))


# -- gmm40 -----------------------------------------------------------------------------------------

def test_gmm40_means_lie_in_the_box_and_match_their_stated_generation():
    """The table is the definition; this checks its stated provenance (if a future torch changed
    its CPU generator, this test would fail while the target stays the same)."""
    table = torch.tensor(GMM40_MEANS, dtype=F64)
    assert table.shape == (40, 2)
    assert bool((table.abs() <= 40).all())
    generator = torch.Generator().manual_seed(0)
    regenerated = ((torch.rand(40, 2, generator=generator) - 0.5) * 2 * 40).to(F64)
    # Printed to 6 decimals: half a unit of the last place.
    torch.testing.assert_close(table, regenerated, rtol=0, atol=5e-7 + 1e-12)
    target = make_target("gmm40", dtype=F64)
    torch.testing.assert_close(target.means, table, rtol=0, atol=0)
    assert torch.equal(make_target("gmm40", dtype=F64).means, target.means)


def test_gmm40_modes_weights_and_length_scale():
    target = make_target("gmm40", dtype=F64)
    modes = target.modes()
    assert type(modes).__name__ == "Modes"  # plain nearest-centre modes
    assert modes.locations.shape == (40, 2)
    torch.testing.assert_close(modes.weights, torch.full((40,), 1 / 40, dtype=F64))
    assert {"score", "reference", "modes"} <= target.provides
    assert target.length_scale == 1.0


def test_gmm40_exact_samples_match_the_mixture_moments():
    """Mean, second moments and cross moment of ``n`` exact samples against the mixture's.

    For ``x = μ_k + z``: ``E x = μ̄``, ``E x_j² = 1 + mean μ_j²``, ``E x_j⁴ = mean(μ⁴ + 6μ² + 3)``,
    ``E x₁x₂ = mean μ₁μ₂``, ``E x₁²x₂² = mean (μ₁² + 1)(μ₂² + 1)``; each sample mean is within
    ``z·sd/√n`` (5 checks, Bonferroni).
    """
    n = 20_000
    target = make_target("gmm40", dtype=F64)
    x = target.sample(n, make_generator(2))
    mu = torch.tensor(GMM40_MEANS, dtype=F64)
    m1, m2 = mu.mean(0), (mu**2).mean(0) + 1
    m4 = (mu**4 + 6 * mu**2 + 3).mean(0)
    cross = (mu[:, 0] * mu[:, 1]).mean()
    cross_sq = ((mu[:, 0] ** 2 + 1) * (mu[:, 1] ** 2 + 1)).mean()
    statistics = [
        (x.mean(0), m1, (m2 - m1**2) / n),
        ((x**2).mean(0), m2, (m4 - m2**2) / n),
        ((x[:, 0] * x[:, 1]).mean(), cross, (cross_sq - cross**2) / n),
    ]
    z = _z(5)
    for estimate, expected, variance in statistics:
        assert bool(((estimate - expected).abs() <= z * variance.sqrt()).all()), (
            estimate, expected)


def test_gmm40_initial_positions_cover_the_box():
    """Uniform on [−40, 40]²: inside it, mean 0 within ``z·40/√(3n)`` per coordinate."""
    target = make_target("gmm40")
    n = 4000
    x = target.initial_positions(n, make_generator(3))
    assert x.shape == (n, 2) and x.dtype == torch.float32
    assert bool((x.abs() <= 40).all())
    assert bool((x.mean(0).abs() <= _z(2) * 40 / math.sqrt(3 * n)).all())
    assert torch.equal(x, target.initial_positions(n, make_generator(3)))
    assert x.abs().max() > 35  # it is the box, not N(0, I)


# -- manywell32 ------------------------------------------------------------------------------------

def _well_density(x: float) -> float:
    return math.exp(-(x**4) + 6 * x**2 + 0.5 * x)


_BREAKS = (WELL_LEFT, WELL_BARRIER, WELL_RIGHT)


def _quad(fn, low: float, high: float) -> float:
    points = [p for p in _BREAKS if low < p < high] or None
    return integrate.quad(fn, low, high, points=points, epsabs=0, epsrel=1e-12, limit=200)[0]


def _well_moment(power: int) -> float:
    """``E x₁^power`` by adaptive quadrature (independent of the sampler's table)."""
    normaliser = _quad(_well_density, -6, 6)
    return _quad(lambda x: x**power * _well_density(x), -6, 6) / normaliser


def test_manywell32_constants():
    # Stationary points are roots of −4x³ + 12x + ½.
    for root in _BREAKS:
        assert abs(-4 * root**3 + 12 * root + 0.5) < 1e-12
    assert WELL_LEFT < WELL_BARRIER < 0 < WELL_RIGHT
    target = make_target("manywell32", dtype=F64)
    # Narrowest local s.d.: the right well's 1/√(12x² − 12) = 0.2006 (left: 0.2080, x₂: 1).
    widths = [1 / math.sqrt(12 * w**2 - 12) for w in (WELL_LEFT, WELL_RIGHT)] + [1.0]
    assert target.length_scale == pytest.approx(min(widths), rel=1e-12)
    assert target.length_scale == pytest.approx(0.2006, abs=1e-4)
    left = _quad(_well_density, -6, 0) / _quad(_well_density, -6, 6)
    assert float(target.well_weights[0]) == pytest.approx(left, abs=1e-12)
    assert float(target.well_weights.sum()) == pytest.approx(1.0, abs=1e-15)


def test_manywell32_modes_are_per_well_signs():
    target = make_target("manywell32", dtype=F64)
    modes = target.modes()
    assert isinstance(modes, FactorisedModes) and "modes" in target.provides
    assert modes.num_factors == 16 and modes.factor_dim == 2
    assert modes.locations.shape == (2, 2) and modes.weights.shape == (2,)
    # Each local mode is a stationary point of its well: all wells there → zero score.
    for location in modes.locations:
        x = location.repeat(16)[None]
        assert float(target.score(x).abs().max()) < 1e-12
    x = torch.zeros(3, 32, dtype=F64)
    x[0, 0::2] = 1.0
    x[1, 0::2] = -1.0
    x[1, 4] = 0.5  # well 2 positive
    x[2, 7] = math.nan
    labels = modes.assign(x)
    assert labels.shape == (3, 16) and labels.dtype == torch.int64
    assert labels[0].tolist() == [1] * 16
    assert labels[1].tolist() == [0, 0, 1] + [0] * 13
    assert labels[2].tolist() == [-1] * 16
    with pytest.raises(ValueError, match="16 factors"):
        modes.assign(torch.zeros(2, 30, dtype=F64))


def test_manywell32_table_cdf_matches_quadrature():
    """The sampled law's CDF (table, linear in cells) against adaptive quadrature, at nodes and
    inside cells: within the stated interpolation bound ``h² max|f'|/8 = 7.9e-9``."""
    target = make_target("manywell32", dtype=F64)
    h = 2 * X1_WINDOW / X1_CELLS
    normaliser = _quad(_well_density, -6, 6)
    grid = torch.linspace(-2.6, 2.6, 27, dtype=F64)
    points = torch.cat((grid, grid + h / 2, grid + h / 3))
    expected = torch.tensor([_quad(_well_density, -6, float(p)) / normaliser for p in points],
                            dtype=F64)
    torch.testing.assert_close(target.x1_cdf(points), expected, rtol=0, atol=1e-8)


def test_manywell32_x1_sampler_passes_a_ks_test_against_the_integrated_density():
    """DKW: ``P(sup|F_N − F| > ε) ≤ 2 exp(−2Nε²)``, so ``ε = √(log(2/α)/(2N))`` at ``α = 1e-3``,
    exact at finite ``N``. ``F`` by quadrature on a grid of 561 points (the sup over a grid is at
    most the full sup, so the check only loses power); ``N`` pools the 16 iid wells."""
    target = make_target("manywell32", dtype=F64)
    x1 = target.sample(4096, make_generator(4))[:, 0::2].reshape(-1)
    n = x1.numel()
    grid = torch.linspace(-2.8, 2.8, 561, dtype=F64)
    normaliser = _quad(_well_density, -6, 6)
    pieces = [_quad(_well_density, -6, float(grid[0]))]
    edges = grid.tolist()
    pieces += [_quad(_well_density, a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    cdf = torch.tensor(pieces, dtype=F64).cumsum(0) / normaliser
    empirical = torch.searchsorted(x1.sort().values, grid, right=True).to(F64) / n
    epsilon = math.sqrt(math.log(2 / ALPHA) / (2 * n))
    assert float((empirical - cdf).abs().max()) <= epsilon


def test_manywell32_exact_samples_match_the_well_moments():
    """Moments of ``n`` samples (16 iid wells pooled: ``N = 16n`` draws) against quadrature.

    Checks (Bonferroni over all): ``P(x₁ > 0) = w₊`` (binomial s.d.), ``E x₁``, ``E x₁²``,
    ``E x₂ = 0``, ``E x₂² = 1`` (s.d. from the fourth moments), and independence: every sample
    correlation between two of the 32 coordinates within ``z/√n`` (its null s.d.).
    """
    n = 20_000
    target = make_target("manywell32", dtype=F64)
    x = target.sample(n, make_generator(5))
    x1, x2 = x[:, 0::2].reshape(-1), x[:, 1::2].reshape(-1)
    big_n = x1.numel()
    e1, e2, e4 = (_well_moment(p) for p in (1, 2, 4))
    w_plus = float(target.well_weights[1])
    pairs = 32 * 31 // 2
    z = _z(5 + pairs)
    checks = [
        (float((x1 > 0).to(F64).mean()), w_plus, w_plus * (1 - w_plus)),
        (float(x1.mean()), e1, e2 - e1**2),
        (float((x1**2).mean()), e2, e4 - e2**2),
        (float(x2.mean()), 0.0, 1.0),
        (float((x2**2).mean()), 1.0, 2.0),
    ]
    for estimate, expected, variance in checks:
        assert abs(estimate - expected) <= z * math.sqrt(variance / big_n), (estimate, expected)
    correlation = torch.corrcoef(x.T)
    off_diagonal = correlation[~torch.eye(32, dtype=torch.bool)]
    assert float(off_diagonal.abs().max()) <= z / math.sqrt(n)


# -- both ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gmm40", "manywell32"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampling_is_deterministic_per_generator(name, dtype):
    target = make_target(name, dtype=dtype)
    first = target.sample(256, make_generator(7))
    assert first.dtype == dtype and first.shape == (256, target.dim)
    assert torch.equal(first, target.sample(256, make_generator(7)))
    assert not torch.equal(first, target.sample(256, make_generator(8)))
    assert torch.equal(make_target(name, dtype=dtype).sample(256, make_generator(7)), first)
