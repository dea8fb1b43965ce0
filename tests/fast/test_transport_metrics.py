"""Tests of the transport, kernel and coverage metrics (benchmark/metrics/transport.py,
coverage.py) and of the per-well mode counting for ``manywell32`` (modes.py).

Statistical checks are seeded (deterministic), with tolerances derived from ``n`` at a
two-sided level ``ALPHA = 1e-3`` per test function (the chance that a fresh seed fails), as
stated in each test; several use exact identities so that only a Gaussian or bounded term is
random.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from benchmark.metrics.base import MetricContext
from benchmark.metrics.coverage import entropic_mode_coverage
from benchmark.metrics.modes import mode_recall, mode_weight_error, mode_weights
from benchmark.metrics.registry import (
    METRICS,
    evaluate_metric,
    reference_floor,
    supported_metrics,
)
from benchmark.metrics.transport import (
    NUM_PROJECTIONS,
    mmd_squared,
    random_directions,
    sliced_wasserstein2,
    wasserstein2,
)
from targets import make_generator, make_target
from targets.base import Modes

ALPHA = 1e-3
Z = float(stats.norm.ppf(1 - ALPHA / 2))  # 3.29
F64 = torch.float64
NEW_METRICS = ("sliced_wasserstein", "w2", "mmd", "emc")

pytestmark = pytest.mark.usefixtures("single_thread")


def _normal(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=make_generator(seed), dtype=F64)


# -- sliced and exact W2 -------------------------------------------------------------------------

def test_sliced_w2_matches_the_gaussian_closed_form_for_a_scale_change():
    """``N(0, I)`` vs ``N(0, s²I)``: every projection is ``N(0, 1)`` vs ``N(0, s²)``, so
    ``SW₂² = (1 − s)²`` whatever the directions (no projection noise).

    Per direction, with quantile processes ``ε`` of the two samples,
    ``Ŵ² = (1 − s)² + 2(1 − s)∫Q(ε_x − ε_y) + ∫(ε_x − ε_y)²``: the linear term is
    ``(1 − s)[(m₂(x) − 1) − (m₂(y) − s²)/s]`` to first order, variance
    ``2(1 − s)²(1 + s²)/n`` (an average over directions has at most that variance); the last term
    is a positive bias of order ``log log n / n`` (Bobkov & Ledoux 2019), allowed for with
    ``10 log n / n``. Check: ``|SW₂² − (1 − s)²| ≤ z·sd + bias`` (CLT). The directions do not
    matter here, so few of them keep the test cheap at a large ``n``.
    """
    n, dim, s = 40_000, 3, 2.0
    x, y = _normal(n, dim, 0), s * _normal(n, dim, 1)
    value = float(sliced_wasserstein2(x, y, make_generator(2), num_projections=32))
    sd = math.sqrt(2 * (1 - s) ** 2 * (1 + s**2) / n)
    assert abs(value**2 - (1 - s) ** 2) <= Z * sd + 10 * math.log(n) / n


def test_sliced_w2_matches_the_gaussian_closed_form_for_a_shift():
    """``N(0, I)`` vs ``N(δ, I)``: ``SW₂² = |δ|²/d`` over uniform directions.

    Exact identity per direction θ (the 1-D coupling is the sorted one, shift-invariant): with
    ``y = x' + δ``, ``Ŵ²_θ = (θᵀδ)² − 2(θᵀδ)θᵀ(x̄ − x̄') + Ŵ²(θᵀx, θᵀx')``. So, with the same
    directions, ``SW₂² − mean_θ(θᵀδ)² − mean_θ Ŵ²(θᵀx, θᵀx')`` is Gaussian with variance at most
    ``8|δ|²/n`` (first check, tight). Against the closed form the directions' Monte Carlo
    error adds: in 2-D ``(θᵀδ)² = |δ|² cos²φ``, variance ``|δ|⁴/8``, over ``L`` directions
    (second check; the same-law term is a positive bias, bounded by its own value).
    """
    n, dim, delta = 5000, 2, torch.tensor([2.0, -1.0], dtype=F64)
    x, x_prime = _normal(n, dim, 3), _normal(n, dim, 4)
    value = float(sliced_wasserstein2(x, x_prime + delta, make_generator(5)))
    directions = random_directions(dim, NUM_PROJECTIONS, make_generator(5))
    projected_shift = float(((delta @ directions) ** 2).mean())
    same_law = float(sliced_wasserstein2(x, x_prime, make_generator(5))) ** 2
    sq_delta = float(delta.square().sum())
    assert abs(value**2 - projected_shift - same_law) <= Z * math.sqrt(8 * sq_delta / n)
    mc_sd = math.sqrt(sq_delta**2 / 8 / NUM_PROJECTIONS)
    assert abs(value**2 - sq_delta / dim) <= Z * (mc_sd + math.sqrt(8 * sq_delta / n)) + same_law


def test_exact_w2_matches_the_gaussian_closed_form_for_a_shift():
    """``N(0, I)`` vs ``N(δ, I)``: ``W₂² = |δ|²`` (the Bures term vanishes).

    Exact identity: any coupling with uniform marginals gives
    ``Σπ_ij|x_i − x'_j − δ|² = Σπ_ij|x_i − x'_j|² − 2δᵀ(x̄ − x̄') + |δ|²``, so the optimal
    coupling is the same and ``Ŵ²(x, x' + δ) = |δ|² − 2δᵀ(x̄ − x̄') + Ŵ²(x, x')`` (checked to
    solver precision); hence ``Ŵ² − |δ|² − Ŵ²(x, x')`` is exactly ``N(0, 8|δ|²/n)``.
    """
    n, delta = 1000, torch.tensor([2.0, 1.0], dtype=F64)
    x, x_prime = _normal(n, 2, 6), _normal(n, 2, 7)
    value = float(wasserstein2(x, x_prime + delta, make_generator(8))) ** 2
    same_law = float(wasserstein2(x, x_prime, make_generator(8))) ** 2
    linear = float(-2 * delta @ (x.mean(0) - x_prime.mean(0)))
    sq_delta = float(delta.square().sum())
    assert value == pytest.approx(sq_delta + linear + same_law, abs=1e-8)
    assert abs(value - sq_delta - same_law) <= Z * math.sqrt(8 * sq_delta / n)
    assert 0 < same_law < 0.1 * sq_delta  # the floor is small but not zero


def test_exact_w2_subsamples_large_sets_reproducibly():
    x, y = _normal(2500, 2, 9), _normal(2600, 2, 10)
    first = float(wasserstein2(x, y, make_generator(11)))
    assert first == float(wasserstein2(x, y, make_generator(11)))
    assert first != float(wasserstein2(x, y, make_generator(12)))
    assert float(wasserstein2(x[:50], x[:50], make_generator(0))) == pytest.approx(0, abs=1e-12)


# -- MMD -----------------------------------------------------------------------------------------

def _gaussian_mmd_squared(delta_sq: float, h2: float, dim: int) -> float:
    """Population RBF MMD² between ``N(0, I)`` and ``N(δ, I)``:
    ``2(h²/(h² + 2))^{d/2}(1 − exp(−|δ|²/(2(h² + 2))))``."""
    return 2 * (h2 / (h2 + 2)) ** (dim / 2) * (1 - math.exp(-delta_sq / (2 * (h2 + 2))))


def test_mmd_is_zero_for_equal_laws_and_clearly_positive_for_a_shift():
    """Fixed ``h²`` = the population median of ``|X − X'|²`` for ``N(0, I₂)`` (``4 log 2``).

    Equal laws: ``MMD²_u`` is a degenerate U-statistic with mean 0 and variance
    ``E k̃² (2/(n(n−1)) + 2/(m(m−1)) + 4/(nm))``, ``E k̃² ≤ E k² = (h²/(h² + 4))^{d/2}`` (the
    doubly centred kernel is a projection of ``k``); Chebyshev gives the tolerance
    ``√(Var/α)``, distribution-free. Shift: each point moves the statistic by at most ``4/n``,
    so McDiarmid bounds ``|MMD²_u − MMD²| ≤ √(16(1/n + 1/m) log(2/α)/2)``; the shift is chosen
    so that the lower end stays far above the null tolerance.
    """
    n = m = 3000
    dim, h2 = 2, 4 * math.log(2)
    variance = (h2 / (h2 + 4)) ** (dim / 2) * (2 / (n * (n - 1)) + 2 / (m * (m - 1)) + 4 / (n * m))
    null_tolerance = math.sqrt(variance / ALPHA)
    x, y = _normal(n, dim, 13), _normal(m, dim, 14)
    assert abs(float(mmd_squared(x, y, h2))) <= null_tolerance
    delta = torch.tensor([2.0, 0.0], dtype=F64)
    shifted = float(mmd_squared(x, y + delta, h2))
    expected = _gaussian_mmd_squared(4.0, h2, dim)
    mcdiarmid = math.sqrt(16 * (1 / n + 1 / m) * math.log(2 / ALPHA) / 2)
    assert abs(shifted - expected) <= mcdiarmid
    assert expected - mcdiarmid > 5 * null_tolerance
    assert shifted > 5 * null_tolerance


def test_mmd_metric_uses_the_reference_median_and_matches_the_direct_sum():
    x, y = _normal(300, 3, 15), _normal(200, 3, 16) + 0.3
    value = float(mmd_squared(x, y))  # h² from y: the median heuristic
    sq = torch.cdist(y, y).square()
    h2 = float(sq[torch.triu_indices(200, 200, 1).unbind()].median())
    kernel = lambda a, b: torch.exp(-torch.cdist(a, b).square() / (2 * h2))  # noqa: E731
    kxx, kyy = kernel(x, x), kernel(y, y)
    direct = ((kxx.sum() - kxx.trace()) / (300 * 299) + (kyy.sum() - kyy.trace()) / (200 * 199)
              - 2 * kernel(x, y).mean())
    assert value == pytest.approx(float(direct), abs=1e-12)
    # Chunking does not change the value.
    assert float(mmd_squared(x, y, chunk_size=7)) == pytest.approx(value, abs=1e-12)


# -- entropic mode coverage and mode recall --------------------------------------------------------

def test_emc_is_one_for_exact_samples_of_an_equal_mixture():
    """mog8: by its rotational symmetry each nearest-mean cell holds exactly 1/8 of the mass, so
    the counts are multinomial(n, 1/8) and ``2n(log K − Ĥ)`` is the G-test statistic, ``χ²_{K−1}``
    asymptotically: ``1 − EMC ≤ χ²_{K−1, 1−α} / (2n log K)``."""
    n, k = 8000, 8
    target = make_target("mog8", dtype=F64)
    value = float(entropic_mode_coverage(target.sample(n, make_generator(17)), target.modes()))
    assert value <= 1.0
    assert 1.0 - value <= stats.chi2.ppf(1 - ALPHA, k - 1) / (2 * n * math.log(k))


def test_emc_is_zero_for_samples_from_one_mode():
    """gmm40's most isolated mean (nearest other mean 16.5 away): a sample of its component is
    nearer another mean with probability below ``39·P(Z > 8.2) ≈ 4e-15``, so EMC is exactly 0."""
    target = make_target("gmm40", dtype=F64)
    means = target.means
    distance = torch.cdist(means, means) + torch.eye(40, dtype=F64) * 1e9
    isolated = int(distance.min(1).values.argmax())
    assert float(distance[isolated].min()) > 16
    x = means[isolated] + _normal(2000, 2, 18)
    assert float(entropic_mode_coverage(x, target.modes())) == 0.0
    assert float(mode_recall(x, target.modes())) == pytest.approx(1 / 40)


def test_emc_edge_cases():
    modes = Modes(torch.tensor([[0.0, 0.0], [4.0, 0.0]], dtype=F64),
                  torch.tensor([0.5, 0.5], dtype=F64))
    x = torch.tensor([[0.0, 0.0], [4.0, 0.0], [math.nan, 0.0], [math.inf, 1.0]], dtype=F64)
    # Non-finite rows are dropped before normalising: the two finite ones split evenly.
    assert float(entropic_mode_coverage(x, modes)) == pytest.approx(1.0)
    assert float(entropic_mode_coverage(x[2:], modes)) == 0.0  # no finite sample
    single = Modes(modes.locations[:1], torch.ones(1, dtype=F64))
    assert float(entropic_mode_coverage(x, single)) == 1.0


def test_manywell32_mode_metrics_count_the_wells_signs():
    """Exact samples: every (well, sign) pair near its share, so recall 1, and EMC near the
    target's own ``H(w)/log 2``: per well the plug-in entropy has delta-method s.d.
    ``|log(w₊/w₋)|·√(w₊w₋/n)`` and bias ``−1/(2n)``; the mean over 16 iid wells divides the s.d.
    by 4. A sampler that stays in the right wells covers half the pairs and has EMC 0."""
    n = 4000
    target = make_target("manywell32", dtype=F64)
    modes = target.modes()
    x = target.sample(n, make_generator(19))
    shares = mode_weights(x, modes)
    assert shares.shape == (16, 2)
    torch.testing.assert_close(shares.sum(1), torch.ones(16, dtype=F64))
    assert float(mode_recall(x, modes)) == 1.0
    w_minus, w_plus = (float(w) for w in target.well_weights)
    # Bonferroni over the 32 pairs; each share is binomial.
    z32 = float(stats.norm.ppf(1 - ALPHA / 64))
    assert float(mode_weight_error(x, modes)) <= z32 * math.sqrt(w_minus * w_plus / n)
    entropy = -(w_minus * math.log(w_minus) + w_plus * math.log(w_plus))
    sd = abs(math.log(w_plus / w_minus)) * math.sqrt(w_minus * w_plus / n) / 4
    value = float(entropic_mode_coverage(x, modes))
    assert abs(value * math.log(2) - entropy) <= Z * sd + 1 / (2 * n)

    collapsed = x.clone()
    collapsed[:, 0::2] = collapsed[:, 0::2].abs()
    assert float(mode_recall(collapsed, modes)) == 0.5
    assert float(entropic_mode_coverage(collapsed, modes)) == 0.0
    assert float(mode_weight_error(collapsed, modes)) == pytest.approx(w_minus)
    # Non-finite rows are missing mass in every well.
    broken = x.clone()
    broken[: n // 2, 3] = math.nan
    torch.testing.assert_close(mode_weights(broken, modes).sum(1), torch.full((16,), 0.5,
                                                                              dtype=F64))


# -- registry and floors ---------------------------------------------------------------------------

def test_new_metrics_are_registered_with_their_requirements():
    assert METRICS["sliced_wasserstein"].requires == frozenset({"reference"})
    assert METRICS["w2"].requires == frozenset({"reference"})
    assert METRICS["mmd"].requires == frozenset({"reference"})
    assert METRICS["emc"].requires == frozenset({"modes"})
    assert not METRICS["emc"].lower_is_better
    for name in ("gmm40", "manywell32"):
        supported = supported_metrics(make_target(name))
        assert set(NEW_METRICS) | {"mode_recall", "mode_weight_error"} <= set(supported)
    assert "emc" not in supported_metrics(make_target("gaussian"))


@pytest.mark.parametrize("name", ["gmm40", "manywell32"])
def test_floors_of_the_new_metrics(name):
    target = make_target(name)
    floors = {metric: reference_floor(metric, target, 300, make_generator(20), num_repeats=2)
              for metric in NEW_METRICS}
    for metric, (mean, std) in floors.items():
        assert math.isfinite(mean) and math.isfinite(std), metric
    assert floors["sliced_wasserstein"][0] > 0 and floors["w2"][0] > floors["sliced_wasserstein"][0]
    assert abs(floors["mmd"][0]) < 0.05
    assert 0.5 < floors["emc"][0] <= 1.0
    # Reproducible from the generator's seed.
    again = reference_floor("sliced_wasserstein", target, 300, make_generator(20), num_repeats=2)
    assert again == floors["sliced_wasserstein"]


def test_metrics_through_evaluate_metric_on_float32_samples():
    target = make_target("gmm40")
    x = target.sample(400, make_generator(21))
    context = MetricContext(target.sample(400, make_generator(22)), make_generator(23))
    for metric in NEW_METRICS:
        assert math.isfinite(evaluate_metric(metric, x, target, context)), metric
    # Far-off samples are far in every transport/kernel metric.
    far = x + 200.0
    for metric in ("sliced_wasserstein", "w2"):
        assert evaluate_metric(metric, far, target, context) > 100, metric
    assert evaluate_metric("mmd", far, target, context) > 0.5
