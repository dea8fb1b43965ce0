"""Unit tests of the native HMC (``hmc``) and parallel-tempering (``pt``) samplers.

Local Gaussian targets with analytic scores keep these tests independent of the target
registry; every test is seeded and deterministic. Float tolerances are multiples of the dtype's
machine epsilon, the multiple being a stated count of rounding errors. The one statistical check
(the swap move's invariance) uses a two-sided level ``ALPHA = 1e-3`` per check, as the suite
does (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from analytic_targets import Gaussian, HalfLineGaussian
from scipy import stats

from samplers import SAMPLERS
from samplers.base import run_chain
from samplers.hmc import HMC, leapfrog
from samplers.langevin import MALA
from samplers.tempering import ParallelTempering, geometric_temperatures, swap_replicas
from targets.base import Target, make_generator
from targets.counting import CountingTarget

pytestmark = pytest.mark.usefixtures("single_thread")

ALPHA = 1e-3


class Quartic(Target):
    """``log q~ = -sum(x^4 / 4 + x^2 / 2)``: non-Gaussian, analytic score in plain torch ops."""

    name = "test_quartic"

    def __init__(self, dim: int = 2) -> None:
        super().__init__(dim, dtype=torch.float64)

    def log_prob(self, x):
        return -(x.pow(4) / 4 + x.square() / 2).sum(-1)

    def score(self, x, create_graph=False):
        return -x.pow(3) - x

    def log_prob_and_score(self, x, create_graph=False):
        return self.log_prob(x), self.score(x)


def _target(dtype=torch.float64) -> Gaussian:
    return Gaussian([0.5, -1.0], [1.0, 0.5], dtype=dtype)


SAMPLER_CLASSES = [HMC, ParallelTempering]


# -- registry and parameters -----------------------------------------------------------------------
def test_registered_under_their_names():
    assert SAMPLERS["hmc"] is HMC and SAMPLERS["pt"] is ParallelTempering
    for sampler_class in SAMPLER_CLASSES:
        assert sampler_class.kind == "iterative"
        assert sampler_class.pretty_name and sampler_class.description
        params = sampler_class().params
        with pytest.raises(dataclasses.FrozenInstanceError):
            params.step_size = 1.0


@pytest.mark.parametrize(("sampler_class", "overrides", "message"), [
    (HMC, {"step_size": 0.0}, "hmc: step_size must be > 0, got 0.0"),
    (HMC, {"num_leapfrog": 0}, "hmc: num_leapfrog must be an integer >= 1, got 0"),
    (HMC, {"num_leapfrog": 2.5}, "hmc: num_leapfrog must be an integer >= 1, got 2.5"),
    (HMC, {"num_leapfrog": True}, "hmc: num_leapfrog must be an integer >= 1, got True"),
    (HMC, {"target_acceptance": 1.0}, "hmc: target_acceptance must be in (0, 1), got 1.0"),
    (HMC, {"warmup_fraction": 1.5}, "hmc: warmup_fraction must be in [0, 1], got 1.5"),
    (HMC, {"adaptation_gamma": 0.0}, "hmc: adaptation_gamma must be > 0, got 0.0"),
    (HMC, {"adaptation_t0": -1.0}, "hmc: adaptation_t0 must be >= 0, got -1.0"),
    (HMC, {"adaptation_kappa": 0.5}, "hmc: adaptation_kappa must be in (0.5, 1], got 0.5"),
    (HMC, {"adaptation": "each"}, "hmc: invalid value 'each' for parameter 'adaptation'; "
                                  "valid choices: shared, per_chain"),
    (ParallelTempering, {"num_temperatures": 0},
     "pt: num_temperatures must be an integer >= 1, got 0"),
    (ParallelTempering, {"swap_every": 1.0}, "pt: swap_every must be an integer >= 1, got 1.0"),
    (ParallelTempering, {"max_temperature": 0.5},
     "pt: max_temperature must be finite and >= 1, got 0.5"),
    (ParallelTempering, {"max_temperature": math.inf},
     "pt: max_temperature must be finite and >= 1, got inf"),
    (ParallelTempering, {"step_size": -0.1}, "pt: step_size must be > 0, got -0.1"),
    (ParallelTempering, {"target_acceptance": 0.0},
     "pt: target_acceptance must be in (0, 1), got 0.0"),
    (ParallelTempering, {"warmup_fraction": -0.5},
     "pt: warmup_fraction must be in [0, 1], got -0.5"),
    (ParallelTempering, {"adaptation_kappa": 1.5},
     "pt: adaptation_kappa must be in (0.5, 1], got 1.5"),
])
def test_invalid_parameters_raise_one_line_errors(sampler_class, overrides, message):
    # The Params dataclass validates itself (its message is checked exactly); building the
    # sampler may reject a wrongly typed value earlier, in ``build_params``, but always with a
    # one-line error that names the parameter.
    with pytest.raises(ValueError) as error:
        sampler_class.Params(**overrides)
    assert str(error.value) == message
    (name,) = overrides
    with pytest.raises(ValueError, match=f"'?{name}'?") as error:
        sampler_class(**overrides)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("sampler_class", SAMPLER_CLASSES)
def test_unknown_parameter_names_the_valid_ones(sampler_class):
    with pytest.raises(ValueError) as error:
        sampler_class(not_a_parameter=1.0)
    message = str(error.value)
    assert "not_a_parameter" in message and sampler_class.name in message
    for field in dataclasses.fields(sampler_class.Params):
        assert field.name in message


# -- state contract --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("adaptation", ["shared", "per_chain"])
def test_hmc_state_shapes_and_dtype(dtype, adaptation):
    target, n, num_steps = _target(dtype), 16, 6
    sampler = HMC(num_leapfrog=3, adaptation=adaptation)
    generator = make_generator(0)
    state = sampler.init(target, sampler.initial_positions(target, n, generator), num_steps)
    for _ in range(num_steps):
        state, info = sampler.step(target, state, generator)
        assert set(info) == {"acceptance_rate", "step_size"}
        assert all(value.dim() == 0 and value.dtype == dtype for value in info.values())
    assert state.step_index == num_steps and state.num_warmup == num_steps // 2
    assert state.x.shape == state.score.shape == (n, 2) and state.log_prob.shape == (n,)
    step_shape = (n,) if adaptation == "per_chain" else ()
    assert state.log_step_size.shape == step_shape
    for tensor in (state.x, state.score, state.log_prob, state.log_step_size):
        assert tensor.dtype == dtype and torch.isfinite(tensor).all()
    samples = sampler.finalize(target, state)
    assert samples.shape == (n, 2) and samples.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pt_state_shapes_dtype_and_returned_chains(dtype):
    target, n, num_steps, num_temperatures = _target(dtype), 16, 6, 3
    sampler = ParallelTempering(num_temperatures=num_temperatures)
    generator = make_generator(0)
    state = sampler.init(target, sampler.initial_positions(target, n, generator), num_steps)
    for _ in range(num_steps):
        state, info = sampler.step(target, state, generator)
        assert {"acceptance_rate", "step_size"} <= set(info) <= {"acceptance_rate", "step_size",
                                                                 "swap_rate"}
        assert all(value.dim() == 0 and value.dtype == dtype for value in info.values())
    rows = num_temperatures * n
    assert state.x.shape == state.score.shape == (rows, 2) and state.log_prob.shape == (rows,)
    assert state.log_step_size.shape == state.inverse_temperatures.shape == (num_temperatures,)
    for tensor in (state.x, state.score, state.log_prob, state.log_step_size,
                   state.inverse_temperatures):
        assert tensor.dtype == dtype and torch.isfinite(tensor).all()
    samples = sampler.finalize(target, state)
    assert samples.shape == (n, 2) and samples.dtype == dtype
    assert torch.equal(samples, state.x[:n])  # the T = 1 rung comes first
    # A copy: storing the samples does not keep the other rungs' storage alive.
    assert samples.untyped_storage().nbytes() == n * 2 * samples.element_size()


def test_pt_init_starts_every_rung_of_a_system_at_its_position():
    x = _target().randn(5, 2, generator=make_generator(1))
    state = ParallelTempering(num_temperatures=3).init(_target(), x, 10)
    assert torch.equal(state.x.view(3, 5, 2), x.expand(3, 5, 2))
    # Rung k starts at h T_k: the tempered density's variance grows like T.
    temperatures = geometric_temperatures(3, 10.0)
    torch.testing.assert_close(state.log_step_size.exp(), 0.1 * temperatures)


@pytest.mark.parametrize("sampler", [HMC(), HMC(adaptation="per_chain"), ParallelTempering()],
                         ids=["hmc", "hmc_per_chain", "pt"])
def test_determinism_for_a_fixed_generator_and_global_rng_untouched(sampler):
    target = _target()
    global_state = torch.random.get_rng_state()
    first = run_chain(sampler, target, 32, 12, make_generator(3))
    assert torch.equal(torch.random.get_rng_state(), global_state)  # only the generator
    again = run_chain(sampler, target, 32, 12, make_generator(3))
    other = run_chain(sampler, target, 32, 12, make_generator(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


# -- NFE -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_steps", [0, 1, 5])
@pytest.mark.parametrize("num_leapfrog", [1, 3, 10])
def test_hmc_nfe_is_num_leapfrog_per_step_per_chain(num_leapfrog, num_steps):
    counting, n = CountingTarget(_target()), 24
    run_chain(HMC(num_leapfrog=num_leapfrog), counting, n, num_steps, make_generator(0))
    # init: one fused evaluation; each transition: one per leapfrog step (score cached).
    assert counting.num_evaluations == n * (num_leapfrog * num_steps + 1)
    assert counting.num_calls == num_leapfrog * num_steps + 1  # batched over the chains
    assert counting.nfe_per_particle(n) == num_leapfrog * num_steps + 1
    assert counting.num_hvp == 0


@pytest.mark.parametrize("num_steps", [0, 1, 7])
@pytest.mark.parametrize(("num_temperatures", "swap_every"), [(1, 1), (2, 3), (5, 1)])
def test_pt_nfe_is_num_temperatures_per_step_per_returned_chain(num_temperatures, swap_every,
                                                                num_steps):
    counting, n = CountingTarget(_target()), 24
    sampler = ParallelTempering(num_temperatures=num_temperatures, swap_every=swap_every)
    samples = run_chain(sampler, counting, n, num_steps, make_generator(0))
    assert samples.shape == (n, 2)
    # Every replica: one fused evaluation in init and one per transition; swaps evaluate nothing.
    assert counting.nfe_per_particle(n) == num_temperatures * (num_steps + 1)
    assert counting.num_calls == num_steps + 1  # all K n replicas in one call
    assert counting.num_hvp == 0


# -- HMC -------------------------------------------------------------------------------------------
def test_one_leapfrog_step_is_mala_with_h_equal_to_epsilon_squared():
    # With L = 1: x' = x + eps p + (eps^2 / 2) s(x), p ~ N(0, I), which is MALA's proposal with
    # h = eps^2 and xi = p (both samplers draw p / xi first from the same generator, then the
    # acceptance uniform). The acceptance ratios are equal too: MALA's backward residual is
    # x - x' - (h/2) s(x') = -eps p', so ||.||^2 / (2h) = ||p'||^2 / 2, the kinetic energy
    # after the step. The chains agree to rounding: a few dozen roundings per transition,
    # accumulating at most linearly over the transitions (positions are O(1)).
    target, n, num_steps, epsilon = _target(), 64, 20, 0.7
    hmc = run_chain(HMC(num_leapfrog=1, step_size=epsilon, warmup_fraction=0.0), target, n,
                    num_steps, make_generator(5))
    mala = run_chain(MALA(step_size=epsilon**2, warmup_fraction=0.0), target, n, num_steps,
                     make_generator(5))
    tolerance = 64 * num_steps * torch.finfo(torch.float64).eps
    torch.testing.assert_close(hmc, mala, rtol=tolerance, atol=tolerance)
    # And the acceptance probabilities of one transition from the same state.
    x = target.randn(n, 2, generator=make_generator(6))
    rates = []
    for sampler in (HMC(num_leapfrog=1, step_size=epsilon, warmup_fraction=0.0),
                    MALA(step_size=epsilon**2, warmup_fraction=0.0)):
        _, info = sampler.step(target, sampler.init(target, x, 1), make_generator(7))
        rates.append(info["acceptance_rate"])
    assert 0.0 < float(rates[1]) < 1.0
    torch.testing.assert_close(rates[0], rates[1], rtol=tolerance, atol=tolerance)


def test_leapfrog_on_a_gaussian_conserves_a_shadow_energy_exactly():
    # On N(0, diag(sigma^2)) each coordinate is a harmonic oscillator of frequency w = 1/sigma;
    # the kick-drift-kick map conserves p^2/2 + (w^2 x^2 / 2)(1 - eps^2 w^2 / 4) exactly, so
    # H(x_L, p_L) - H(x_0, p_0) = sum_i (eps^2 w_i^4 / 8) (x_{L,i}^2 - x_{0,i}^2):
    # the energy error is O(eps^2) and bounded along the trajectory (eps w < 2).
    target, num_steps = Gaussian([0.0, 0.0, 0.0], [1.0, 0.5, 2.0]), 25
    generator = make_generator(2)
    x0 = target.randn(200, 3, generator=generator) * target.scale
    p0 = target.randn(200, 3, generator=generator)
    frequency = 1.0 / target.scale

    def energy(x, p):
        return -target.log_prob(x) + 0.5 * p.square().sum(-1)

    for epsilon in (0.4, 0.2, 0.1):
        x, p, log_prob, score = leapfrog(target, x0, p0, target.score(x0), epsilon, num_steps)
        torch.testing.assert_close(log_prob, target.log_prob(x))
        torch.testing.assert_close(score, target.score(x))
        predicted = (epsilon**2 * frequency.pow(4) / 8 * (x.square() - x0.square())).sum(-1)
        # Energies are O(10); each step adds a few roundings of that size.
        tolerance = 16 * num_steps * torch.finfo(torch.float64).eps * 10.0
        torch.testing.assert_close(energy(x, p) - energy(x0, p0), predicted, rtol=0.0,
                                   atol=tolerance)
        assert float((energy(x, p) - energy(x0, p0)).abs().max()) > tolerance  # not trivial


def test_leapfrog_is_time_reversible_and_volume_preserving_on_a_non_gaussian_target():
    target, num_steps, epsilon = Quartic(), 12, 0.05
    generator = make_generator(3)
    x0, p0 = target.randn(50, 2, generator=generator), target.randn(50, 2, generator=generator)
    x, p, _, score = leapfrog(target, x0, p0, target.score(x0), epsilon, num_steps)
    # Reversibility: flip the momentum, integrate again, flip it back: the start, to rounding
    # (a few roundings per step and coordinate, positions and momenta O(1)).
    x_back, p_back, _, _ = leapfrog(target, x, -p, score, epsilon, num_steps)
    tolerance = 16 * num_steps * torch.finfo(torch.float64).eps
    torch.testing.assert_close(x_back, x0, rtol=0.0, atol=tolerance)
    torch.testing.assert_close(-p_back, p0, rtol=0.0, atol=tolerance)
    # Volume preservation: the Jacobian of (x, p) -> (x_L, p_L) has determinant 1.
    start = torch.cat((x0[0], p0[0]))

    def flow(z):
        x_end, p_end, _, _ = leapfrog(target, z[None, :2], z[None, 2:],
                                      target.score(z[None, :2]), epsilon, num_steps)
        return torch.cat((x_end[0], p_end[0]))

    jacobian = torch.autograd.functional.jacobian(flow, start)
    assert abs(float(torch.linalg.det(jacobian)) - 1.0) <= tolerance


class HMCWithoutKineticEnergy(HMC):
    """Broken on purpose: drops the momenta from the Metropolis ratio."""

    def _log_acceptance(self, log_prob, log_prob_new, momentum, momentum_new):
        return log_prob_new - log_prob


def test_hmc_acceptance_hook_is_the_energy_difference():
    hmc = HMC()
    log_prob, log_prob_new = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -0.5])
    momentum, momentum_new = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 1.0],
                                                                                  [1.0, 1.0]])
    expected = torch.tensor([-0.5 - 0.5 + 0.5, 1.5 - 1.0 + 2.0])
    torch.testing.assert_close(hmc._log_acceptance(log_prob, log_prob_new, momentum,
                                                   momentum_new), expected)
    broken = HMCWithoutKineticEnergy()._log_acceptance(log_prob, log_prob_new, momentum,
                                                       momentum_new)
    assert not torch.allclose(broken, expected)


def test_hmc_adapts_during_warmup_only_and_per_chain_steps_freeze():
    target, num_steps = _target(), 40
    step_sizes = []
    run_chain(HMC(step_size=1.5, num_leapfrog=3), target, 64, num_steps, make_generator(0),
              on_step=lambda state, info: step_sizes.append(float(info["step_size"])))
    warmup = num_steps // 2
    assert step_sizes[0] == pytest.approx(1.5)
    assert len(set(step_sizes[:warmup])) > warmup // 2
    assert len(set(step_sizes[warmup:])) == 1
    sampler, generator = HMC(step_size=1.5, num_leapfrog=3, adaptation="per_chain"), \
        make_generator(0)
    x = torch.zeros(64, 2, dtype=torch.float64)
    x[:32] = 6.0
    state = sampler.init(target, x, num_steps)
    history = []
    for _ in range(num_steps):
        state, _ = sampler.step(target, state, generator)
        history.append(state.log_step_size.clone())
    assert torch.equal(history[warmup - 1], history[-1])
    assert len(set(history[-1].tolist())) > 32


def test_hmc_without_warmup_keeps_its_step_size():
    step_sizes = []
    run_chain(HMC(step_size=0.2, warmup_fraction=0.0), _target(), 8, 10, make_generator(0),
              on_step=lambda state, info: step_sizes.append(float(info["step_size"])))
    assert step_sizes == pytest.approx([0.2] * 10)


def test_hmc_rejects_non_finite_proposals():
    target = HalfLineGaussian([0.0], [1.0])
    sampler = HMC(step_size=1.0, num_leapfrog=3, warmup_fraction=0.0)
    generator = make_generator(0)
    state = sampler.init(target, torch.full((256, 1), 0.5, dtype=torch.float64), 20)
    rates = []
    for _ in range(20):
        state, info = sampler.step(target, state, generator)
        rates.append(float(info["acceptance_rate"]))
    assert torch.isfinite(state.x).all() and (state.x <= 1.0).all()
    assert torch.isfinite(state.log_prob).all() and torch.isfinite(state.score).all()
    assert all(math.isfinite(rate) and 0.0 < rate < 1.0 for rate in rates)


# -- parallel tempering ----------------------------------------------------------------------------
def test_geometric_ladder_has_exact_endpoints():
    ladder = geometric_temperatures(4, 10.0)
    assert ladder.dtype == torch.float64 and ladder[0] == 1.0 and ladder[-1] == 10.0
    torch.testing.assert_close(ladder[1:] / ladder[:-1],
                               torch.full((3,), 10.0 ** (1 / 3), dtype=torch.float64))
    assert torch.equal(geometric_temperatures(1, 10.0), torch.ones(1, dtype=torch.float64))


def test_pt_with_one_temperature_is_mala():
    # K = 1: one rung at T = 1, no swap pairs, the same generator draws in the same order, so
    # the chain is MALA's to rounding (same adaptation: mu = log(10 h), per-rung mean
    # acceptance = MALA's shared mean).
    target, n, num_steps = _target(), 64, 30
    pt = run_chain(ParallelTempering(num_temperatures=1), target, n, num_steps,
                   make_generator(8))
    mala = run_chain(MALA(), target, n, num_steps, make_generator(8))
    tolerance = 64 * num_steps * torch.finfo(torch.float64).eps
    torch.testing.assert_close(pt, mala, rtol=tolerance, atol=tolerance)


def test_pt_swap_rounds_alternate_even_and_odd_pairs_every_swap_every_steps():
    # K = 2 has one pair (0, 1), so only even rounds have a swap to attempt: with swap_every 2,
    # rounds happen after transitions 2, 4, 6, ... and alternate even, odd, even, ...
    sampler, target = ParallelTempering(num_temperatures=2, swap_every=2), _target()
    generator = make_generator(0)
    state = sampler.init(target, sampler.initial_positions(target, 16, generator), 12)
    with_swaps = []
    for _ in range(12):
        state, info = sampler.step(target, state, generator)
        if "swap_rate" in info:
            with_swaps.append(state.step_index)
    assert with_swaps == [2, 6, 10]


def test_swap_round_moves_only_its_pairs_and_carries_the_cached_values():
    num_temperatures, n = 3, 400
    target = Gaussian([0.0, 0.0], [1.0, 1.0])
    x = target.randn(num_temperatures * n, 2, generator=make_generator(0))
    log_prob, score = target.log_prob_and_score(x)
    betas = 1.0 / geometric_temperatures(num_temperatures, 10.0)
    for parity, untouched in ((0, 2), (1, 0)):
        new_x, new_log_prob, new_score, probability = swap_replicas(
            x, log_prob, score, betas, parity, make_generator(1))
        assert probability.shape == (1, n)
        levels = slice(untouched * n, (untouched + 1) * n)
        assert torch.equal(new_x[levels], x[levels])
        moved = ~(new_x == x).all(-1)
        assert 0 < int(moved.sum()) < 2 * n  # some but not all swaps accepted
        # Each row's cached values travel with its position.
        assert torch.equal(new_log_prob, target.log_prob(new_x))
        assert torch.equal(new_score, target.score(new_x))


def test_swap_acceptance_satisfies_detailed_balance():
    # For states a (at T_k) and b (at T_{k+1}), pi(a, b) alpha(a, b -> b, a) must equal
    # pi(b, a) alpha(b, a -> a, b), pi = q^beta_k (first) q^beta_{k+1} (second), in log space.
    num_temperatures, n = 2, 300
    target = Gaussian([0.0, 0.0], [1.0, 1.0])
    generator = make_generator(4)
    a = 3.0 * target.randn(n, 2, generator=generator)
    b = 3.0 * target.randn(n, 2, generator=generator)
    betas = 1.0 / geometric_temperatures(num_temperatures, 5.0)

    def log_pi_and_alpha(first, second):
        x = torch.cat((first, second))
        log_prob, score = target.log_prob_and_score(x)
        _, _, _, probability = swap_replicas(x, log_prob, score, betas, 0, make_generator(0))
        log_pi = betas[0] * target.log_prob(first) + betas[1] * target.log_prob(second)
        return log_pi, probability[0].log()

    forward, forward_alpha = log_pi_and_alpha(a, b)
    backward, backward_alpha = log_pi_and_alpha(b, a)
    # Every probability positive (finite logs) and some below one: a meaningful comparison.
    assert torch.isfinite(forward_alpha).all() and torch.isfinite(backward_alpha).all()
    assert bool((forward_alpha < 0).any()) and bool((backward_alpha < 0).any())
    # Log-densities are O(10) here; a few roundings each.
    tolerance = 16 * torch.finfo(torch.float64).eps * 100.0
    torch.testing.assert_close(forward + forward_alpha, backward + backward_alpha, rtol=0.0,
                               atol=tolerance)


def _tempered_gaussian_levels(x: torch.Tensor, temperatures: torch.Tensor, n: int) -> list[bool]:
    """Whether each level's ``n`` rows are consistent with ``N(0, T_k I)``: two-sided
    chi-square interval for the known-mean variance, level ``ALPHA / K`` (Bonferroni over the
    ``K`` levels). The ``n`` systems are independent, so each level holds ``n`` iid draws."""
    num_temperatures, dim = temperatures.shape[0], x.shape[1]
    alpha = ALPHA / num_temperatures
    dof = n * dim
    low, high = stats.chi2.ppf(alpha / 2, dof), stats.chi2.ppf(1 - alpha / 2, dof)
    levels = x.view(num_temperatures, n, dim)
    return [bool(low <= float(levels[k].square().sum() / temperatures[k]) <= high)
            for k in range(num_temperatures)]


def test_swap_move_leaves_a_product_of_tempered_gaussians_invariant():
    # q = N(0, I): the rung at T has q^(1/T) = N(0, T I). Start from an exact draw of the
    # product over rungs, apply swap rounds of both parities: if the swap move leaves the
    # product invariant, every rung is still exactly N(0, T_k I).
    num_temperatures, n = 4, 20_000
    target = Gaussian([0.0, 0.0], [1.0, 1.0])
    temperatures = geometric_temperatures(num_temperatures, 10.0)
    betas = 1.0 / temperatures
    generator = make_generator(9)
    x = (target.randn(num_temperatures * n, 2, generator=generator)
         * temperatures.repeat_interleave(n).sqrt().unsqueeze(-1))
    log_prob, score = target.log_prob_and_score(x)
    assert all(_tempered_gaussian_levels(x, temperatures, n))
    rates = []
    for parity in (0, 1, 0, 1):
        x, log_prob, score, probability = swap_replicas(x, log_prob, score, betas, parity,
                                                        generator)
        rates.append(float(probability.mean()))
    assert all(0.1 < rate < 0.9 for rate in rates)  # swaps did happen (and were selective)
    assert all(_tempered_gaussian_levels(x, temperatures, n))
    # Power: swaps accepted regardless of the temperatures (beta_k all equal in the ratio)
    # mix hot draws into the cold rung, and the same check must catch it.
    start = (target.randn(num_temperatures * n, 2, generator=generator)
             * temperatures.repeat_interleave(n).sqrt().unsqueeze(-1))
    log_prob, score = target.log_prob_and_score(start)
    broken, _, _, _ = swap_replicas(start, log_prob, score, torch.ones_like(betas), 0, generator)
    assert not all(_tempered_gaussian_levels(broken, temperatures, n))


def test_pt_step_sizes_adapt_per_temperature_during_warmup_only():
    target, num_steps, num_temperatures = _target(), 40, 4
    sampler, generator = ParallelTempering(num_temperatures=num_temperatures), make_generator(0)
    state = sampler.init(target, sampler.initial_positions(target, 64, generator), num_steps)
    history = []
    for _ in range(num_steps):
        state, _ = sampler.step(target, state, generator)
        history.append(state.log_step_size.clone())
    warmup = num_steps // 2
    assert torch.equal(history[warmup - 1], history[-1])  # frozen after warm-up
    assert not torch.equal(history[0], history[warmup - 1])  # moved during it
    assert len(set(history[-1].tolist())) == num_temperatures  # one step per rung
