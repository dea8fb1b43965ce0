"""Contract tests parametrised over the sampler and metric registries.

A new registry entry is covered here for free: every sampler on every kind of target it can
meet in a 2-D matrix (shapes, dtype, finiteness, determinism for a fixed generator, the NFE
rule), every metric on every target whose capabilities it requires.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.metrics.base import MetricContext
from benchmark.metrics.registry import METRICS, supported_metrics
from samplers import SAMPLERS
from samplers.base import run_chain
from targets import TARGETS, make_target
from targets.base import make_generator
from targets.counting import CountingTarget
from targets.datasets import DatasetUnavailable

pytestmark = pytest.mark.usefixtures("single_thread")

#: Tiny settings so that a neural sampler trains in well under a second.
TINY_NEURAL = {"hidden_width": 16, "hidden_depth": 1, "batch_size": 32, "log_every": 1}


def draw(name: str, target, seed: int, n: int = 24, num_steps: int = 3):
    """Samples of sampler ``name`` and the NFE per particle its sampling phase cost."""
    sampler_class = SAMPLERS[name]
    counting = CountingTarget(target)
    if sampler_class.kind == "iterative":
        x = run_chain(sampler_class(), counting, n, num_steps, make_generator(seed))
        return x, counting.nfe_per_particle(n)
    sampler = sampler_class(**TINY_NEURAL)
    sampler.train(counting, 2, make_generator(seed))
    counting.reset()
    if getattr(sampler_class, "step_axis", False):  # trained once, sampled as a K-step chain
        x = run_chain(sampler, counting, n, num_steps, make_generator(seed + 1))
        return x, counting.nfe_per_particle(n)
    return sampler.sample(n, make_generator(seed + 1)), counting.nfe_per_particle(n)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampler_shapes_dtype_finiteness_and_nfe(name, dtype):
    target = make_target("mog2", dtype=dtype)
    x, nfe = draw(name, target, seed=3)
    assert x.shape == (24, 2) and x.dtype == dtype and x.device == target.device
    assert torch.isfinite(x).all()
    # The NFE rule: K transitions = K + 1 evaluations; neural sampling evaluates nothing.
    # Samplers whose cost per transition varies (NUTS) spend at least that.
    if getattr(SAMPLERS[name], "evaluations_per_step", 1) is None:
        assert nfe >= 4
    else:
        assert nfe == (4 if SAMPLERS[name].kind == "iterative" else 0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_is_deterministic_for_a_fixed_generator(name):
    target = make_target("donut")
    first, _ = draw(name, target, seed=11)
    second, _ = draw(name, target, seed=11)
    other, _ = draw(name, target, seed=12)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_registry_metadata(name):
    sampler_class = SAMPLERS[name]
    assert sampler_class.name == name
    assert sampler_class.kind in ("iterative", "neural")
    assert sampler_class.pretty_name and sampler_class.description
    with pytest.raises(ValueError, match=f"unknown parameter 'no_such_param' for sampler '{name}'"):
        sampler_class(no_such_param=1)


@pytest.mark.parametrize("target_name", sorted(TARGETS))
def test_every_supported_metric_is_finite_on_exact_samples(target_name):
    try:
        target = make_target(target_name)
    except DatasetUnavailable as missing:  # e.g. mfa_fashion without its Debian package
        pytest.skip(str(missing))
    if "reference" not in target.provides:
        pytest.skip(f"{target_name} has no reference sampler")
    x = target.sample(200, make_generator(0))
    # Metrics of the chain (ess) read a trace: an i.i.d. one of 4 chains x 50 exact draws.
    context = MetricContext(reference=target.sample(200, make_generator(1)),
                            generator=make_generator(2),
                            trace=target.sample(200, make_generator(3)).reshape(4, 50, -1),
                            trace_nfe=50.0)
    names = supported_metrics(target)
    assert "ksd" in names and "energy_distance" in names
    assert ("mode_weight_error" in names) == (target.modes() is not None)
    for name in names:
        try:
            value = METRICS[name].fn(x, target, context)
        except DatasetUnavailable:  # compares with data that is not installed here (fid_data)
            continue
        assert math.isfinite(float(value)), (target_name, name)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metric_registry_metadata(name):
    metric = METRICS[name]
    assert metric.name == name and metric.description
    assert metric.requires <= {"score", "reference", "modes", "predictive", "posterior_moments",
                               "images", "mcmc_reference"}
