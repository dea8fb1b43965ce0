"""A deliberately slow sampler named by import path (``slow_plugins:SlowMALA``).

Crash-safety and time-limit tests need cells that last long enough to be killed or timed out
mid-run while staying exact MALA otherwise (so their values are seeded and reproducible).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from samplers.base import ChainState
from samplers.langevin import MALA, MALAParams
from targets.base import Target


@dataclass(frozen=True)
class SlowMALAParams(MALAParams):
    """MALA's parameters plus ``delay``: seconds slept before each transition."""

    delay: float = 0.02


class SlowMALA(MALA):
    """MALA that sleeps ``delay`` seconds per step; same chain, same values as MALA."""

    name = "slow_mala"
    description = "test-only: MALA sleeping before each step"
    Params = SlowMALAParams

    def step(self, target: Target, state: ChainState,
             generator: torch.Generator) -> tuple[ChainState, dict]:
        time.sleep(self.params.delay)
        return super().step(target, state, generator)
