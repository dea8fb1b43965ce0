"""pytest-benchmark timings of the hot paths (run with ``tox -e perf`` or
``python -m pytest tests/perf -m perf``); never part of the default test run.

Each benchmark asserts the result it timed is finite, so a broken fast path cannot look fast.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.metrics.ksd import ksd_squared
from samplers.langevin import MALA
from samplers.neural import DFTNS
from samplers.svgd import SVGD
from targets import make_target
from targets.base import make_generator


@pytest.mark.parametrize("n", [1_000, 10_000])
def test_ksd_imq(benchmark, n):
    x = torch.randn(n, 2, generator=make_generator(0))
    value = benchmark(lambda: ksd_squared(x, -x, kernel="imq", statistic="v"))
    assert math.isfinite(float(value))


def _iterative_step(benchmark, sampler, n: int):
    target = make_target("donut")
    generator = make_generator(0)
    state = sampler.init(target, target.initial_positions(n, generator), 10)
    new_state, _ = benchmark(lambda: sampler.step(target, state, generator))
    assert torch.isfinite(new_state.x).all()


def test_svgd_step(benchmark):
    _iterative_step(benchmark, SVGD(), 1_000)


def test_mala_step(benchmark):
    _iterative_step(benchmark, MALA(), 1_000)


def test_dft_training_10_iterations(benchmark):
    # ``train`` builds fresh networks each call; at default sizes that is < 1% of 10 iterations.
    target = make_target("donut")
    sampler = DFTNS()
    generator = make_generator(0)
    benchmark.pedantic(lambda: sampler.train(target, 10, generator), rounds=3, iterations=1)
    assert torch.isfinite(sampler.sample(10, generator)).all()


def test_generator_sampling(benchmark):
    sampler = DFTNS()
    generator = make_generator(0)
    sampler.train(make_target("donut"), 0, generator)
    x = benchmark(lambda: sampler.sample(1_000, generator))
    assert x.shape == (1_000, 2)
