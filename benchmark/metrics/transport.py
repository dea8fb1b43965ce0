"""Transport and kernel distances to reference samples: sliced W2, exact W2, MMD².

All three compare sampler output ``x`` ``(n, dim)`` with reference samples ``y`` ``(m, dim)``
and, like the energy distance, do not vanish for two independent exact sample sets; the floor
row (``benchmark.metrics.registry.reference_floor``) is the same statistic between two
independent reference sets at the same ``n``. Transport solvers are POT's (Flamary et al.,
"POT: Python Optimal Transport", JMLR 2021), imported on first use (importing POT costs
seconds).

* **Sliced W2** (Bonneel et al. 2015): ``SW₂(x, y) = (mean_{l ≤ L} W₂²(θ_lᵀx, θ_lᵀy))^{1/2}``
  over ``L`` directions ``θ_l`` uniform on the unit sphere (normalised standard normals drawn
  from the caller's generator), each 1-D ``W₂²`` between empirical laws in closed form through
  quantile functions (POT's ``sliced_wasserstein_distance``). Between ``N(a, s²I)`` and
  ``N(b, t²I)`` its population value is ``|a − b|²/d + (s − t)²`` (each projection is a 1-D
  Gaussian pair, ``W₂² = (θᵀ(a − b))² + (s − t)²``, and ``E (θᵀv)² = |v|²/d``).
* **Exact W2 on a subsample**: ``W₂`` between the empirical laws of at most 2,000 points of
  each set (uniform random subsets, drawn from the caller's generator, when there are more),
  squared Euclidean cost, solved exactly by POT's network simplex (``ot.emd2``). The cost is
  ``O(m³)``-ish, hence the cap (~1 s at 2,000 points on one CPU core). For Gaussians
  ``W₂² = |a − b|² + tr(Σ_a + Σ_b − 2(Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2})`` (Dowson & Landau 1982);
  the empirical value is biased up by about the floor.
* **MMD²** (Gretton et al., "A kernel two-sample test", JMLR 2012), unbiased U-statistic

      MMD²_u = 1/(n(n−1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m−1)) Σ_{i≠j} k(y_i, y_j)
               − 2/(nm) Σ_{i,j} k(x_i, y_j),

  with the RBF kernel ``k = exp(−|x − y|²/(2h²))``. Its mean is the population MMD² exactly,
  so on exact samples it scatters around 0 (it may be negative). ``h²`` is the median heuristic
  on the **reference** samples (median of their squared pairwise distances, as
  ``benchmark.metrics.ksd.median_bandwidth_squared``), not on the pooled sample: the kernel then
  does not depend on the sampler being judged, so the values of different samplers against the
  same reference set use the same kernel and are comparable.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from benchmark.metrics.ksd import median_bandwidth_squared

#: Random directions of the sliced W2 metric.
NUM_PROJECTIONS = 256
#: Subsample size cap of the exact W2 metric.
W2_MAX_POINTS = 2000
#: Network-simplex iteration cap: far above what 2,000 points need (~10⁵–10⁶), so reaching it
#: means a degenerate problem, reported as an error rather than a silently suboptimal value.
EMD_MAX_ITERATIONS = 100_000_000
#: Rows per block of the kernel sums (memory ``O(chunk · m)``).
MMD_CHUNK_SIZE = 512


def _float64(x: Tensor) -> Tensor:
    # Squared distances and their sums are formed in float64 (MPS has none: go through the CPU).
    return (x.cpu() if x.device.type == "mps" else x).to(torch.float64)


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have shapes (n, dim) and (m, dim); got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 1 or y.shape[0] < 1:
        raise ValueError("x and y need at least one point each")


def random_directions(dim: int, num_projections: int, generator: torch.Generator) -> Tensor:
    """``(dim, num_projections)`` float64 unit columns, uniform on the sphere, on the generator's
    device: normalised standard normals (the first ``dim · num_projections`` normals drawn)."""
    z = torch.randn(num_projections, dim, generator=generator, device=generator.device,
                    dtype=torch.float64)
    return (z / torch.linalg.vector_norm(z, dim=1, keepdim=True)).T


def sliced_wasserstein2(x: Tensor, y: Tensor, generator: torch.Generator,
                        num_projections: int = NUM_PROJECTIONS) -> Tensor:
    """Sliced Wasserstein-2 distance between the empirical laws of ``x`` and ``y``.

    Args:
        x: ``(n, dim)``.
        y: ``(m, dim)``; ``m`` may differ from ``n`` (1-D quantile coupling).
        generator: draws the directions (:func:`random_directions`).
        num_projections: ``L``.

    Returns:
        0-dim float64 tensor ``(mean_l W₂²(θ_lᵀx, θ_lᵀy))^{1/2}`` (on the GPU for CUDA inputs,
        else on the CPU).
    """
    import ot  # here, not at module level: POT takes seconds to import

    _check_pair(x, y)
    x = _float64(x)
    y = _float64(y).to(x.device)
    directions = random_directions(x.shape[1], num_projections, generator).to(x.device)
    if x.device.type == "cuda":  # POT's torch backend, on the GPU
        return ot.sliced_wasserstein_distance(x, y, projections=directions, p=2).reshape(())
    # On the CPU POT's NumPy backend is ~2x faster than its torch one (torch's CPU sort along the
    # sample axis is slow): 2 s against 4 s at n = 10,000, L = 256 on one core.
    value = ot.sliced_wasserstein_distance(x.cpu().numpy(), y.cpu().numpy(),
                                           projections=directions.cpu().numpy(), p=2)
    return torch.tensor(float(value), dtype=torch.float64)


def _subsample(x: Tensor, max_points: int, generator: torch.Generator) -> Tensor:
    if x.shape[0] <= max_points:
        return x
    index = torch.randperm(x.shape[0], generator=generator, device=generator.device)
    return x[index[:max_points].to(x.device)]


def wasserstein2(x: Tensor, y: Tensor, generator: torch.Generator,
                 max_points: int = W2_MAX_POINTS) -> Tensor:
    """Exact ``W₂`` between uniform empirical laws of (subsamples of) ``x`` and ``y``.

    Args:
        x: ``(n, dim)``.
        y: ``(m, dim)``.
        generator: draws the subsets when ``n`` or ``m`` exceeds ``max_points`` (``x``'s first).
        max_points: subsample size cap.

    Returns:
        0-dim float64 tensor on the CPU, ``(min_π Σ π_ij |x_i − y_j|²)^{1/2}``.

    Raises:
        RuntimeError: the network simplex stopped before optimality.
    """
    import ot  # here, not at module level: POT takes seconds to import

    _check_pair(x, y)
    x = _subsample(x, max_points, generator)
    y = _subsample(y, max_points, generator)
    # Exact coordinate differences (no |x|² + |y|² − 2xᵀy expansion), in float64.
    x = _float64(x)
    cost = torch.cdist(x, _float64(y).to(x.device),
                       compute_mode="donot_use_mm_for_euclid_dist").square_()
    # The network simplex runs on the CPU whatever the device; uniform weights ([] in POT).
    value, log = ot.emd2([], [], cost.cpu().numpy(), numItermax=EMD_MAX_ITERATIONS, log=True)
    if log.get("warning"):
        raise RuntimeError(f"exact W2: POT's network simplex did not converge: {log['warning']}")
    return torch.tensor(math.sqrt(max(float(value), 0.0)), dtype=torch.float64)


def _rbf_block_sum(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """``Σ_ij exp(−scale |a_i − b_j|²)`` over one block, float64."""
    sq_dist = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").square_()
    return sq_dist.mul_(-scale).exp_().sum()


def _rbf_cross_sum(x: Tensor, y: Tensor, scale: float, chunk_size: int) -> Tensor:
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], chunk_size):
        total += _rbf_block_sum(x[start:start + chunk_size], y, scale)
    return total


def _rbf_offdiagonal_sum(x: Tensor, scale: float, chunk_size: int) -> Tensor:
    """``Σ_{i≠j} k(x_i, x_j)``: the upper block triangle, twice (``k`` is symmetric)."""
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    n = x.shape[0]
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        block = torch.cdist(x[start:stop], x[start:],
                            compute_mode="donot_use_mm_for_euclid_dist").square_()
        block.mul_(-scale).exp_()
        square = block[:, : stop - start]
        # Square part: both triangles are in it already; its diagonal (k(x, x) = 1) is not a pair.
        total += square.sum() - square.diagonal().sum() + 2.0 * block[:, stop - start:].sum()
    return total


def mmd_squared(x: Tensor, y: Tensor, bandwidth_squared: float | None = None,
                chunk_size: int = MMD_CHUNK_SIZE) -> Tensor:
    """Unbiased (U-statistic) MMD² with the RBF kernel ``exp(−|x − y|²/(2h²))``.

    Args:
        x: ``(n, dim)``, ``n ≥ 2``.
        y: ``(m, dim)`` reference samples, ``m ≥ 2``.
        bandwidth_squared: ``h²``; ``None`` for the median heuristic on ``y``
            (:func:`benchmark.metrics.ksd.median_bandwidth_squared`: lower median of the
            squared pairwise distances, evenly strided subsample of 2,000 points above that).
        chunk_size: rows per block (memory ``O(chunk_size · max(n, m))``).

    Returns:
        0-dim float64 tensor (signed: unbiased, so it scatters around 0 for equal laws).
    """
    _check_pair(x, y)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased MMD² needs at least 2 points per set, got {n} and {m}")
    x = _float64(x)
    y = _float64(y).to(x.device)
    h2 = median_bandwidth_squared(y) if bandwidth_squared is None else float(bandwidth_squared)
    if not (h2 > 0 and math.isfinite(h2)):
        raise ValueError(f"bandwidth_squared must be positive and finite, got {h2}")
    scale = 0.5 / h2
    within_x = _rbf_offdiagonal_sum(x, scale, chunk_size) / (n * (n - 1))
    within_y = _rbf_offdiagonal_sum(y, scale, chunk_size) / (m * (m - 1))
    cross = _rbf_cross_sum(x, y, scale, chunk_size) / (n * m)
    return within_x + within_y - 2.0 * cross
