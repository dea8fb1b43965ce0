"""Golden tiny runs: 8 chains x 10 steps of each classical sampler, seed 2024, float64, CPU.

The expected summaries (per-coordinate mean and mean square of the samples) were frozen from
the first correct implementation (torch 2.13 CPU) on ``golden_target()`` below; a change beyond
1e-5 relative means the sampler's arithmetic or its use of the generator changed. If that change
is intended, regenerate them with:

    for name, sampler in SAMPLERS.items():
        x = run_chain(sampler, golden_target(), 8, 10, make_generator(2024))
        print(name, x.mean(0).tolist() + x.square().mean(0).tolist())
"""

from __future__ import annotations

import pytest
from analytic_targets import Gaussian

from samplers.annealed import AnnealedLangevin
from samplers.base import run_chain
from samplers.langevin import MALA, ULA
from samplers.svgd import SVGD
from targets.base import make_generator


def golden_target() -> Gaussian:
    """``N((1, -1), diag(1, 0.25))`` in float64, the target the summaries were frozen on."""
    return Gaussian([1.0, -1.0], [1.0, 0.5])


# Larger-than-default steps so that 10 steps move the chains visibly.
SAMPLERS = {
    "ula": ULA(step_size=0.1),
    "mala": MALA(step_size=0.3),
    "svgd": SVGD(step_size=0.1),
    "annealed_langevin": AnnealedLangevin(step_size=0.3, max_temperature=4.0,
                                          denoise_sigma=0.1),
}

# Frozen from this implementation (see the module docstring): [mean_1, mean_2, mean of x_1^2,
# mean of x_2^2] over the 8 final samples.
EXPECTED: dict[str, list[float]] = {
    "ula": [0.562977669386, -1.10637312888, 0.957585859249, 1.30561034718],
    "mala": [0.416829289098, -0.811281234247, 1.01844910475, 0.760745663042],
    "svgd": [0.516695882793, -0.405980423683, 0.974310360746, 0.746984103099],
    "annealed_langevin": [0.706799470963, -1.16854851140, 1.66552475213, 1.45129412531],
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_golden_summary(name, single_thread):
    x = run_chain(SAMPLERS[name], golden_target(), 8, 10, make_generator(2024))
    summary = x.mean(0).tolist() + x.square().mean(0).tolist()
    assert summary == pytest.approx(EXPECTED[name], rel=1e-5, abs=1e-8)
