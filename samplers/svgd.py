"""Stein variational gradient descent (SVGD) with an RBF kernel and the median bandwidth rule.

Follows the reference code of Liu & Wang (dilinwang820/Stein-Variational-Gradient-Descent):
full pairwise median heuristic recomputed every step, and its RMSprop-like step rule
(docs/methods.md#svgd).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
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

    Only the strict upper triangle is searched (see :func:`full_matrix_order_statistic`),
    half the ``n^2`` values, with one selection pass for both middle values.

    Args:
        squared_distances: ``(n, n)`` symmetric matrix ``D^2_ij = ||x_i - x_j||^2`` with a
            zero diagonal.

    Returns:
        ``()`` bandwidth ``h``.
    """
    n = squared_distances.shape[0]
    count = n * n
    ranks = (count // 2, count // 2 + 1) if count % 2 == 0 else ((count + 1) // 2,)
    values = full_matrix_order_statistic(squared_distances, ranks)
    bandwidth = values.mean() / math.log(n + 1)
    return torch.where(bandwidth > 0, bandwidth, torch.ones_like(bandwidth))


@functools.lru_cache(maxsize=8)
def _upper_triangle_flat_indices(n: int, device: torch.device) -> Tensor:
    """Flat indices of the strict upper triangle of an ``n x n`` matrix (a gather with them
    costs half a ``masked_select``, which counts the mask before it copies)."""
    mask = torch.ones(n, n, dtype=torch.bool).triu_(1).reshape(-1)
    return mask.nonzero().squeeze(1).to(device)


def full_matrix_order_statistic(matrix: Tensor, ranks: tuple[int, ...]) -> Tensor:
    """Order statistics of all ``n^2`` entries of a symmetric matrix with a zero diagonal.

    Sorted, the ``n^2`` entries are the ``n`` diagonal zeros followed by every strict-upper-
    triangle value twice (entries are distances, so nothing sorts below the zeros). The
    ``k``-th smallest (1-based) is therefore 0 for ``k <= n`` and otherwise the
    ``ceil((k - n) / 2)``-th smallest of the ``n(n-1)/2`` upper-triangle values. Those are
    selected in one pass: ``numpy.partition`` on the CPU (introselect, about 3x faster than two
    ``torch.kthvalue`` calls on the full matrix; :func:`_select_cpu`), a sort on accelerators
    (where ``kthvalue`` is slow and a radix sort of 5e5 floats is not).

    Args:
        matrix: ``(n, n)`` symmetric, non-negative, zero diagonal.
        ranks: 1-based ranks among the ``n^2`` entries.

    Returns:
        ``(len(ranks),)`` the order statistics, same dtype and device as ``matrix``.
    """
    n = matrix.shape[0]
    positions = [math.ceil((k - n) / 2) - 1 if k > n else -1 for k in ranks]  # 0-based in U
    wanted = sorted({p for p in positions if p >= 0})
    selected: dict[int, Tensor] = {}
    if wanted:
        upper = matrix.reshape(-1)[_upper_triangle_flat_indices(n, matrix.device)]
        if upper.device.type == "cpu":
            selected = _select_cpu(upper.detach().numpy(), wanted)
        else:
            partitioned = upper.sort().values
            selected = {p: partitioned[p] for p in wanted}
    zero = matrix.new_zeros(())
    return torch.stack([selected[p] if p >= 0 else zero for p in positions]).to(matrix)


def _select_cpu(values: np.ndarray, positions: list[int]) -> dict[int, Tensor]:
    """The entries at sorted, distinct 0-based ``positions`` of sorted ``values``, by
    introselect.

    Two adjacent positions (the two middle values of an even count) cost one partition, at the
    first, and a minimum over the part above it, which holds the next larger value:
    ``numpy.partition`` given both positions partitions twice (1.7x slower at 5e5 values).
    """
    if len(positions) == 2 and positions[1] == positions[0] + 1:
        partitioned = np.partition(values, positions[0])
        selected = [partitioned[positions[0]], partitioned[positions[1]:].min()]
    else:
        partitioned = np.partition(values, positions)
        selected = [partitioned[p] for p in positions]
    return {p: torch.as_tensor(value) for p, value in zip(positions, selected, strict=True)}


def pairwise_squared_distances(x: Tensor) -> Tensor:
    """``(n, dim) -> (n, n)`` matrix of ``||x_i - x_j||^2``, exactly zero on the diagonal.

    Uses the matrix-product expansion ``||x||^2 + ||y||^2 - 2 x.y`` (one GEMM; about 15x
    faster on the CPU at n = 1000 than the direct difference form) on *centred* particles:
    distances do not change under a shift, and centring keeps ``||x||^2`` at the spread of
    the cloud, so the cancellation error is relative to the spread rather than to the
    distance from the origin (rosenbrock's particles sit ~10-100 units out). The diagonal is
    then set to exactly zero, as the median heuristic of the reference code assumes.
    """
    centred = x - x.mean(dim=0, keepdim=True)
    squared = torch.cdist(centred, centred, compute_mode="use_mm_for_euclid_dist").square_()
    return squared.fill_diagonal_(0.0)


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
            targets, a few units wide, is reached in ~100 steps); it is also the value
            for Bayesian logistic regression (docs/methods.md#svgd).
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

    computed with one ``(n, n) @ (n, 2 dim + 1)`` matmul (no autograd). Update (reference code):
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

    def not_a_chain(self) -> str:
        return ("sampler 'svgd' has no ESS: its particles interact (each update moves every "
                "particle with all the others)")

    def init(self, target: Target, x: Tensor, num_steps: int) -> SVGDState:
        """State at ``x`` ``(n, dim)``; one score evaluation."""
        return SVGDState(x=x, log_prob=None, score=target.score(x), step_index=0,
                         num_steps=int(num_steps), squared_direction_average=None)

    def _repulsive_term(self, kernel_x: Tensor, row_sums: Tensor, x: Tensor,
                        bandwidth: Tensor) -> Tensor:
        """``sum_j grad_{x_j} k(x_j, x_i) = (2/h) sum_j k_ij (x_i - x_j)``. ``(n, dim)``.

        From ``kernel_x = K x`` ``(n, dim)`` and ``row_sums = K 1`` ``(n, 1)``. Overridable so
        a test can drop it (the particles then collapse onto the modes).
        """
        return (2.0 / bandwidth) * (x * row_sums - kernel_x)

    def stein_direction(self, x: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        """The SVGD direction ``phi`` at every particle.

        The ``(n, n)`` passes are what costs at small ``dim`` (``benchmark.tools.roofline``), so
        there are few of them: the kernel overwrites the distances in place (no second ``(n, n)``
        buffer), and one product ``K [S | x | 1]`` reads the kernel once for the driving term,
        ``K x`` and the row sums (three separate reductions read it three times).

        Args:
            x: ``(n, dim)`` particles.
            score: ``(n, dim)`` target score at ``x``.

        Returns:
            ``phi`` ``(n, dim)`` and the bandwidth ``h`` ``()`` used.
        """
        n, dim = x.shape
        squared_distances = pairwise_squared_distances(x)
        # A copy: a custom rule may return a view into the matrix overwritten below.
        bandwidth = torch.as_tensor(self.params.bandwidth(squared_distances)).clone()
        kernel = squared_distances.mul_(-1.0 / bandwidth).exp_()  # k(x_j, x_i) = K[i, j]
        sums = kernel @ torch.cat([score, x, x.new_ones(n, 1)], dim=1)
        driving, kernel_x, row_sums = sums.split([dim, dim, 1], dim=1)
        direction = (driving + self._repulsive_term(kernel_x, row_sums, x, bandwidth)) / n
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
