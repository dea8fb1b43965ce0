"""Contract tests of the classical samplers (ULA, MALA, SVGD, annealed Langevin).

Local tiny Gaussian targets with analytic scores keep these tests independent of the target
registry. Every test is seeded and deterministic.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from analytic_targets import Gaussian, HalfLineGaussian

from samplers.annealed import AnnealedLangevin, segment_lengths, temperature_schedule
from samplers.base import run_chain
from samplers.langevin import MALA, ULA
from samplers.svgd import (
    SVGD,
    full_matrix_order_statistic,
    median_bandwidth,
    pairwise_squared_distances,
)
from targets.base import make_generator
from targets.counting import CountingTarget

SAMPLERS = [ULA, MALA, SVGD, AnnealedLangevin]
NAMES = {ULA: "ula", MALA: "mala", SVGD: "svgd", AnnealedLangevin: "annealed_langevin"}


pytestmark = pytest.mark.usefixtures("single_thread")


def _target(dtype=torch.float64) -> Gaussian:
    return Gaussian([0.5, -1.0], [1.0, 0.5], dtype=dtype)


# -- registry metadata and parameters ------------------------------------------------------------
@pytest.mark.parametrize("sampler_class", SAMPLERS)
def test_metadata_and_frozen_params(sampler_class):
    assert sampler_class.name == NAMES[sampler_class]
    assert sampler_class.pretty_name and sampler_class.description
    assert sampler_class.kind == "iterative"
    sampler = sampler_class()
    assert dataclasses.is_dataclass(sampler.params)
    field = dataclasses.fields(sampler.params)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(sampler.params, field, 1.0)


@pytest.mark.parametrize("sampler_class", SAMPLERS)
def test_unknown_parameter_names_the_valid_ones(sampler_class):
    with pytest.raises(ValueError) as error:
        sampler_class(not_a_parameter=1.0)
    message = str(error.value)
    assert "not_a_parameter" in message and sampler_class.name in message
    for field in dataclasses.fields(sampler_class.Params):
        assert field.name in message


@pytest.mark.parametrize("sampler_class", SAMPLERS)
def test_non_positive_step_size_is_rejected(sampler_class):
    with pytest.raises(ValueError, match="step_size"):
        sampler_class(step_size=0.0)


# -- state contract -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sampler_class", SAMPLERS)
def test_state_shapes_dtype_and_finiteness(sampler_class, dtype):
    target, n, num_steps = _target(dtype), 16, 6
    sampler = sampler_class()
    generator = make_generator(0)
    state = sampler.init(target, sampler.initial_positions(target, n, generator), num_steps)
    for _ in range(num_steps):
        state, info = sampler.step(target, state, generator)
        assert all(isinstance(value, torch.Tensor) and value.dim() == 0
                   for value in info.values())
    assert state.step_index == num_steps
    for tensor in (state.x, state.score):
        assert tensor.shape == (n, 2) and tensor.dtype == dtype
        assert torch.isfinite(tensor).all()
    if state.log_prob is not None:
        assert state.log_prob.shape == (n,) and state.log_prob.dtype == dtype
    samples = sampler.finalize(target, state)
    assert samples.shape == (n, 2) and samples.dtype == dtype and torch.isfinite(samples).all()


@pytest.mark.parametrize("sampler_class", SAMPLERS)
def test_determinism_for_a_fixed_generator(sampler_class):
    target = _target()
    first = run_chain(sampler_class(), target, 32, 12, make_generator(3))
    again = run_chain(sampler_class(), target, 32, 12, make_generator(3))
    other = run_chain(sampler_class(), target, 32, 12, make_generator(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("num_steps", [0, 1, 2, 9])
@pytest.mark.parametrize("sampler", [ULA(), MALA(), SVGD(), AnnealedLangevin(),
                                     AnnealedLangevin(denoise_sigma=0.1)],
                         ids=["ula", "mala", "svgd", "annealed", "annealed_denoised"])
def test_nfe_is_num_steps_plus_one_per_particle(sampler, num_steps):
    counting, n = CountingTarget(_target()), 24
    run_chain(sampler, counting, n, num_steps, make_generator(0))
    assert counting.num_evaluations == n * (num_steps + 1)
    assert counting.num_calls == num_steps + 1  # batched: one call per transition
    assert counting.num_hvp == 0


# -- MALA -----------------------------------------------------------------------------------------
def test_mala_proposal_ratio_matches_gaussian_densities():
    target, generator, step_size = _target(), make_generator(1), torch.tensor(0.3,
                                                                            dtype=torch.float64)
    x = target.randn(10, 2, generator=generator)
    x_new = target.randn(10, 2, generator=generator)
    s, s_new = target.score(x), target.score(x_new)

    def log_q(to, start, score):  # log N(to; start + (h/2) s(start), h I), constants kept
        normal = torch.distributions.Normal(start + 0.5 * step_size * score, step_size.sqrt())
        return normal.log_prob(to).sum(-1)

    expected = log_q(x, x_new, s_new) - log_q(x_new, x, s)
    actual = MALA()._log_proposal_ratio(x, x_new, s, s_new, step_size)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_mala_adapts_during_warmup_only():
    target, num_steps = _target(), 40
    step_sizes = []
    run_chain(MALA(step_size=1.5), target, 64, num_steps, make_generator(0),
              on_step=lambda state, info: step_sizes.append(float(info["step_size"])))
    warmup = num_steps // 2  # default warmup_fraction 0.5
    assert step_sizes[0] == pytest.approx(1.5)
    assert len(set(step_sizes[:warmup])) > warmup // 2  # it moves during warm-up
    assert len(set(step_sizes[warmup:])) == 1  # and is frozen afterwards


def test_mala_per_chain_steps_adapt_separately_then_freeze():
    # Each chain runs its own dual averaging on its own acceptance probabilities, so after
    # warm-up the 64 steps differ from chain to chain (and no longer change).
    target, num_steps = _target(), 40
    sampler = MALA(step_size=1.5, adaptation="per_chain")
    generator = make_generator(0)
    x = torch.zeros(64, 2, dtype=torch.float64)
    x[:32] = 6.0  # half the chains start far out, where the drift is large
    state = sampler.init(target, x, num_steps)
    assert state.log_step_size.shape == (64,)
    history = []
    for _ in range(num_steps):
        state, _ = sampler.step(target, state, generator)
        history.append(state.log_step_size.clone())
    warmup = num_steps // 2
    assert torch.equal(history[warmup - 1], history[-1])  # frozen after warm-up
    assert len(set(history[-1].tolist())) > 32  # chains got their own steps
    with pytest.raises(ValueError, match="valid choices: shared, per_chain"):
        MALA(adaptation="each")


def test_annealed_langevin_final_temperature_ends_the_schedule():
    schedule = temperature_schedule(27, 10.0, final_temperature=1.0)
    hot, geometric, linear = segment_lengths(27)
    assert schedule[hot + geometric:] == [1.0] * linear  # the linear segment stays at T = 1
    assert temperature_schedule(27, 10.0) == temperature_schedule(27, 10.0, 0.0)
    assert temperature_schedule(27, 10.0)[-1] == 0.0
    halfway = temperature_schedule(27, 10.0, final_temperature=0.5)[-linear:]
    assert halfway[0] == 1.0 and halfway[-1] == 0.5
    with pytest.raises(ValueError, match="final_temperature"):
        AnnealedLangevin(final_temperature=1.5)


def test_mala_without_warmup_keeps_its_step_size():
    step_sizes = []
    run_chain(MALA(step_size=0.2, warmup_fraction=0.0), _target(), 8, 10, make_generator(0),
              on_step=lambda state, info: step_sizes.append(float(info["step_size"])))
    assert step_sizes == pytest.approx([0.2] * 10)


def test_mala_rejects_non_finite_proposals():
    target = HalfLineGaussian([0.0], [1.0])
    sampler = MALA(step_size=4.0, warmup_fraction=0.0)  # large steps: many land in x > 1
    generator = make_generator(0)
    state = sampler.init(target, torch.full((256, 1), 0.5, dtype=torch.float64), 20)
    rates = []
    for _ in range(20):
        state, info = sampler.step(target, state, generator)
        rates.append(float(info["acceptance_rate"]))
    assert torch.isfinite(state.x).all() and (state.x <= 1.0).all()
    assert torch.isfinite(state.log_prob).all() and torch.isfinite(state.score).all()
    assert all(math.isfinite(rate) and 0.0 < rate < 1.0 for rate in rates)


# -- SVGD -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 100, 101])  # even and odd n^2
def test_svgd_median_bandwidth_matches_numpy(n):
    points = np.random.default_rng(0).normal(size=(n, 3))
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)  # zero diagonal kept
    expected = np.median(squared) / np.log(n + 1)
    actual = median_bandwidth(torch.as_tensor(squared))
    assert float(actual) == pytest.approx(expected, rel=1e-14)
    if n % 2 == 0:  # the lower middle value (torch.median) would be a different bandwidth
        lower = np.sort(squared.reshape(-1))[n * n // 2 - 1] / np.log(n + 1)
        assert lower < expected * (1 - 1e-12)
    computed = pairwise_squared_distances(torch.as_tensor(points))
    np.testing.assert_allclose(computed.numpy(), squared, rtol=1e-12, atol=1e-12)
    assert (computed.diagonal() == 0).all()


@pytest.mark.parametrize("n", [2, 3, 10, 11])
def test_full_matrix_order_statistics_equal_a_full_sort(n):
    # Adjacent ranks (the median pair) take the one-partition path, others the general one;
    # both must return exactly the entries a sort of all n^2 values puts at those ranks.
    points = np.random.default_rng(n).normal(size=(n, 2))
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)  # exactly symmetric
    ordered = np.sort(squared.reshape(-1))
    count = n * n
    for ranks in [(1, count), (n + 1, n + 2), (n + 1, min(n + 3, count)),
                  (count // 2, count // 2 + 1), ((count + 1) // 2,), (count - 1, count)]:
        actual = full_matrix_order_statistic(torch.as_tensor(squared), ranks).numpy()
        np.testing.assert_array_equal(actual, ordered[[rank - 1 for rank in ranks]])


def test_svgd_median_bandwidth_with_coincident_particles():
    # Repeated particles put zeros off the diagonal too; the order-statistic shortcut must
    # still agree with numpy.median over the full matrix (here the median is a zero).
    points = np.repeat(np.random.default_rng(1).normal(size=(3, 2)), [6, 1, 1], axis=0)
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    median = np.median(squared)
    expected = median / np.log(9) if median > 0 else 1.0
    assert float(median_bandwidth(torch.as_tensor(squared))) == pytest.approx(expected, rel=1e-14)


def test_svgd_distances_are_exact_far_from_the_origin():
    # The GEMM expansion runs on centred particles, so a cloud 1e3 units out keeps float32
    # distances accurate to the cloud's own scale (uncentred, ||x||^2 ~ 1e6 would cost ~0.1).
    points = torch.randn(200, 2, generator=make_generator(3)) + 1000.0
    exact = torch.cdist(points.double(), points.double()).square()
    computed = pairwise_squared_distances(points).double()
    assert (computed - exact).abs().max() < 1e-3


def test_svgd_direction_matches_brute_force_double_loop():
    target, n = Gaussian([0.3, -0.2, 1.0], [1.0, 2.0, 0.5]), 5
    x = target.randn(n, 3, generator=make_generator(2))
    score = target.score(x)
    direction, bandwidth = SVGD().stein_direction(x, score)
    expected = torch.zeros_like(x)
    for i in range(n):
        for j in range(n):
            x_j = x[j].clone().requires_grad_(True)
            kernel = torch.exp(-(x_j - x[i]).square().sum() / bandwidth)
            (grad_kernel,) = torch.autograd.grad(kernel, x_j)
            expected[i] += kernel.detach() * score[j] + grad_kernel
    torch.testing.assert_close(direction, expected / n, rtol=1e-12, atol=1e-12)


def test_svgd_step_rule_of_the_reference_code():
    target, sampler = _target(), SVGD(step_size=0.07)
    x = target.randn(7, 2, generator=make_generator(5))
    state = sampler.init(target, x, 2)
    phi0, _ = sampler.stein_direction(state.x, state.score)
    state1, _ = sampler.step(target, state, make_generator(0))
    torch.testing.assert_close(state1.x, x + 0.07 * phi0 / (1e-6 + phi0.abs()))
    phi1, _ = sampler.stein_direction(state1.x, state1.score)
    average = 0.9 * phi0.square() + 0.1 * phi1.square()
    state2, _ = sampler.step(target, state1, make_generator(0))
    torch.testing.assert_close(state2.x, state1.x + 0.07 * phi1 / (1e-6 + average.sqrt()))


def test_svgd_bandwidth_rule_is_injectable():
    def constant_bandwidth(squared_distances):
        return torch.ones((), dtype=squared_distances.dtype) * 0.25

    target = _target()
    sampler = SVGD(bandwidth=constant_bandwidth)
    state = sampler.init(target, target.randn(9, 2, generator=make_generator(0)), 1)
    _, info = sampler.step(target, state, make_generator(0))
    assert float(info["bandwidth"]) == 0.25


# -- annealed Langevin ----------------------------------------------------------------------------
# Largest-remainder rounding of K * (500, 2000, 200) / 2700, by hand:
#   K = 3:   quotas (0.556, 2.222, 0.222) -> floors (0, 2, 0), +1 to the largest remainder (hot)
#            -> (1, 2, 0); the empty linear segment takes one from the largest -> (1, 1, 1);
#   K = 10:  (1.852, 7.407, 0.741) -> (1, 7, 0) + 2 to hot and linear -> (2, 7, 1);
#   K = 200: (37.04, 148.15, 14.81) -> (37, 148, 14) + 1 to linear -> (37, 148, 15).
EXPECTED_SEGMENTS = {1: (0, 0, 1), 2: (1, 0, 1), 3: (1, 1, 1), 10: (2, 7, 1),
                     200: (37, 148, 15), 2700: (500, 2000, 200)}


@pytest.mark.parametrize("num_steps", sorted(EXPECTED_SEGMENTS))
def test_schedule_lengths_and_temperatures(num_steps):
    max_temperature = 100.0
    schedule = temperature_schedule(num_steps, max_temperature)
    hot, geometric, linear = segment_lengths(num_steps)
    assert (hot, geometric, linear) == EXPECTED_SEGMENTS[num_steps]
    assert len(schedule) == num_steps
    assert all(a >= b for a, b in zip(schedule, schedule[1:], strict=False))  # non-increasing
    assert schedule[:hot] == [max_temperature] * hot
    if geometric:
        assert schedule[hot] == max_temperature
        assert schedule[hot + geometric - 1] == pytest.approx(max_temperature ** (1 / geometric))
    assert schedule[hot + geometric] == 1.0  # the linear segment starts at T = 1
    assert schedule[-1] == (0.0 if linear > 1 else 1.0)


def test_schedule_small_budgets():
    assert temperature_schedule(0, 10.0) == []
    assert temperature_schedule(1, 10.0) == [1.0]
    assert temperature_schedule(2, 10.0) == [10.0, 1.0]
    assert temperature_schedule(3, 10.0) == [10.0, 10.0, 1.0]
    with pytest.raises(ValueError):
        temperature_schedule(5, 0.5)
    with pytest.raises(ValueError):
        temperature_schedule(-1, 10.0)


def test_schedule_reproduces_the_mdsm_reference_at_2700_steps():
    # Reference, as in MDSM's sample.py ('exp' schedule), rebuilt here with numpy.
    geometric = 100.0 * np.exp(-np.linspace(0, 1999, 2000) * (np.log(100.0) / 2000))
    reference = np.concatenate([np.full(500, 100.0), geometric, np.linspace(1.0, 0.0, 200)])
    schedule = np.asarray(temperature_schedule(2700, 100.0))
    # math.exp and numpy.exp may differ in the last bit, hence 1 ulp-level tolerance.
    np.testing.assert_allclose(schedule, reference, rtol=4e-16, atol=0.0)
    np.testing.assert_array_equal(schedule[2500:], reference[2500:])
    assert schedule[499] == schedule[500] == 100.0
    assert schedule[501] == pytest.approx(100.0 * math.exp(-math.log(100.0) / 2000), rel=1e-15)
    assert schedule[2499] == pytest.approx(100.0 ** (1 / 2000), rel=1e-15)
    assert (schedule[2500], schedule[2699]) == (1.0, 0.0)
    assert schedule[2600] == pytest.approx(1.0 - 100 / 199, rel=1e-15)


def test_annealed_steps_follow_the_schedule_and_stop_at_the_budget():
    target, sampler, generator = _target(), AnnealedLangevin(max_temperature=50.0), \
        make_generator(0)
    state = sampler.init(target, target.randn(4, 2, generator=generator), 10)
    temperatures = []
    for _ in range(10):
        state, info = sampler.step(target, state, generator)
        temperatures.append(float(info["temperature"]))
        assert float(info["step_size"]) == pytest.approx(temperatures[-1] * 0.1**2)
    assert temperatures == pytest.approx(temperature_schedule(10, 50.0))
    with pytest.raises(ValueError, match="beyond its schedule"):
        sampler.step(target, state, generator)


def test_annealed_update_and_denoising_step():
    target = _target()
    sampler = AnnealedLangevin(step_size=0.2, denoise_sigma=0.3)
    x = target.randn(6, 2, generator=make_generator(0))
    state = sampler.init(target, x, 1)  # K = 1: one step at T = 1
    generator = make_generator(9)
    new_state, _ = sampler.step(target, state, generator)
    noise = target.randn(6, 2, generator=make_generator(9))  # the same draw
    torch.testing.assert_close(new_state.x, x + 0.5 * 0.04 * target.score(x) + 0.2 * noise)
    counting = CountingTarget(target)
    samples = sampler.finalize(counting, new_state)
    assert counting.num_evaluations == 0  # the denoising step uses the cached score
    torch.testing.assert_close(samples, new_state.x + 0.09 * target.score(new_state.x))
