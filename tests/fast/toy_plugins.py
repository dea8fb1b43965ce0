"""User-defined samplers and targets named by import path in runner tests (``toy_plugins:Name``).

They exercise the harness's handling of samplers that misbehave; they are not in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from samplers.base import ChainState, IterativeSampler
from targets.toy2d import StandardGaussian


@dataclass(frozen=True)
class ExplodingParams:
    factor: float = 1e30


class ExplodingSampler(IterativeSampler):
    """Multiplies the positions by a huge factor each step: overflows to inf (diverges)."""

    name = "exploding"
    description = "test-only: overflows after a few steps"
    Params = ExplodingParams

    def init(self, target, x, num_steps):
        return ChainState(x=x, log_prob=None, score=target.score(x), step_index=0,
                          num_steps=num_steps)

    def step(self, target, state, generator):
        x = state.x * self.params.factor
        return ChainState(x=x, log_prob=None, score=target.score(x),
                          step_index=state.step_index + 1, num_steps=state.num_steps), {}


class RaisingSampler(IterativeSampler):
    """Raises inside ``step``: the cell must be stored as failed, the run must go on."""

    name = "raising"
    description = "test-only: raises"

    def init(self, target, x, num_steps):
        return ChainState(x=x, log_prob=None, score=target.score(x), step_index=0,
                          num_steps=num_steps)

    def step(self, target, state, generator):
        raise RuntimeError("deliberate failure\nsecond line that must not be shown")


class SmoothedGaussian(StandardGaussian):
    """The standard Gaussian declared as a noise-smoothed energy (``sigma_0 = 0.1``), so a
    matrix entry may ask for the final denoising step on it."""

    denoise_sigma = 0.1
