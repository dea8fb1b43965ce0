"""k-NN precision and recall: does a sampler cover the target's support, and only it?

Kynkäänniemi, Karras, Laine, Lehtinen and Aila, "Improved Precision and Recall Metric for
Assessing Generative Models", NeurIPS 2019. Each point set estimates its law's support as the
union of balls around its points, each ball's radius the distance to the point's ``k``-th
nearest neighbour within its own set (``k = 3``, the paper's choice). Then, for sampler output
``x`` ``(n, dim)`` and exact reference samples ``y`` ``(m, dim)``:

* **precision** = share of the ``x`` inside the support estimated from ``y``: how much of the
  sampler's mass lies where the target has mass;
* **recall** = share of the ``y`` inside the support estimated from ``x``: how much of the
  target the sampler reaches.

Energy distance or KSD is one number; these two separate the two ways to miss. A sampler that
stays inside the target but too narrow (a generator that never widens past its initial law, a
chain stuck in part of a ridge) keeps precision near its floor and loses recall; one that
spreads mass where the target has none loses precision. Both lie in ``[0, 1]``, higher is
better, and exact samples do not score 1 (the floor row, two independent exact sets at the same
``n``, shows where they sit). ``recall(x, y) == precision(y, x)`` by definition.

Non-finite sample rows are outside every ball (they count against precision) and have no ball
of their own (they add nothing to recall). Distances are Euclidean in the sample space: for
images that is pixel space, not the feature space of the paper, so read them on the
low-dimensional targets.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Neighbour index of the ball radii (the paper's default).
K_NEAREST = 3
#: Rows per block of the pairwise distances (memory ``O(chunk · m)``).
CHUNK_SIZE = 1024


def _finite_rows(x: Tensor) -> Tensor:
    return x[torch.isfinite(x).all(dim=1)]


def knn_radii(y: Tensor, k: int = K_NEAREST) -> Tensor:
    """Distance from each point of ``y`` ``(m, dim)`` to its ``k``-th nearest other point,
    ``(m,)``; ``m`` must exceed ``k``."""
    if y.shape[0] <= k:
        raise ValueError(f"k-NN radii need more than k = {k} points, got {y.shape[0]}")
    # kthvalue(k + 1): the smallest distance of each row is the point to itself (0).
    return torch.cat([torch.cdist(block, y).kthvalue(k + 1, dim=1).values
                      for block in y.split(CHUNK_SIZE)])


def share_inside(points: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    """Share of ``points`` ``(n, dim)`` within ``radii[j]`` of some ``centres[j]``; 0-dim.

    Rows of ``points`` with a non-finite entry count as outside."""
    finite = torch.isfinite(points).all(dim=1)
    inside = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    if finite.any():
        inside[finite] = torch.cat([(torch.cdist(block, centres) <= radii).any(dim=1)
                                    for block in points[finite].split(CHUNK_SIZE)])
    return inside.to(points.dtype).mean()


def knn_precision(x: Tensor, y: Tensor, k: int = K_NEAREST) -> Tensor:
    """Share of the samples ``x`` ``(n, dim)`` inside the ``k``-NN support of the reference
    ``y`` ``(m, dim)``; 0-dim tensor in ``[0, 1]``."""
    y = _finite_rows(y)
    return share_inside(x, y, knn_radii(y, k))


def knn_recall(x: Tensor, y: Tensor, k: int = K_NEAREST) -> Tensor:
    """Share of the reference ``y`` ``(m, dim)`` inside the ``k``-NN support of the samples
    ``x`` ``(n, dim)``; 0-dim tensor in ``[0, 1]``; 0 when ``x`` has ``k`` or fewer finite
    rows (no support estimate)."""
    x = _finite_rows(x)
    if x.shape[0] <= k:
        return torch.zeros((), dtype=y.dtype, device=y.device)
    return share_inside(y, x, knn_radii(x, k))


__all__ = ["K_NEAREST", "knn_precision", "knn_radii", "knn_recall", "share_inside"]
