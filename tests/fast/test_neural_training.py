"""The pieces of the neural training loop: the held-out monitor, the plateau rule, EMA and the
warm starts (tiny networks, a few dozen iterations: each test takes about a second)."""

from __future__ import annotations

import math

import torch

from benchmark.metrics.ksd import ksd
from samplers.neural import DFTNS, KLNS
from samplers.neural.monitor import PlateauRule, imq_ksd
from samplers.neural.training import FALLBACK_SIGMA, resolve_sigma
from targets import CountingTarget, make_generator, make_target

TINY = dict(hidden_width=16, hidden_depth=2, batch_size=32, log_every=5, score_warmup=0)


def test_monitor_ksd_equals_the_suite_metric():
    # Same statistic (IMQ, c = 1, beta = -1/2, V-statistic): float64 sums of the same terms,
    # so they agree to a few ulps of the float64 result (1e-12 relative is ~4500 ulps).
    x = torch.randn(300, 3, generator=make_generator(0), dtype=torch.float64) * 1.3 + 0.2
    score = -x
    expected = float(ksd(x, score, kernel="imq", statistic="v"))
    assert math.isclose(imq_ksd(x, score), expected, rel_tol=1e-12)
    assert math.isnan(imq_ksd(torch.full((4, 2), math.nan), torch.zeros(4, 2)))


def test_plateau_rule_decays_then_stops():
    rule = PlateauRule(patience=2, tolerance=0.1, max_decays=1)
    # 10 improves; 9.5 is not 10% better; 8 improves; then two flat checks: decay; two more:
    # stop (after max_decays = 1 decay). A NaN counts as no improvement.
    decisions = [rule.update(v) for v in (10.0, 9.5, 8.0, 7.9, math.nan, 7.8, 7.7)]
    assert decisions == ["continue", "continue", "continue", "continue", "decay", "continue",
                         "stop"]
    assert rule.decays == 1 and rule.best == 7.7


def test_training_stops_on_a_plateau_and_logs_the_monitor():
    target = CountingTarget(make_target("gaussian"))
    sampler = KLNS(**TINY, monitor_every=5, monitor_batch=64, patience=1, max_lr_decays=1,
                   sampler_lr=1e-12, score_lr=1e-12)  # nothing moves: every check is flat
    history = sampler.train(target, 200, make_generator(0))
    # Checks at 5 (first value: improves on inf), 10 (flat: decay), 15 (flat: stop).
    assert sampler.ledger["train_iterations"] == 15 and sampler.ledger["lr_decays"] == 1
    monitor = [row["iteration"] for row in history if row["metric"] == "monitor_ksd"]
    assert monitor == [5, 10, 15]
    # Monitor evaluations are training evaluations: 15 steps x 32 + 3 checks x 64.
    assert target.num_evaluations == 15 * 32 + 3 * 64
    assert all(row["value"] >= 0 for row in history if row["metric"] == "train_seconds")


def test_ema_weights_are_the_trained_sampler():
    # With ema_decay close to 1 the averaged weights barely leave their start, so the trained
    # sampler (EMA) stays at the residual generator's initial push-forward, while the same run
    # without EMA moves.
    target = make_target("mog2")
    params = dict(TINY, monitor_every=0, warmup_iterations=0, sampler_lr=1e-2)
    start = DFTNS(**params)
    start.train(target, 0, make_generator(0))
    averaged, raw = DFTNS(**params, ema_decay=0.999999), DFTNS(**params, ema_decay=0.0)
    averaged.train(target, 20, make_generator(0))
    raw.train(target, 20, make_generator(0))
    x0, xa, xr = (s.sample(256, make_generator(1)) for s in (start, averaged, raw))
    assert (xa - x0).abs().max() < 1e-3 < (xr - x0).abs().max()


def test_residual_generator_starts_at_the_initial_law_and_sigma_follows_the_length_scale():
    target = make_target("donut")
    sampler = DFTNS(**TINY)
    sampler.train(target, 0, make_generator(0))
    x = sampler.generator_net(torch.randn(20000, 2, generator=make_generator(2)))
    # N(0, I) start: mean 0, s.d. 1 to within the 8192-draw moment estimate and the 20000-draw
    # check (s.e. of a mean 0.007 + 0.011; of a s.d. 0.005 + 0.008): 0.05 is > 3 s.e.
    assert x.mean(0).abs().max() < 0.05 and (x.std(0) - 1).abs().max() < 0.05
    assert sampler.sigma == 0.4 * target.length_scale
    assert resolve_sigma(sampler.params, None) == FALLBACK_SIGMA
    assert DFTNS(sigma=0.3).sigma == 0.3
