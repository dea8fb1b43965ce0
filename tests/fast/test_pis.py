"""PIS: its path loss against the closed-form optimal control of a Gaussian target, its chain
interface (the step axis), NFE and checkpoints.

For ``q = N(mu, s^2 I)`` and the uncontrolled terminal law ``nu = N(0, sigma^2 T I)`` (start
``m = 0``), ``q / nu`` is proportional to ``exp(-a ||y - c||^2 / 2)`` with ``a = 1/s^2 -
1/(sigma^2 T)`` and ``c = mu / (s^2 a)``, and the optimal control is

    u*(x, t) = sigma grad log h = -sigma (x - c) / (sigma^2 (T - t) + 1 / a).

Under ``u*`` the path value ``sum ||u||^2 dt / 2 + sum <u, dW> + log nu(X_T) - log q(X_T)``
equals ``-log Z`` on every path in continuous time; with Euler-Maruyama its error shrinks with
the step size, which is what the first tests check (deterministic, seeded draws).
"""

from __future__ import annotations

import math

import pytest
import torch

from samplers import SAMPLERS
from samplers.base import run_chain
from samplers.neural.pis import PIS
from targets import CountingTarget, make_generator
from targets.base import AnalyticScoreTarget

MU = (1.0, -0.5)
S = 0.5


