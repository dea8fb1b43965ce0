"""pytest-benchmark timings of the Pyro adapters beside ours (perf tier; skipped without Pyro).

On ``donut``, as ``test_perf_hot_paths.py``, but with one torch thread (as the brief's
comparison; the hot-path file keeps torch's default): Pyro's SVGD step beside ours at ``n = 100``
and ``1000``, and one Pyro HMC transition of ``LEAPFROG_STEPS`` (10) fixed leapfrog steps -- one
chain, and one joint kernel over ``n = 1000`` chains -- beside our MALA step at ``n = 1000``
(one evaluation per chain). The ratios themselves, measured in one process, come from
``python -m samplers.external.compare_pyro``.

Pyro's states are stepped in place, so each timed call advances the run; its cost per call does
not depend on where the particles are (no NUTS trees are timed).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from samplers.base import IterativeSampler
from samplers.langevin import MALA
from samplers.svgd import SVGD
from targets import make_target
from targets.base import make_generator

pytest.importorskip("pyro")
pytestmark = pytest.mark.usefixtures("single_thread")

from samplers.external.compare_pyro import fixed_hmc  # noqa: E402
from samplers.external.pyro import PyroSVGD  # noqa: E402


def stepper(sampler: IterativeSampler, n: int, device: str, mutable: bool) -> Callable[[], None]:
    """One ``step`` at ``n`` particles on ``donut``, synchronised on CUDA; Pyro's in place."""
    target = make_target("donut", device=device)
    generator = make_generator(0, device)
    holder = [sampler.init(target, target.initial_positions(n, generator), 10_000)]

    def call() -> None:
        new_state, _ = sampler.step(target, holder[0], generator)
        assert torch.isfinite(new_state.x).all()
        if mutable:
            holder[0] = new_state
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    call()  # first call: Pyro's setup (MCMC kernels) is not part of a step's cost
    return call


@pytest.mark.parametrize("n", [100, 1_000])
def test_pyro_svgd_step(benchmark, device, n):
    benchmark(stepper(PyroSVGD(), n, device, mutable=True))


@pytest.mark.parametrize("n", [100, 1_000])
def test_our_svgd_step_beside_pyro(benchmark, device, n):
    benchmark(stepper(SVGD(), n, device, mutable=False))


def test_mala_step_beside_pyro(benchmark, device):
    benchmark(stepper(MALA(), 1_000, device, mutable=False))


def test_pyro_hmc_transition_one_chain(benchmark, device):
    # LEAPFROG_STEPS target evaluations of one particle per call (see compare_pyro).
    benchmark(stepper(fixed_hmc("independent"), 1, device, mutable=True))


def test_pyro_hmc_transition_joint_1000_chains(benchmark, device):
    # LEAPFROG_STEPS batched evaluations of 1000 rows per call.
    benchmark(stepper(fixed_hmc("joint"), 1_000, device, mutable=True))
