"""Noise floors of KSD and energy distance on exact samples, and their power against a shift.

Every check is at two-sided level alpha = 1e-3 (suite budget: tests/conftest.py), seeded.

* Floor means: on exact samples of q, ``E[V-KSD²] = (E_q‖s‖² + d)/n`` for the IMQ kernel with
  c = 1, β = −½ (the diagonal ``u(x, x) = ‖s‖² + d``; off-diagonal terms have zero mean under q),
  and ``E[ED] = 2 E‖X − X'‖ / n`` for the V-statistic energy distance between two independent
  exact sets of size n. The mean over S seeds is compared with the closed form using the
  Student-t quantile with S − 1 degrees of freedom and the sample std over seeds.
* Power: the null distribution of n·(V-statistic) tends to a weighted sum of χ²₁ variables, so
  its upper quantile is taken from a scaled χ² ``g χ²_h`` with the mean and variance estimated
  over seeds (Satterthwaite's moment match: ``g = var / (2 mean)``, ``h = 2 mean² / var``). A
  0.25σ mean shift at n = 1000 must exceed the 1 − alpha quantile of that null. (Its KSD² is
  ~10× the null mean, ~3σ of the shifted distribution above the threshold.)

Local test targets are used: the real 2-D targets are written elsewhere.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from benchmark.metrics.base import MetricContext
from benchmark.metrics.ksd import ksd_squared
from benchmark.metrics.registry import evaluate_metric, reference_floor
from targets.base import Target, make_generator

ALPHA = 1e-3
NUM_SEEDS = 30
N = 1000


class DiagonalGaussian(Target):
    """``N(0, diag(scales²))`` with exact samples; ``E‖s‖² = Σ 1/scale²``."""

    name = "test_diagonal_gaussian"

    def __init__(self, scales: list[float]) -> None:
        super().__init__(len(scales), dtype=torch.float64)
        self.scales = self.tensor(scales)

    def log_prob(self, x):
        return -0.5 * (x / self.scales).square().sum(dim=1)

    def score(self, x, create_graph=False):
        return -x / self.scales**2

    def sample(self, n, generator):
        return self.randn(n, self.dim, generator=generator) * self.scales


def _mean_matches(values: list[float], expected: float) -> tuple[bool, str]:
    values_t = torch.tensor(values, dtype=torch.float64)
    mean, std = float(values_t.mean()), float(values_t.std())
    tolerance = stats.t.ppf(1 - ALPHA / 2, len(values) - 1) * std / math.sqrt(len(values))
    return abs(mean - expected) <= tolerance, f"mean {mean:.5f} vs {expected:.5f} ± {tolerance:.5f}"


def _null_quantile(mean: float, std: float) -> float:
    """1 − alpha quantile of the scaled χ² with the given mean and std."""
    scale, dof = std**2 / (2 * mean), 2 * mean**2 / std**2
    return scale * stats.chi2.ppf(1 - ALPHA, dof)


def _ksd_squared_values(target: DiagonalGaussian, shift: float, seeds: range) -> list[float]:
    values = []
    for seed in seeds:
        x = target.sample(N, make_generator(seed))
        x[:, 0] += shift * target.scales[0]
        values.append(float(ksd_squared(x, target.score(x))))
    return values


@pytest.mark.parametrize("scales", [[1.0], [1.0, 1.0], [1.0, 1.0, 1.0], [0.5, 2.0]])
def test_imq_v_statistic_floor_matches_closed_form(scales):
    target = DiagonalGaussian(scales)
    expected = (sum(1 / s**2 for s in scales) + len(scales)) / N
    ok, message = _mean_matches(_ksd_squared_values(target, 0.0, range(NUM_SEEDS)), expected)
    assert ok, message


def test_ksd_detects_quarter_sigma_shift():
    target = DiagonalGaussian([1.0, 1.0])
    null = torch.tensor(_ksd_squared_values(target, 0.0, range(NUM_SEEDS)))
    threshold = _null_quantile(float(null.mean()), float(null.std()))
    # Fresh seeds for the shifted samples (disjoint from the null's).
    shifted = _ksd_squared_values(target, 0.25, range(1000, 1003))
    assert min(shifted) > threshold, (shifted, threshold)
    # The registered root metric orders the same way (root of the quantile: monotone).
    x = target.sample(N, make_generator(2000))
    x[:, 0] += 0.25
    context = MetricContext(reference=None, generator=make_generator(0))
    assert evaluate_metric("ksd", x, target, context) > math.sqrt(threshold)


def test_energy_distance_floor_and_shift():
    target = DiagonalGaussian([1.0, 1.0])
    # E‖X − X'‖ for N(0, I_2): X − X' ~ N(0, 2I), so √2 · E χ₂ = √2 · √(π/2) = √π.
    expected = 2 * math.sqrt(math.pi) / N
    values = []
    for seed in range(NUM_SEEDS):
        mean, _ = reference_floor("energy_distance", target, N, make_generator(seed))
        values.append(mean)
    ok, message = _mean_matches(values, expected)
    assert ok, message
    # The floor API over repeats gives the null's mean and std in one call.
    floor_mean, floor_std = reference_floor("energy_distance", target, N, make_generator(500),
                                            num_repeats=NUM_SEEDS)
    threshold = _null_quantile(floor_mean, floor_std)
    for seed in range(1000, 1003):
        generator = make_generator(seed)
        x = target.sample(N, generator)
        x[:, 0] += 0.25
        context = MetricContext(reference=target.sample(N, generator), generator=generator)
        value = evaluate_metric("energy_distance", x, target, context)
        assert value > threshold, (value, threshold)
