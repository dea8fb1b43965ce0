"""Statistical tests of HMC (``hmc``) and parallel tempering (``pt``) on known distributions.

Method, as in test_classical_statistics.py: every check is a two-sided test at level
``ALPHA = 1e-3`` whose tolerance is derived from the sample size; seeds are fixed, so outcomes
are deterministic. The samples are the final states of ``n`` independent chains (for PT, the
``T = 1`` replicas of ``n`` independent PT systems), all started from the same initial law: they
are independent draws from the chain's law after ``K`` transitions, so their effective sample
size is ``n`` itself -- no autocorrelation to estimate -- and once ``K`` is well past the mixing
time that law is the stationary one, so iid tolerances apply. (Time averages along the chains
would need an estimated ESS, whose own error would then enter the tolerance.)

False-failure budget: 10 checks of correct samplers at level ``ALPHA`` each (Gaussian: one mean
and three covariance checks per sampler; mog2w: one mode-weight check per sampler), so the
probability that a correct sampler fails this file by chance is below ``10 ALPHA = 1%`` (union
bound). Each deliberately broken variant must fail a check its correct version passes.
"""

from __future__ import annotations

import math

import pytest
import torch
from analytic_targets import CorrelatedGaussian
from scipy import stats

from samplers.base import run_chain
from samplers.hmc import HMC
from samplers.tempering import ParallelTempering, swap_replicas
from targets import make_target
from targets.base import make_generator

ALPHA = 1e-3
Z = stats.norm.ppf(1 - ALPHA / 2)  # 3.29: two-sided normal quantile

pytestmark = pytest.mark.usefixtures("single_thread")


# Standard deviations 1 and 0.5, correlation 0.8 (variance condition number ~15); the start is
# 4 standard deviations out in each coordinate (Mahalanobis distance 9.5).
COVARIANCE = [[1.0, 0.4], [0.4, 0.25]]
GAUSSIAN = CorrelatedGaussian([1.0, -1.0], COVARIANCE, start=[5.0, -3.0])


def mean_check(target: CorrelatedGaussian, x: torch.Tensor) -> bool:
    """Known covariance: ``n ||mean(whitened)||^2 ~ chi^2_d``; one check at level ``ALPHA``."""
    y = target.whiten(x)
    statistic = y.shape[0] * y.mean(0).square().sum()
    return bool(statistic <= stats.chi2.ppf(1 - ALPHA, df=target.dim))


def covariance_checks(target: CorrelatedGaussian, x: torch.Tensor) -> list[bool]:
    """Each entry of ``S = (1/n) sum y y^T`` (whitened, known mean) against the identity.

    For iid ``y ~ N(0, I)``: ``Var(S_ii) = 2/n``, ``Var(S_ij) = 1/n`` (``i != j``); each entry is
    one check at level ``ALPHA``, normal approximation (``n >= 200``).
    """
    y = target.whiten(x)
    n, d = y.shape
    second_moment = y.T @ y / n
    checks = []
    for i in range(d):
        for j in range(i, d):
            standard_error = math.sqrt((2.0 if i == j else 1.0) / n)
            checks.append(bool(abs(second_moment[i, j] - float(i == j)) <= Z * standard_error))
    return checks


def mode_share_check(x: torch.Tensor) -> tuple[bool, float, float]:
    """mog2w's mode weights: the share of samples nearest to the light mode ``(2, 2)``.

    A draw of ``q`` lands nearer to ``(2, 2)`` with probability
    ``p = 0.2 (1 - e) + 0.8 e``, ``e = Phi(-2 sqrt 2)`` (a unit-variance component crosses the
    bisector ``x_1 + x_2 = 0``, at distance ``2 sqrt 2`` from its centre, with probability
    ``e``). The indicator of ``n`` independent draws is Binomial(n, p): one check
    ``|share - p| <= Z sqrt(p (1 - p) / n)`` at level ``ALPHA`` (normal approximation; ``n p``
    is in the hundreds). One share suffices: the other mode's is its complement.

    Returns:
        ``(passed, share, tolerance)``.
    """
    target = make_target("mog2w", dtype=x.dtype)
    crossing = stats.norm.cdf(-2.0 * math.sqrt(2.0))
    expected = 0.2 * (1.0 - crossing) + 0.8 * crossing
    share = float((torch.cdist(x, target.means).argmin(dim=1) == 1).double().mean())
    tolerance = Z * math.sqrt(expected * (1.0 - expected) / x.shape[0])
    return abs(share - expected) <= tolerance, share, tolerance


# -- Gaussian: mean and covariance -------------------------------------------------------------
# 2000 chains. HMC: 300 transitions (150 of warm-up); the adapted step ~0.4 with L = 10 makes a
# trajectory as long as the slowest direction's standard deviation or more, so the frozen half
# is many relaxation times, far beyond what the 9.5-sigma start needs. PT: 400 transitions
# (200 of warm-up); its T = 1 rung is MALA, whose 400 steps suffice on this target
# (test_classical_statistics), and the hotter rungs only add moves.
GAUSSIAN_CHAINS = 2000


