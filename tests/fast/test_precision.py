"""TF32 switches: set inside the block, restored after it (also when the block raises)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.metrics.base import MetricContext
from benchmark.metrics.registry import METRICS
from samplers import SAMPLERS
from targets import make_target
from targets.base import make_generator
from targets.precision import exact_float32, tf32


def _flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("enabled", [True, False])
def test_tf32_context_sets_and_restores_both_flags(enabled):
    before = _flags()
    with tf32(enabled):
        assert _flags() == (enabled, enabled)
    assert _flags() == before
    with pytest.raises(RuntimeError), tf32(enabled):
        raise RuntimeError("inside")
    assert _flags() == before


def test_metrics_run_without_tf32_and_energies_with_it(monkeypatch):
    seen = {}
    target = make_target("ebm_digits")
    energy_forward = target.energy.forward

    def spy_forward(x):
        seen["energy"] = _flags()
        return energy_forward(x)

    monkeypatch.setattr(target.energy, "forward", spy_forward)
    with tf32(True):  # whatever the caller set, a metric computes in full float32
        x = target.initial_positions(8, make_generator(0))
        target.log_prob(x)
        assert seen["energy"] == (True, True)
        observed = {}
        metric = dataclasses.replace(METRICS["ksd"],
                                     fn=lambda s, t, c: observed.setdefault("f", _flags()))
        metric(torch.zeros(4, 2), make_target("gaussian"), MetricContext(None, make_generator(0)))
        assert observed["f"] == (False, False)


def test_exact_float32_overrides_a_nested_tf32_allowance():
    before = _flags()
    with exact_float32():
        assert _flags() == (False, False)
        with tf32(True):  # what an EBM target's log_prob does
            assert _flags() == (False, False)
        assert _flags() == (False, False)
    with tf32(True):
        assert _flags() == (True, True)  # outside the block, the allowance works again
    assert _flags() == before


def test_mala_evaluates_an_energy_target_in_full_float32(monkeypatch):
    seen = []
    target = make_target("ebm_digits")
    energy_forward = target.energy.forward

    def spy_forward(x):
        seen.append(_flags())
        return energy_forward(x)

    monkeypatch.setattr(target.energy, "forward", spy_forward)
    sampler = SAMPLERS["mala"]()
    generator = make_generator(0)
    with tf32(True):
        state = sampler.init(target, target.initial_positions(4, generator), num_steps=2)
        sampler.step(target, state, generator)
    assert seen and all(flags == (False, False) for flags in seen)
