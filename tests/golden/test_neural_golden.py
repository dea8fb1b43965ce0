"""Golden tiny-budget runs of the neural samplers on CPU, and their training-loop contract.

Budgets are reduced from the defaults (3 x 256 SiLU networks, 3000 iterations, about 43 s per
1000 iterations on this machine) to width 64 and 1000 iterations so each run takes ~10 s. The
DFT-NS golden runs also use sigma = 0.3 and sampler_lr = 3e-4: at the default sigma = 0.05 the
gradient noise (it scales like 1/sigma) keeps the sampler far from converged at this budget.
Energy distances use n = 1000 against exact samples; the floor is the same statistic between two
independent exact sets of size n, averaged over 5 seeds. Everything is seeded, CPU, float32.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.metrics.distances import energy_distance
from benchmark.metrics.modes import mode_weights
from samplers.neural import DFTNS, KLNS, FisherNS, NeuralImplicitSampler
from targets import CountingTarget, make_generator, make_target

N = 1000
# The plain MLP generator starts as a blob near the origin, far from every target here, so
# "training reaches the floor" is a real check (the default residual generator starts at
# N(0, I), which *is* the gaussian target).
GOLDEN = dict(sigma=0.3, hidden_width=64, batch_size=512, sampler_lr=3e-4,
              generator_architecture="mlp")
GOLDEN_ITERATIONS = 1000
TINY = dict(hidden_width=16, hidden_depth=2, batch_size=32, log_every=5)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on the shared 2-core machine two threads ran ~7x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def floor(target) -> float:
    """Mean energy distance between two independent exact sample sets of size N (5 seeds)."""
    values = [float(energy_distance(target.sample(N, make_generator(100 + k)),
                                    target.sample(N, make_generator(200 + k))))
              for k in range(5)]
    return sum(values) / len(values)


def train_golden(target, iterations: int = GOLDEN_ITERATIONS) -> DFTNS:
    sampler = DFTNS(**GOLDEN)
    sampler.train(target, iterations, make_generator(0))
    return sampler


def distance(sampler: NeuralImplicitSampler, target) -> float:
    reference = target.sample(N, make_generator(2))
    return float(energy_distance(sampler.sample(N, make_generator(1)), reference))


def test_dft_gaussian_reaches_twice_the_floor():
    target = make_target("gaussian")
    limit = 2.0 * floor(target)
    untrained = train_golden(target, iterations=0)
    assert distance(untrained, target) > limit
    trained = train_golden(target)
    assert distance(trained, target) <= limit
    assert trained.ledger["train_iterations"] == GOLDEN_ITERATIONS


def test_dft_mog2_untrained_generator_fails_the_golden_check():
    target = make_target("mog2")
    untrained = train_golden(target, iterations=0)
    x = untrained.sample(N, make_generator(1))
    balanced = bool((mode_weights(x, target.modes()) - 0.5).abs().max() <= 0.1)
    close = distance(untrained, target) <= 3.0 * floor(target)
    assert not (close and balanced)
    # The untrained output is a small blob near the origin, which the nearest-mode rule can
    # split about evenly (0.53 / 0.47 here): it is the distance that fails, by far.
    assert not close


@pytest.mark.xfail(strict=True, reason=(
    "DFT-NS fixes mog2's mode weights early and its objective barely restores them (measured, "
    "width 64, sigma 0.3, 1000 its, seeds 0-3): the default MLP generator starts as a blob of s.d. "
    "0.05 off the separatrix and drains a mode (0.72 after 25 its, 0.99/0.01 at 1000, 270x the "
    "ED floor); a residual generator x = z + MLP(z) with a zero last layer (push-forward exactly "
    "N(0, I) at init) stays two-moded but, with score_steps 5, ends at mode-0 weights "
    "0.50/0.64/0.53/0.56 (ED 1.4/19/0.9/4.9x floor); batch 2048 (score_steps 2) gives "
    "0.49/0.60/0.51/0.35, and "
    "sampler lr 1e-4 (seed 1: 0.59) or a warm-started score net (seeds 1, 3: 0.65, 0.45) do not "
    "fix it, nor did a sigma schedule 1.0 -> 0.3 (seeds 1, 2: 0.68, 0.29). The Fisher "
    "divergence of the exact mixture with weights 0.4/0.6 is 0.0013 (collapsed: 0.057) while its "
    "energy distance is ~20x the floor, so the objective cannot hold the weights to the ~0.03 "
    "the 3x-floor check needs"))
def test_dft_mog2_reaches_three_times_the_floor_with_balanced_modes():
    target = make_target("mog2")
    limit = 3.0 * floor(target)
    trained = train_golden(target)
    weights = mode_weights(trained.sample(N, make_generator(1)), target.modes())
    assert (weights - 0.5).abs().max() <= 0.1
    assert distance(trained, target) <= limit


def test_checkpoint_round_trip_and_sampling_costs_no_target_evaluation(tmp_path):
    target = CountingTarget(make_target("mog2"))
    sampler = DFTNS(**TINY)
    sampler.train(target, 10, make_generator(0))
    assert target.num_evaluations > 0
    target.reset()
    path = tmp_path / "dft.pt"
    sampler.save(path)
    restored = DFTNS()  # parameters come from the checkpoint
    restored.load(path)
    assert restored.params == sampler.params
    torch.testing.assert_close(restored.sample(64, make_generator(7)),
                               sampler.sample(64, make_generator(7)), rtol=0, atol=0)
    x = sampler.sample(N, make_generator(8))
    assert x.shape == (N, 2) and torch.isfinite(x).all()
    assert target.num_evaluations == 0 and target.num_calls == 0  # sampling never sees q
    with pytest.raises(ValueError, match="kl_ns"):
        KLNS().load(path)


@pytest.mark.parametrize("sampler_class, hvp_per_evaluation", [
    (DFTNS, 1), (KLNS, 0), (FisherNS, 1),
])
def test_training_counts_target_evaluations_and_is_deterministic(sampler_class,
                                                                  hvp_per_evaluation):
    iterations = 12
    target = CountingTarget(make_target("mog2"))
    first = sampler_class(**TINY)
    history = first.train(target, iterations, make_generator(3))
    # One target evaluation per sample per sampler step; DSM steps never touch the target.
    assert target.num_evaluations == iterations * TINY["batch_size"]
    assert target.num_hvp == hvp_per_evaluation * target.num_evaluations
    assert {row["iteration"] for row in history} == {5, 10, 12}
    assert all(set(row) == {"iteration", "metric", "value"} for row in history)
    assert first.ledger["train_iterations"] == iterations and first.ledger["train_seconds"] > 0
    second = sampler_class(**TINY)
    second.train(make_target("mog2"), iterations, make_generator(3))
    torch.testing.assert_close(first.sample(64, make_generator(4)),
                               second.sample(64, make_generator(4)), rtol=0, atol=0)


def test_callback_metrics_enter_the_history():
    calls = []

    def callback(iteration, sampler):
        calls.append(iteration)
        return {"mean_norm": float(sampler.sample(16, make_generator(9)).norm(dim=-1).mean())}

    history = KLNS(**TINY).train(make_target("gaussian"), 10, make_generator(0), callback)
    assert calls == [5, 10]
    assert [row["iteration"] for row in history if row["metric"] == "mean_norm"] == [5, 10]


def test_noised_output_adds_sigma_noise_to_the_clean_output():
    target = make_target("gaussian")
    noised, clean = DFTNS(output="noised", **TINY), DFTNS(output="clean", **TINY)
    noised.train(target, 0, make_generator(0))
    clean.train(target, 0, make_generator(0))
    # Same z (drawn first), so the difference is sigma * eps; its variance is sigma^2.
    difference = noised.sample(20000, make_generator(5)) - clean.sample(20000, make_generator(5))
    variance = difference.var(dim=0)
    # Sample variance of n = 20000 normals has relative s.d. sqrt(2/n) = 1%; 5% > 3.29 s.d.
    # (two-sided alpha = 1e-3).
    torch.testing.assert_close(variance, torch.full_like(variance, noised.sigma**2), rtol=0.05,
                               atol=0)


# -- the defaults (docs/tuning.md) on the targets that collapsed the old configuration ------------
DEFAULTS_ITERATIONS = 3000  # the plateau rule may stop earlier; capped to keep CI short
ANGLE_BINS = 16


def angular_shares(x: torch.Tensor) -> torch.Tensor:
    """Share of samples per angular sector of the plane, ``(n, 2) -> (ANGLE_BINS,)``."""
    angle = torch.atan2(x[:, 1], x[:, 0])  # (-pi, pi]
    sector = ((angle + torch.pi) / (2 * torch.pi) * ANGLE_BINS).long().clamp(0, ANGLE_BINS - 1)
    return torch.bincount(sector, minlength=ANGLE_BINS).to(x.dtype) / x.shape[0]


def test_dft_defaults_cover_the_donut_ring():
    # The old configuration (plain MLP generator) kept one arc: 2.25, 230x its floor, in
    # paper-2d. Coverage: each of 16 sectors holds at least a quarter of its 1/16 share. A
    # sector's count is binomial(1000, 1/16) (mean 62.5, s.d. 7.7) for an exact sampler, which
    # falls below 16 with probability < 1e-8 per sector. The defaults cover every sector but not
    # evenly (shares 0.031-0.111 here: the Fisher objective hardly sees how mass is spread
    # along the ring), hence a quarter rather than half of the share.
    target = make_target("donut")
    sampler = DFTNS()
    sampler.train(target, DEFAULTS_ITERATIONS, make_generator(0))
    x = sampler.sample(N, make_generator(1))
    shares = angular_shares(x)
    assert shares.min() >= 0.25 / ANGLE_BINS, f"sector shares {shares.tolist()}"
    radius = x.norm(dim=1)
    # Exact radius: mean 2.606, s.d. 0.128; 0.1 is 25 standard errors of the mean at n = 1000.
    assert abs(float(radius.mean()) - 2.606) <= 0.1
    ratio = distance(sampler, target) / floor(target)
    assert ratio <= 10.0, f"energy distance {ratio:.1f} x the floor"


@pytest.mark.xfail(strict=True, reason=(
    "DFT-NS at its defaults leaves mass on bridges between mog8's modes: the generator, a "
    "continuous map of one Gaussian, spreads along the ring of modes and 2-4 of the 8 modes "
    "get less than half their weight (tuning trials, seed 100: recall 0.75 at sigma 0.05 and "
    "0.2, 0.625 with the score warm start, 0.75 at batch 2048; the recorded round tuning-2d: "
    "0.5 for the defaults, without the warm start and at sigma_fraction 0.8, 0.625 for "
    "Fisher-NS, 1.0 for KL-NS, whose objective holds the sampler's entropy; docs/tuning.md). "
    "The Fisher divergence barely sees the weights of separated modes"))
def test_dft_defaults_find_every_mode_of_mog8():
    target = make_target("mog8")
    sampler = DFTNS()
    sampler.train(target, DEFAULTS_ITERATIONS, make_generator(0))
    weights = mode_weights(sampler.sample(N, make_generator(1)), target.modes())
    assert bool((weights >= 0.5 / 8).all()), f"mode weights {weights.tolist()}"
