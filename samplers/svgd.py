"""Stein variational gradient descent (SVGD) with an RBF kernel and the median bandwidth rule.

Follows the reference code of Liu & Wang (dilinwang820/Stein-Variational-Gradient-Descent):
full pairwise median heuristic recomputed every step, and its RMSprop-like step rule
(METHODS.md, "SVGD").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from samplers.base import ChainState, IterativeSampler
from targets.base import Target

#: ``bandwidth(squared_distances) -> h``: ``(n, n)`` pairwise squared distances to a 0-dim
#: bandwidth ``h`` of the kernel ``k(x, y) = exp(-||x - y||^2 / h)``.
BandwidthRule = Callable[[Tensor], Tensor]


def median_bandwidth(squared_distances: Tensor) -> Tensor:
    """The median heuristic of the reference code: ``h = median(D^2) / log(n + 1)``.

    The median runs over the full ``n x n`` matrix, zero diagonal included, and averages the
    two middle values of an even count (as ``numpy.median`` does; ``torch.median`` would
    return the lower one). If every particle coincides (median 0, e.g. ``n = 1``), ``h = 1``:
    the repulsive term is then zero whatever ``h`` is, and this avoids ``0 / 0``.

    Args:
        squared_distances: ``(n, n)`` matrix ``D^2_ij = ||x_i - x_j||^2``.

    Returns:
        ``()`` bandwidth ``h``.
    """
    n = squared_distances.shape[0]
    values = squared_distances.reshape(-1)
    count = values.numel()
    if count % 2 == 1:
        median = values.kthvalue((count + 1) // 2).values
    else:  # kthvalue is 1-based: the two middle values are the (m/2)-th and (m/2 + 1)-th
        median = 0.5 * (values.kthvalue(count // 2).values
                        + values.kthvalue(count // 2 + 1).values)
    bandwidth = median / math.log(n + 1)
    return torch.where(bandwidth > 0, bandwidth, torch.ones_like(bandwidth))


def pairwise_squared_distances(x: Tensor) -> Tensor:
    """``(n, dim) -> (n, n)`` matrix of ``||x_i - x_j||^2``, exactly zero on the diagonal.

    Computed without the ``||x||^2 + ||y||^2 - 2 x.y`` expansion, whose cancellation error would
    perturb the median heuristic (the diagonal must be exactly zero to match the reference).
    """
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").square()


@dataclass(frozen=True)
class SVGDParams:
    """Hyper-parameters of :class:`SVGD`.

    Attributes:
        step_size: ``epsilon`` of the update ``x <- x + epsilon phi / (offset + sqrt(G))``.
            The normalised update moves each coordinate by about ``epsilon`` per step, both
            while travelling and at the end: near the fixed point ``phi / sqrt(G)`` flips sign
            from step to step, so the particles settle into a two-cycle of amplitude
            ``epsilon`` and their mean is off by about ``epsilon / 2`` per coordinate (measured
            on a 2-D Gaussian: 0.05 at ``epsilon = 0.1``, 0.015 at 0.03). 0.05 balances this
            bias (2.5% of the 2-D targets' unit scale) against travel (the bulk of the 2-D
            targets, a few units wide, is reached in ~100 steps); it is also METHODS.md's
            value for Bayesian logistic regression.
        bandwidth: rule mapping the ``(n, n)`` squared distances to ``h``; default the
            median heuristic of the reference code.
        squared_direction_decay: ``beta`` of ``G <- beta G + (1 - beta) phi^2`` (reference
            code: 0.9).
        denominator_offset: added to ``sqrt(G)`` to avoid dividing by zero (reference code:
            1e-6).
    """

    step_size: float = 0.05
    bandwidth: BandwidthRule = median_bandwidth
    squared_direction_decay: float = 0.9
    denominator_offset: float = 1e-6

    def __post_init__(self) -> None:
        if not self.step_size > 0:
            raise ValueError(f"svgd: step_size must be > 0, got {self.step_size}")
        if not 0.0 <= self.squared_direction_decay < 1.0:
            raise ValueError("svgd: squared_direction_decay must be in [0, 1), "
                             f"got {self.squared_direction_decay}")


@dataclass
class SVGDState(ChainState):
    """:class:`ChainState` plus the running average ``G`` of the squared direction.

    Attributes:
        squared_direction_average: ``(n, dim)`` ``G``; ``None`` before the first step.
    """

    squared_direction_average: Tensor | None


class SVGD(IterativeSampler):
    """Stein variational gradient descent (Liu & Wang 2016) with an RBF kernel.

    Direction, for particles ``x_1..x_n`` and ``k(x, y) = exp(-||x - y||^2 / h)``:

        phi(x_i) = (1/n) sum_j [k(x_j, x_i) s(x_j) + grad_{x_j} k(x_j, x_i)]
                 = (1/n) [(K S)_i + (2/h) sum_j k_ij (x_i - x_j)],

    computed with two ``(n, n) @ (n, dim)`` matmuls (no autograd). Update (reference code):
    ``G <- phi^2`` at the first step, then ``G <- 0.9 G + 0.1 phi^2``;
    ``x <- x + epsilon phi / (1e-6 + sqrt(G))``. One score evaluation per particle per step,
    plus an ``O(n^2 dim)`` kernel pass.

    References:
        Q. Liu and D. Wang, "Stein Variational Gradient Descent: A General Purpose Bayesian
        Inference Algorithm", NeurIPS 2016; code: github.com/dilinwang820/
        Stein-Variational-Gradient-Descent.
    """

    name: ClassVar[str] = "svgd"
    pretty_name: ClassVar[str] = "SVGD"
    description: ClassVar[str] = "Stein variational gradient descent, RBF kernel, median bandwidth"
    Params: ClassVar[type] = SVGDParams

    def init(self, target: Target, x: Tensor, num_steps: int) -> SVGDState:
        """State at ``x`` ``(n, dim)``; one score evaluation."""
        return SVGDState(x=x, log_prob=None, score=target.score(x), step_index=0,
                         num_steps=int(num_steps), squared_direction_average=None)

    def _driving_term(self, kernel: Tensor, score: Tensor) -> Tensor:
        """``sum_j k_ij s(x_j)``: ``(n, n), (n, dim) -> (n, dim)``."""
        return kernel @ score

    def _repulsive_term(self, kernel: Tensor, x: Tensor, bandwidth: Tensor) -> Tensor:
        """``sum_j grad_{x_j} k(x_j, x_i) = (2/h) sum_j k_ij (x_i - x_j)``. ``(n, dim)``.

        Overridable so a test can drop it (the particles then collapse onto the modes).
        """
        return (2.0 / bandwidth) * (x * kernel.sum(-1, keepdim=True) - kernel @ x)

    def stein_direction(self, x: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        """The SVGD direction ``phi`` at every particle.

        Args:
            x: ``(n, dim)`` particles.
            score: ``(n, dim)`` target score at ``x``.

        Returns:
            ``phi`` ``(n, dim)`` and the bandwidth ``h`` ``()`` used.
        """
        squared_distances = pairwise_squared_distances(x)
        bandwidth = self.params.bandwidth(squared_distances)
        kernel = torch.exp(-squared_distances / bandwidth)  # symmetric: k(x_j, x_i) = K[i, j]
        direction = (self._driving_term(kernel, score)
                     + self._repulsive_term(kernel, x, bandwidth)) / x.shape[0]
        return direction, bandwidth

    def step(self, target: Target, state: SVGDState,
             generator: torch.Generator) -> tuple[SVGDState, dict[str, Tensor]]:
        """One SVGD update (deterministic: ``generator`` is unused); one score evaluation.

        ``info``: ``bandwidth`` ``()`` and ``direction_norm`` ``()``, the mean ``||phi||``.
        """
        p = self.params
        direction, bandwidth = self.stein_direction(state.x, state.score)
        squared = direction.square()
        if state.squared_direction_average is None:
            average = squared
        else:
            average = (p.squared_direction_decay * state.squared_direction_average
                       + (1.0 - p.squared_direction_decay) * squared)
        x = state.x + p.step_size * direction / (p.denominator_offset + average.sqrt())
        new_state = SVGDState(x=x, log_prob=None, score=target.score(x),
                              step_index=state.step_index + 1, num_steps=state.num_steps,
                              squared_direction_average=average)
        return new_state, {"bandwidth": bandwidth,
                           "direction_norm": direction.norm(dim=-1).mean()}
