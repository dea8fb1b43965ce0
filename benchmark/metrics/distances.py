"""Sample distances between sampler output and reference samples.

Energy distance (Székely & Rizzo 2013), V-statistic form

    ED(X, Y) = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖,

where each expectation is the mean over *all* pairs of the two sample sets (the within-set means
include the zero diagonal). It is 0 when the two sets are identical and ≥ 0 for any two sets
(the Euclidean distance is conditionally negative definite); the population version is zero iff
the two distributions are equal, so it sees mixture weights that KSD is blind to.

Noise floor: two *independent* exact sample sets of the same size do not give 0. The floor
reported beside this metric is the same statistic between two independent reference sets at the
same ``n`` (``benchmark.metrics.registry.reference_floor``). For ``n`` points per set its
expectation is ``2 E‖X − X'‖ / n`` (the within-set means lose the factor ``(n − 1)/n`` to their
zero diagonal).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Rows per block of the pairwise pass: memory O(chunk · m) for m columns.
DEFAULT_CHUNK_SIZE = 512


def _distance_block(a: Tensor, b: Tensor) -> Tensor:
    # Exact coordinate differences rather than the ‖a‖² + ‖b‖² − 2aᵀb expansion: the √ makes the
    # expansion's rounding noise of near-coincident pairs O(√eps), which would bias the statistic
    # at the scale of its own noise floor.
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def mean_pairwise_distance(x: Tensor, y: Tensor | None = None,
                           chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tensor:
    """Mean of ``‖x_i − y_j‖`` over all ``n · m`` pairs, in row blocks.

    Args:
        x: ``(n, dim)``.
        y: ``(m, dim)``, or ``None`` for the within-set mean of ``x`` (all ``n²`` pairs, zero
            diagonal included); that case uses symmetry and evaluates only the upper triangle.
        chunk_size: rows per block.

    Returns:
        0-dim float64 tensor on ``x.device`` (float32 on MPS, which has no float64).
    """
    acc = torch.float32 if x.device.type == "mps" else torch.float64
    total = torch.zeros((), dtype=acc, device=x.device)
    if y is None:
        n = x.shape[0]
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            block = _distance_block(x[start:stop], x[start:])
            # Square part once (its diagonal is 0), the columns beyond it twice.
            total += 2.0 * block.sum(dtype=acc) - block[:, : stop - start].sum(dtype=acc)
        return total / (n * n)
    for start in range(0, x.shape[0], chunk_size):
        total += _distance_block(x[start:start + chunk_size], y).sum(dtype=acc)
    return total / (x.shape[0] * y.shape[0])


def energy_distance(x: Tensor, reference: Tensor, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tensor:
    """Energy distance (V-statistic) between samples and reference samples.

    Args:
        x: ``(n, dim)`` sampler output.
        reference: ``(m, dim)`` reference samples on the same device (``m`` may differ from
            ``n``; tables use ``m = n``, and the floor is the statistic between two independent
            reference sets of that size).
        chunk_size: rows per block (memory ``O(chunk_size · max(n, m))``).

    Returns:
        0-dim tensor ``2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖``, float64 (float32 on MPS).

    Reference:
        Székely & Rizzo, "Energy statistics: a class of statistics based on distances",
        J. Stat. Plan. Inference 143 (2013).
    """
    if x.ndim != 2 or reference.ndim != 2 or x.shape[1] != reference.shape[1]:
        raise ValueError(f"x and reference must have shapes (n, dim) and (m, dim); got "
                         f"{tuple(x.shape)} and {tuple(reference.shape)}")
    reference = reference.to(dtype=x.dtype)
    return (2.0 * mean_pairwise_distance(x, reference, chunk_size)
            - mean_pairwise_distance(x, None, chunk_size)
            - mean_pairwise_distance(reference, None, chunk_size))
