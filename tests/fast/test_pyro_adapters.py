"""The Pyro adapters (optional extra ``[pyro]``): registration, parameters, moments, NFE, harness.

Tests that run Pyro are skipped when it is not installed (``pytest.importorskip``); the
registration behaviour without Pyro is tested everywhere by hiding the module.

Statistical checks (suite budget in tests/conftest.py): each moment check is seeded and uses a
two-sided level alpha = 1e-3 per checked quantity (z = 3.29), with tolerances derived from ``n``
as if the ``n`` final positions were independent draws from the target: a sample mean has
standard error ``sqrt(Sigma_ii / n)``, a sample covariance entry ``sqrt((Sigma_ii Sigma_jj +
Sigma_ij^2) / n)`` (Gaussian fourth moments). Independent MCMC chains after their warm-up are
close to that. ``chains="joint"`` shares accept/reject across chains, so its positions are
mildly dependent and the real false-failure rate of that check is above its nominal level (the
seeded run passes with a margin: errors <= 0.5 of the tolerance). SVGD particles are
deterministic and usually closer to the target's moments than independent draws; its Adam step
adds a bias of at most about ``lr`` per coordinate (the particles oscillate around the fixed
point with amplitude ~``lr``), which the SVGD check adds to its tolerance.
"""

from __future__ import annotations

import math
import re
import sys

import pytest
import torch

from samplers.base import run_chain
from samplers.external import PYRO_INSTALL_HINT, external_samplers, pyro_available
from samplers.external.pyro import PyroNUTS, PyroSVGD, import_pyro
from targets.base import AnalyticScoreTarget, make_generator
from targets.counting import CountingTarget

pytestmark = pytest.mark.usefixtures("single_thread")

Z = 3.29  # two-sided alpha = 1e-3


class CorrelatedGaussian(AnalyticScoreTarget):
    """``N(mu, Sigma)`` with ``mu = (2, -1)`` and correlation 0.71: far from the ``N(0, I)``
    start, so a sampler that does not move (or ignores the correlation) fails."""

    name = "correlated_gaussian"
    pretty_name = "Correlated Gaussian"
    description = "2-D Gaussian, mean (2, -1), covariance [[1, 0.5], [0.5, 0.5]]"
    MEAN = (2.0, -1.0)
    COVARIANCE = ((1.0, 0.5), (0.5, 0.5))

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(2, "cpu", dtype)
        self.mean = self.tensor(self.MEAN)
        self.covariance = self.tensor(self.COVARIANCE)
        self.precision = torch.linalg.inv(self.covariance)

    def log_prob(self, x):
        centred = x - self.mean
        return -0.5 * ((centred @ self.precision) * centred).sum(-1)

    def _log_prob_and_score(self, x):
        centred = x - self.mean
        return -0.5 * ((centred @ self.precision) * centred).sum(-1), -centred @ self.precision


@pytest.fixture
def pyro_module():
    return pytest.importorskip("pyro")


def assert_moments(x: torch.Tensor, target: CorrelatedGaussian, bias: float = 0.0) -> None:
    """Mean and covariance of ``x`` ``(n, 2)`` within ``Z`` standard errors (+ ``bias``)."""
    n = x.shape[0]
    sigma = target.covariance
    mean_error = (x.mean(0) - target.mean).abs()
    mean_tolerance = Z * (sigma.diagonal() / n).sqrt() + bias
    assert (mean_error <= mean_tolerance).all(), (x.mean(0), mean_tolerance)
    covariance_error = (torch.cov(x.T) - sigma).abs()
    covariance_se = ((sigma.diagonal()[:, None] * sigma.diagonal()[None, :] + sigma.square())
                     / n).sqrt()
    covariance_tolerance = Z * covariance_se + 2 * bias
    assert (covariance_error <= covariance_tolerance).all(), (torch.cov(x.T),
                                                              covariance_tolerance)