class IsotropicGaussian(AnalyticScoreTarget):
    """``N(MU, S^2 I)`` in 2-D with log Z = ``log_z`` (the density is ``Z q``)."""

    name = "isotropic_gaussian"

    def __init__(self, log_z: float = 0.0, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(2, "cpu", dtype)
        self.mu, self.log_z = self.tensor(MU), log_z

    def log_prob(self, x):
        return (-0.5 * (x - self.mu).square().sum(dim=1) / S**2
                - math.log(2 * math.pi * S**2) + self.log_z)

    def _log_prob_and_score(self, x):
        return self.log_prob(x), -(x - self.mu) / S**2

    def initial_positions(self, n, generator):
        return self.randn(n, 2, generator=generator)  # mean 0, s.d. 1: sigma = 1, m = 0


def _optimal_control(sigma: float, horizon: float = 1.0):
    a = 1.0 / S**2 - 1.0 / (sigma**2 * horizon)
    centre = torch.tensor(MU, dtype=torch.float64) / (S**2 * a)

    def control(x, t):
        return -sigma * (x - centre) / (sigma**2 * (horizon - t) + 1.0 / a)
    return control


def _sampler(**params) -> PIS:
    sampler = PIS(**params)
    sampler.build(2, torch.zeros(2, dtype=torch.float64), 1.0, torch.device("cpu"),
                  torch.float64, make_generator(0))
    return sampler


@pytest.mark.parametrize("log_z", [0.0, 1.7])
def test_optimal_control_gives_minus_log_z_on_every_path(log_z):
    target, sampler = IsotropicGaussian(log_z), _sampler()
    errors, biases = {}, {}
    for steps in (16, 256):
        loss, stochastic = sampler.path_loss(target, 4000, steps, make_generator(1),
                                             control=_optimal_control(1.0))
        errors[steps] = float((stochastic + log_z).abs().mean())
        biases[steps] = abs(float(stochastic.mean()) + log_z)
        # The expected loss is the KL (zero at the optimum) minus log Z, up to discretisation
        # and the Monte Carlo error of 4000 paths (the loss's s.d. is below 2 here).
        assert abs(float(loss.mean()) + log_z) < biases[steps] + 4.0 * 2.0 / math.sqrt(4000)
    # Euler-Maruyama: the per-path error shrinks like dt^(1/2) (strong order 1/2; 16x fewer
    # steps -> 4x larger; measured 0.316 and 0.075), the mean's like dt (weak order 1).
    assert errors[256] < errors[16] / 3.0
    assert biases[256] < 0.02


def test_a_worse_control_has_a_larger_expected_loss():
    target, sampler = IsotropicGaussian(), _sampler()
    best = _optimal_control(1.0)
    losses = {}
    for scale in (1.0, 0.5, 0.0):
        loss, _ = sampler.path_loss(target, 4000, 128, make_generator(2),
                                    control=lambda x, t, c=scale: c * best(x, t))
        losses[scale] = float(loss.mean())
    # Same noise for all three (common random numbers): the KL orders them.
    assert losses[1.0] < losses[0.5] < losses[0.0]


def test_untrained_pis_is_the_uncontrolled_diffusion_and_counts_no_target_evaluations():
    target = CountingTarget(IsotropicGaussian(dtype=torch.float32))
    sampler = PIS(num_iterations=0)
    sampler.train(target, generator=make_generator(0))
    evaluations = target.num_evaluations
    x = run_chain(sampler, target, 20000, 8, make_generator(3))
    assert target.num_evaluations == evaluations  # the drift form samples without the target
    # X_T ~ N(m, sigma^2 T I), with m and sigma from the initial law (mean 0, s.d. 1).
    tolerance = 4.0 * math.sqrt(2.0 / 20000) + 0.05  # s.d. of a variance estimate + draws of m
    assert torch.allclose(x.var(dim=0), torch.ones(2), atol=tolerance)


def test_score_form_costs_one_evaluation_per_sampling_step():
    target = CountingTarget(IsotropicGaussian(dtype=torch.float32))
    sampler = PIS(num_iterations=2, batch_size=8, num_train_steps=4, hidden_width=8,
                  hidden_depth=1, parameterisation="score")
    sampler.train(target, generator=make_generator(0))
    before = target.num_evaluations
    run_chain(sampler, target, 10, 5, make_generator(4))
    assert target.num_evaluations - before == 5 * 10


def test_training_lowers_the_loss_and_moves_mass_to_the_target():
    torch.manual_seed(0)  # nothing below may use the global generator; this guards it
    target = IsotropicGaussian(dtype=torch.float32)
    sampler = PIS(num_iterations=300, batch_size=128, num_train_steps=16, hidden_width=32,
                  hidden_depth=2, lr=3e-3, log_every=50, ema_decay=0.0)
    history = sampler.train(target, generator=make_generator(0))
    losses = [row["value"] for row in history if row["metric"] == "path_loss"]
    assert losses[-1] < losses[0]
    x = sampler.sample(4000, make_generator(5), num_steps=16)
    # The untrained sampler's mean is 0 and s.d. 1; the target's are MU (1.12 away) and 0.5.
    assert float((x.mean(dim=0) - torch.tensor(MU)).norm()) < 0.2
    assert torch.allclose(x.std(dim=0), torch.full((2,), S), atol=0.15)


def test_one_network_samples_at_any_number_of_steps_and_reloads_bit_for_bit(tmp_path):
    target = IsotropicGaussian(dtype=torch.float32)
    sampler = PIS(num_iterations=5, batch_size=16, num_train_steps=8, hidden_width=16,
                  hidden_depth=1)
    sampler.train(target, generator=make_generator(0))
    path = tmp_path / "pis.pt"
    torch.save(sampler.state_dict(), path)
    again = PIS()
    again.load_state_dict(torch.load(path, weights_only=True))
    for steps in (1, 2, 8, 32):
        a = sampler.sample(50, make_generator(6), num_steps=steps)
        b = again.sample(50, make_generator(6), num_steps=steps)
        assert a.shape == (50, 2) and torch.equal(a, b)


def test_registered_with_a_step_axis_and_validated_params():
    assert SAMPLERS["pis"] is PIS and PIS.step_axis
    for bad in ({"horizon": 0.0}, {"sigma": -1.0}, {"parameterisation": "x"},
                {"num_train_steps": 0}, {"ema_decay": 1.0}):
        with pytest.raises(ValueError, match="pis|parameterisation"):
            PIS(**bad)


def test_the_harness_trains_once_and_samples_every_budget_as_a_chain(tmp_path, single_thread):
    from benchmark.plan.matrix import parse_matrix
    from benchmark.plan.plan import make_plan
    from benchmark.run.runner import run_matrix
    from benchmark.store import ResultsStore

    matrix = parse_matrix({
        "seeds": [0], "n": 64, "metrics": ["energy_distance"], "targets": ["gaussian"],
        "samplers": [{"name": "pis", "budgets": [1, 4],
                      "params": {"num_iterations": 3, "batch_size": 16, "num_train_steps": 4,
                                 "hidden_width": 8, "hidden_depth": 1}},
                     {"name": "pis", "label": "pis_score", "budgets": [2],
                      "params": {"num_iterations": 3, "batch_size": 16, "num_train_steps": 4,
                                 "hidden_width": 8, "hidden_depth": 1,
                                 "parameterisation": "score"}}]})
    store = ResultsStore(tmp_path / "store")
    finished = list(run_matrix(make_plan(matrix, store), store, cache_dir=tmp_path / "cache"))
    rows = store.load().set_index(["sampler", "budget"])
    assert len(finished) == 4 and (rows["status"] == "ok").all()
    # Drift form: sampling evaluates no target at any K; score form: one per step.
    assert rows.loc[("pis", 1), "nfe"] == rows.loc[("pis", 4), "nfe"] == 0.0
    assert rows.loc[("pis_score", 2), "nfe"] == 2.0
    # One training per trained sampler, whatever its number of budgets.
    assert len(list((tmp_path / "store" / "history").glob("*.csv"))) == 2
    assert rows.loc[("pis", 1), "train_iterations"] == rows.loc[("pis", 4), "train_iterations"]
