"""The held-out convergence monitor of neural training, and the plateau rule built on it.

Training length is not a fixed number of iterations: every ``monitor_every`` iterations the
sampler draws a *fixed* held-out batch (the same latents and output noise each time, drawn
once before training from its own generator) and scores it with the IMQ kernel Stein
discrepancy against the target. The batch is fixed so the monitor moves only with the weights,
and held out so it never enters a gradient. The target evaluations it makes are counted in the
training NFE like every other (the caller's ``CountingTarget`` sees them).

The monitor decides *when to stop*, never *what is reported*: KSD can prefer a collapsed
sampler (one arc of a ring can score well), so the weights are never rolled back to the
monitor's best, and tuning selects on ground-truth criteria (docs/tuning.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def imq_ksd(x: Tensor, score: Tensor, chunk: int = 1024) -> float:
    """``sqrt`` of the V-statistic KSD² with the IMQ kernel ``k = (1 + ‖x − y‖²)^(−1/2)``.

    Stein kernel ``u = k⟨s_x, s_y⟩ + ⟨s_x, ∇_y k⟩ + ⟨s_y, ∇_x k⟩ + tr ∇_x∇_y k`` with
    ``∇_x k = 2βwk(x − y)`` and ``tr ∇_x∇_y k = −2βwk(d + 2(β − 1)wt)``, ``t = ‖x − y‖²``,
    ``w = 1/(1 + t)``, ``β = −½`` (Gorham & Mackey, ICML 2017). The suite's metric
    (``benchmark.metrics.ksd``) is the same statistic, written for large n and every device;
    this copy lives here because samplers may not import the benchmark, and it only has to
    track progress on a few hundred points.

    Args:
        x: ``(m, d)`` samples.
        score: ``(m, d)`` target score at ``x``.
        chunk: rows per block (memory ``chunk × m``).

    Returns:
        ``sqrt(KSD²_V)`` as a float (``nan`` if any input is non-finite).
    """
    if not (torch.isfinite(x).all() and torch.isfinite(score).all()):
        return math.nan
    x = x.double()
    score = score.double()
    m, d = x.shape
    beta = -0.5
    total = 0.0
    sq = x.square().sum(dim=1)
    for start in range(0, m, chunk):
        xa, sa = x[start:start + chunk], score[start:start + chunk]
        diff_dot_s_b = xa @ score.T - (score * x).sum(dim=1)  # <x_a - x_b, s_b>
        diff_dot_s_a = (xa * sa).sum(dim=1, keepdim=True) - sa @ x.T  # <x_a - x_b, s_a>
        t = (sq[start:start + chunk, None] + sq[None, :] - 2.0 * xa @ x.T).clamp_min(0.0)
        w = 1.0 / (1.0 + t)
        k = w.sqrt()
        u = k * ((sa @ score.T)  # ⟨s_a, ∇_b k⟩ + ⟨s_b, ∇_a k⟩ = 2βwk⟨x_a − x_b, s_b − s_a⟩
                 + 2.0 * beta * w * (diff_dot_s_b - diff_dot_s_a)
                 - 2.0 * beta * w * (d + 2.0 * (beta - 1.0) * w * t))
        total += float(u.sum())
    return math.sqrt(max(total, 0.0) / (m * m))


@dataclass
class PlateauRule:
    """Decay the learning rates on a plateau of the monitor; stop after ``max_decays`` decays.

    A check *improves* when the monitor falls below ``(1 − tolerance)`` × the best value so
    far. After ``patience`` checks in a row without improvement the learning rates are
    multiplied by ``decay_factor`` (and the count restarts); the plateau after the
    ``max_decays``-th decay ends training. A non-finite monitor counts as no improvement.

    Attributes:
        patience: checks without improvement that make a plateau.
        tolerance: relative improvement that counts.
        decay_factor: learning-rate multiplier at a plateau.
        max_decays: decays before the next plateau stops training.
    """

    patience: int
    tolerance: float = 0.02
    decay_factor: float = 0.3
    max_decays: int = 2
    best: float = math.inf
    since_best: int = 0
    decays: int = 0

    def update(self, value: float) -> str:
        """Record one check; returns ``"continue"``, ``"decay"`` or ``"stop"``."""
        if math.isfinite(value) and value < (1.0 - self.tolerance) * self.best:
            self.best, self.since_best = value, 0
            return "continue"
        if math.isfinite(value):
            self.best = min(self.best, value)
        self.since_best += 1
        if self.since_best < self.patience:
            return "continue"
        self.since_best = 0
        if self.decays >= self.max_decays:
            return "stop"
        self.decays += 1
        return "decay"