# -- without Pyro -------------------------------------------------------------------------------
def test_without_pyro_nothing_is_registered_and_use_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyro", None)  # `import pyro` now raises ImportError
    assert not pyro_available()
    assert external_samplers() == {}
    hint = re.escape(PYRO_INSTALL_HINT)
    with pytest.raises(ImportError, match=hint):
        import_pyro()
    target = CorrelatedGaussian()
    with pytest.raises(ImportError, match=hint):
        PyroSVGD().init(target, torch.zeros(4, 2, dtype=torch.float64), 3)


def test_registry_has_the_adapters_exactly_when_pyro_is_installed():
    from samplers import SAMPLERS

    assert ({"pyro_svgd", "pyro_nuts"} <= set(SAMPLERS)) == pyro_available()


@pytest.mark.parametrize(("cls", "overrides", "message"), [
    (PyroSVGD, {"mode": "diagonal"}, "unknown mode 'diagonal'; valid choices: multivariate, "
                                     "univariate"),
    (PyroSVGD, {"lr": 0.0}, "lr must be > 0, got 0.0"),
    (PyroNUTS, {"kernel": "mala"}, "unknown kernel 'mala'; valid choices: nuts, hmc"),
    (PyroNUTS, {"chains": "vectorised"}, "unknown chains 'vectorised'; valid choices: "
                                         "independent, joint"),
    (PyroNUTS, {"num_leapfrog_steps": 0}, "num_leapfrog_steps must be an integer >= 1"),
    (PyroNUTS, {"warmup_fraction": 2.0}, "warmup_fraction must be in [0, 1], got 2.0"),
    (PyroNUTS, {"step_size": 1}, None),
])
def test_bad_parameters_are_one_line_errors(cls, overrides, message):
    if message is None:  # a valid override for contrast
        assert cls(**overrides).params.step_size == 1
        return
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        cls(**overrides)
    assert "\n" not in str(error.value)


# -- moments on a correlated Gaussian ----------------------------------------------------------
def test_pyro_svgd_moments(pyro_module):
    target, n = CorrelatedGaussian(), 100
    sampler = PyroSVGD()
    x = run_chain(sampler, target, n, 150, make_generator(0))
    assert_moments(x, target, bias=sampler.params.lr)


@pytest.mark.parametrize(("chains", "n", "num_steps"), [("independent", 20, 25),
                                                        ("joint", 400, 60)])
def test_pyro_nuts_moments(pyro_module, chains, n, num_steps):
    target = CorrelatedGaussian()
    x = run_chain(PyroNUTS(chains=chains), target, n, num_steps, make_generator(1))
    assert_moments(x, target)


# -- NFE ---------------------------------------------------------------------------------------
def test_pyro_svgd_nfe_is_one_evaluation_per_step_plus_setup(pyro_module):
    counting, n, num_steps = CountingTarget(CorrelatedGaussian()), 16, 5
    run_chain(PyroSVGD(), counting, n, num_steps, make_generator(0))
    assert counting.num_calls == num_steps + 1  # one batched call per Pyro step, one at setup
    assert counting.nfe_per_particle(n) == num_steps + 1


def test_pyro_hmc_nfe_is_pyro_leapfrog_steps_times_transitions(pyro_module):
    # No adaptation: Pyro's num_steps is then fixed, and each leapfrog step evaluates the
    # target once (the gradient at the start point is cached from the previous transition).
    counting, n, num_steps = CountingTarget(CorrelatedGaussian()), 3, 4
    sampler = PyroNUTS(kernel="hmc", num_leapfrog_steps=7, adapt_step_size=False,
                       adapt_mass_matrix=False)
    state = sampler.init(counting, torch.zeros(n, 2, dtype=torch.float64), num_steps)
    generator = make_generator(0)
    for _ in range(num_steps):
        state, info = sampler.step(counting, state, generator)
    leapfrog_steps = state.kernels[0].num_steps  # Pyro's own count per transition
    assert leapfrog_steps == 7
    assert counting.nfe_per_particle(n) == 1 + num_steps * leapfrog_steps  # 1: Pyro's setup
    assert float(info["evaluations"]) == leapfrog_steps