class HMCWithoutKineticEnergy(HMC):
    """Broken on purpose: the Metropolis ratio forgets the momenta (``q(x') / q(x)`` only)."""

    def _log_acceptance(self, log_prob, log_prob_new, momentum, momentum_new):
        return log_prob_new - log_prob


def _gaussian_samples(sampler, num_steps: int) -> torch.Tensor:
    return run_chain(sampler, GAUSSIAN, GAUSSIAN_CHAINS, num_steps, make_generator(11))


def test_hmc_reaches_mean_and_covariance_of_a_correlated_gaussian():
    rates: list[float] = []
    steps: list[float] = []

    def record(state, info):
        rates.append(float(info["acceptance_rate"]))
        steps.append(float(info["step_size"]))

    x = run_chain(HMC(), GAUSSIAN, GAUSSIAN_CHAINS, 300, make_generator(11), on_step=record)
    assert mean_check(GAUSSIAN, x)
    assert all(covariance_checks(GAUSSIAN, x))
    # Sanity bounds, not statistical tests. On a Gaussian, leapfrog is stable only for
    # eps < 2 sigma_min (sigma_min^2 = 0.0767, the covariance's small eigenvalue), and the
    # acceptance falls off a cliff there (measured: 0.67 at eps = 0.53, 0.02 at 0.56); dual
    # averaging's iterates straddle the cliff and their average, frozen after warm-up, lands
    # below it (measured eps = 0.39, acceptance 0.98). So: the frozen step is stable, and the
    # acceptance is at least about the 0.65 aimed for.
    sigma_min = float(torch.linalg.eigvalsh(GAUSSIAN.covariance)[0].sqrt())
    assert steps[-1] < 2.0 * sigma_min
    assert sum(rates[150:]) / 150 >= 0.6


def test_hmc_without_kinetic_energy_fails_the_same_checks():
    x = _gaussian_samples(HMCWithoutKineticEnergy(), 300)
    # Measured: whitened variances ~0.51 and ~0.60 instead of 1 (tolerance 0.10).
    assert not all(covariance_checks(GAUSSIAN, x))


def test_pt_reaches_mean_and_covariance_of_a_correlated_gaussian():
    x = _gaussian_samples(ParallelTempering(), 400)
    assert mean_check(GAUSSIAN, x)
    assert all(covariance_checks(GAUSSIAN, x))


# -- mog2w: mode weights -------------------------------------------------------------------------
# 2000 chains from the registry's N(0, I) start, which puts about half of them in each basin
# while the target has 0.8 / 0.2: only chains that move between modes can pass. HMC: 400
# transitions (its adapted trajectories, L eps ~ 15, cross the 3.8-nat saddle often); PT: 800
# (the T = 10 rung sees a 0.38-nat saddle and swaps carry its crossings down the ladder). In
# trial runs the share's z-score was already within +-3 after a quarter of these budgets, and
# with 20000 PT systems it stayed within +-2 from 200 to 2000 transitions (no visible bias).
# (Plain MALA passes this check too in 2-D: its adapted step, h ~ 2.4, jumps the saddle.)
MOG_CHAINS = 2000


def test_hmc_recovers_the_mode_weights_of_mog2w():
    target = make_target("mog2w", dtype=torch.float64)
    x = run_chain(HMC(), target, MOG_CHAINS, 400, make_generator(21))
    passed, share, tolerance = mode_share_check(x)
    assert passed, f"share of (2, 2) {share:.4f}, tolerance {tolerance:.4f}"


def test_pt_recovers_the_mode_weights_of_mog2w():
    target = make_target("mog2w", dtype=torch.float64)
    x = run_chain(ParallelTempering(), target, MOG_CHAINS, 800, make_generator(21))
    passed, share, tolerance = mode_share_check(x)
    assert passed, f"share of (2, 2) {share:.4f}, tolerance {tolerance:.4f}"


class PTAcceptingEverySwap(ParallelTempering):
    """Broken on purpose: every exchange accepted (the ratio sees equal temperatures), so hot
    replicas' positions flow into the ``T = 1`` chain uncorrected."""

    def _swap(self, x, log_prob, score, inverse_temperatures, parity, generator):
        return swap_replicas(x, log_prob, score, torch.ones_like(inverse_temperatures), parity,
                             generator)


def test_pt_accepting_every_swap_fails_the_same_check():
    # The hot rungs weigh the modes nearly equally (q^(1/10): 0.8^0.1 vs 0.2^0.1), so their
    # positions pull the share of (2, 2) up. Measured: 0.44 instead of 0.20 (tolerance 0.03).
    target = make_target("mog2w", dtype=torch.float64)
    x = run_chain(PTAcceptingEverySwap(), target, MOG_CHAINS, 800, make_generator(21))
    passed, share, _ = mode_share_check(x)
    assert not passed and share > 0.3