@pytest.mark.parametrize("adapt", [False, True])
def test_pyro_nuts_nfe_matches_pyro_leapfrog_count(pyro_module, monkeypatch, adapt):
    import pyro.ops.integrator as integrator

    leapfrogs = {"steps": 0, "with_fresh_gradient": 0}
    single_step = integrator._single_step_verlet

    def counted(z, r, potential_fn, kinetic_grad, step_size, z_grads=None):
        leapfrogs["steps"] += 1
        leapfrogs["with_fresh_gradient"] += z_grads is None  # an extra evaluation at the start
        return single_step(z, r, potential_fn, kinetic_grad, step_size, z_grads)

    monkeypatch.setattr(integrator, "_single_step_verlet", counted)
    counting, n, num_steps = CountingTarget(CorrelatedGaussian()), 4, 8
    sampler = PyroNUTS(adapt_step_size=adapt, adapt_mass_matrix=adapt)
    evaluations = []
    run_chain(sampler, counting, n, num_steps, make_generator(2),
              on_step=lambda state, info: evaluations.append(float(info["evaluations"])))
    nfe = counting.nfe_per_particle(n)
    assert leapfrogs["steps"] >= n * num_steps  # every transition takes >= 1 leapfrog step
    assert nfe == pytest.approx(sum(evaluations))
    from_leapfrogs = leapfrogs["steps"] + leapfrogs["with_fresh_gradient"] + n  # + setup
    if not adapt:
        assert leapfrogs["with_fresh_gradient"] == 0
        assert counting.num_evaluations == from_leapfrogs
    else:
        # Pyro's step-size search also evaluates the potential once per search outside the
        # integrator (one search per chain at setup, one more per mass-matrix window).
        assert counting.num_evaluations > from_leapfrogs


# -- determinism and the global RNG -------------------------------------------------------------
def test_pyro_nuts_is_seeded_by_the_generator_and_leaves_the_global_rng_alone(pyro_module):
    target = CorrelatedGaussian()
    global_state = torch.get_rng_state()
    first = run_chain(PyroNUTS(), target, 4, 4, make_generator(5))
    assert torch.equal(torch.get_rng_state(), global_state)
    torch.manual_seed(123)  # a different global state changes nothing
    assert torch.equal(run_chain(PyroNUTS(), target, 4, 4, make_generator(5)), first)
    assert not torch.equal(run_chain(PyroNUTS(), target, 4, 4, make_generator(6)), first)


def test_two_pyro_svgd_runs_do_not_share_pyro_parameters(pyro_module):
    target, generator = CorrelatedGaussian(), make_generator(0)
    sampler = PyroSVGD()
    first = sampler.init(target, target.randn(8, 2, generator=generator), 2)
    second = sampler.init(target, target.randn(8, 2, generator=generator) + 10.0, 2)
    first, _ = sampler.step(target, first, generator)
    second, _ = sampler.step(target, second, generator)
    assert first.x.mean() < 5.0 < second.x.mean()
    assert "svgd_particles" not in pyro_module.get_param_store()


# -- through the harness -----------------------------------------------------------------------
def test_adapters_run_through_the_harness_with_counted_nfe(pyro_module, tmp_path):
    from benchmark.plan.cells import plan_cells
    from benchmark.plan.matrix import parse_matrix
    from benchmark.run.runner import run_cell

    matrix = parse_matrix({
        "name": "pyro-tiny", "seeds": [0], "n": 32, "metrics": ["ksd", "energy_distance"],
        "targets": ["gaussian"],
        "samplers": [{"name": "pyro_svgd", "budgets": [5]},
                     {"name": "pyro_nuts", "budgets": [5], "params": {"chains": "joint"}}]})
    rows = {}
    for cell in plan_cells(matrix):
        if cell.sampler is not None:
            rows[cell.sampler_label] = run_cell(cell, tmp_path / "cache").rows
    assert set(rows) == {"pyro_svgd", "pyro_nuts"}
    for label, cell_rows in rows.items():
        assert {row["status"] for row in cell_rows} == {"ok"}, (label, cell_rows)
        assert all(math.isfinite(row["value"]) for row in cell_rows), label
    assert rows["pyro_svgd"][0]["nfe"] == 6  # K + 1
    assert rows["pyro_nuts"][0]["nfe"] > 6  # several leapfrog steps per transition
