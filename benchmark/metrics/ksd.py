"""Kernelised Stein discrepancy (KSD) with closed-form Stein kernels, chunked over rows.

For a target ``q`` with score ``s = grad log q`` and a base kernel ``k``, the Stein kernel is

    u(x, y) = s(x)ᵀs(y) k + s(x)ᵀ∇_y k + s(y)ᵀ∇_x k + tr ∇_x∇_y k,

and ``KSD²(p, q) = E_{x, y ~ p} u(x, y)`` (Liu, Lee & Jordan 2016; Chwialkowski et al. 2016;
Gorham & Mackey 2017).

Closed form for radial kernels. Write ``k(x, y) = φ(t)`` with ``t = ‖x − y‖²`` and
``r = x − y``. Then ``∇_x k = 2φ'(t) r``, ``∇_y k = −2φ'(t) r`` and
``∂²k/∂x_i∂y_j = −2φ'(t) δ_ij − 4φ''(t) r_i r_j``, so ``tr ∇_x∇_y k = −2dφ'(t) − 4tφ''(t)`` and

    u = φ(t) G − 2φ'(t) D − 2dφ'(t) − 4tφ''(t),

with ``G = s(x)ᵀs(y)`` and ``D = (s(x) − s(y))ᵀ(x − y)``. ``t``, ``G`` and ``D`` are each a
matrix product of (augmented) per-point features, so a block of rows against all columns costs a
few matmuls and elementwise ops; no autograd and no ``(n, n, d)`` tensor. ``u`` is symmetric, so
only the upper block triangle is evaluated (half the work); memory is ``O(n · chunk_size)``.

The diagonal ``u(x, x) = φ(0)‖s‖² − 2dφ'(0)`` is added exactly rather than read off the blocks
(where the expansion ``‖x‖² + ‖y‖² − 2xᵀy`` leaves rounding noise in ``t``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

# Default block size, in elements of one (rows × n) buffer: rows = budget // n (at least 1, at
# most n). On CPU 2^20 elements (4 MB in float32, ~128 rows at n = 10,000) keeps the working set
# near the L2/L3 caches; measured on 2 threads at n = 10,000, d = 2, float32, blocks of 32 to 256
# rows ran within ~30% of each other and 96–128 rows were fastest (~0.12 s). Accelerators get
# larger blocks (fewer kernel launches); 4 buffers of 2^22 float64 elements are 128 MB.
CPU_BLOCK_ELEMENTS = 2**20
ACCELERATOR_BLOCK_ELEMENTS = 2**22

# The exact median of the n(n−1)/2 squared distances needs O(n²) memory; above this many points
# the median is taken over an evenly strided subsample (deterministic, so the bandwidth and hence
# the metric are reproducible without a generator). 2,000 points give ~2·10⁶ pairs (16 MB in
# float64), and the sample median of 2·10⁶ values has relative error well below 1%.
MEDIAN_MAX_POINTS = 2000


class SteinKernel(Protocol):
    """A radial base kernel in the form the chunked Stein pass needs."""

    def stein_block(self, sq_dist: Tensor, score_dot: Tensor, cross: Tensor, scratch: Tensor,
                    dim: int) -> Tensor:
        """``u`` on a block from ``t = ‖x−y‖²``, ``G = s(x)ᵀs(y)``, ``D = (s(x)−s(y))ᵀ(x−y)``.

        All tensors are ``(rows, cols)``; returns ``(rows, cols)``. Works in place: it overwrites
        all four inputs (``scratch`` is a free buffer) and allocates nothing, because on CPU a
        fresh multi-megabyte block per chunk costs more in page faults than the arithmetic.
        """
        ...

    def stein_diagonal(self, score_sq_norm: Tensor, dim: int) -> Tensor:
        """``u(x, x)`` from ``‖s(x)‖²``, shape ``(n,) -> (n,)``."""
        ...


@dataclass(frozen=True)
class IMQKernel:
    """Inverse multi-quadric kernel ``k = (c² + ‖x − y‖²)^β``, ``c > 0``, ``β ∈ (−1, 0)``.

    With ``φ(t) = q^β``, ``q = c² + t``, ``w = 1/q``:
    ``φ' = βq^(β−1)``, ``φ'' = β(β−1)q^(β−2)``, and the Stein kernel simplifies to

        u = q^β [G − 2βw (D + d + 2(β − 1) t w)].

    The diagonal (t = 0, D = 0) is ``c^(2β) ‖s‖² − 2dβ c^(2β−2)``; for ``c = 1, β = −½`` it is
    ``‖s‖² + d``, whence ``E V-KSD² = (E_q‖s‖² + d)/n`` on exact samples (off-diagonal terms have
    zero mean under ``q``).

    Reference: Gorham & Mackey, "Measuring sample quality with kernels", ICML 2017 (the IMQ KSD
    detects non-convergence for distantly dissipative targets with Lipschitz scores).
    """

    c: float = 1.0
    beta: float = -0.5

    def __post_init__(self) -> None:
        if not self.c > 0 or not -1.0 < self.beta < 0.0:
            raise ValueError(f"IMQ kernel needs c > 0 and -1 < beta < 0, got c={self.c}, "
                             f"beta={self.beta}")

    def stein_block(self, sq_dist: Tensor, score_dot: Tensor, cross: Tensor, scratch: Tensor,
                    dim: int) -> Tensor:
        beta = self.beta
        t = sq_dist.clamp_(min=0.0)
        w = torch.add(t, self.c**2, out=scratch).reciprocal_()
        # w (D + d + 2(β−1) t w), built in `cross`.
        inner = cross.add_(t.mul_(w), alpha=2.0 * (beta - 1.0)).add_(dim).mul_(w)
        # q^β = w^(−β); sqrt for the default β = −½ (cheaper than pow).
        q_beta = w.sqrt_() if beta == -0.5 else w.pow_(-beta)
        return score_dot.add_(inner, alpha=-2.0 * beta).mul_(q_beta)

    def stein_diagonal(self, score_sq_norm: Tensor, dim: int) -> Tensor:
        c2 = self.c**2
        return c2**self.beta * score_sq_norm - 2.0 * dim * self.beta * c2 ** (self.beta - 1.0)


@dataclass(frozen=True)
class RBFKernel:
    """Gaussian kernel ``k = exp(−‖x − y‖² / (2h²))`` with a fixed ``bandwidth_squared = h²``.

    With ``φ(t) = exp(−t/(2h²))``: ``φ' = −φ/(2h²)``, ``φ'' = φ/(4h⁴)``, so

        u = φ(t) [G + D/h² + d/h² − t/h⁴],

    and the diagonal is ``‖s‖² + d/h²``. Use :func:`median_bandwidth_squared` for the median rule.

    Reference: Liu, Lee & Jordan, "A kernelized Stein discrepancy for goodness-of-fit tests",
    ICML 2016.
    """

    bandwidth_squared: float

    def __post_init__(self) -> None:
        if not (self.bandwidth_squared > 0 and math.isfinite(self.bandwidth_squared)):
            raise ValueError(f"RBF bandwidth_squared must be positive and finite, "
                             f"got {self.bandwidth_squared}")

    def stein_block(self, sq_dist: Tensor, score_dot: Tensor, cross: Tensor, scratch: Tensor,
                    dim: int) -> Tensor:
        h2 = self.bandwidth_squared
        t = sq_dist.clamp_(min=0.0)
        linear = score_dot.add_(cross, alpha=1.0 / h2).add_(t, alpha=-1.0 / h2**2).add_(dim / h2)
        return linear.mul_(t.mul_(-0.5 / h2).exp_())

    def stein_diagonal(self, score_sq_norm: Tensor, dim: int) -> Tensor:
        return score_sq_norm + dim / self.bandwidth_squared


def median_bandwidth_squared(x: Tensor, max_points: int = MEDIAN_MAX_POINTS) -> float:
    """Median rule: ``h²`` = median of the squared pairwise distances ``‖x_i − x_j‖², i < j``.

    Exact for ``n ≤ max_points``; otherwise computed on the ``max_points`` rows
    ``x[round(linspace(0, n − 1, max_points))]`` (an evenly strided, deterministic subsample).
    The median is the lower median (``torch.median``) of the ``m(m−1)/2`` values. If it is 0
    (at least half the pairs coincide, e.g. a collapsed sampler) the mean squared distance is
    used, and 1.0 if that is 0 too, so the kernel is always defined.

    Args:
        x: ``(n, dim)`` points, ``n ≥ 2``.
        max_points: subsample size above which the median is approximate.

    Returns:
        ``h²`` as a Python float.
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"the median bandwidth needs at least 2 points, got {n}")
    if n > max_points:
        index = torch.linspace(0, n - 1, max_points, device=x.device).round().long()
        x = x[index]
    # Exact differences (no matmul expansion): these are the values the median is taken of.
    sq_dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").square_()
    rows, cols = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
    pairs = sq_dist[rows, cols]
    h2 = float(pairs.median())
    if not h2 > 0:
        h2 = float(pairs.mean())
    return h2 if h2 > 0 and math.isfinite(h2) else 1.0


KernelName = Literal["imq", "rbf"]


def resolve_kernel(kernel: KernelName | SteinKernel, x: Tensor) -> SteinKernel:
    """``"imq"`` → ``IMQKernel()`` (c = 1, β = −½); ``"rbf"`` → RBF with the median rule on ``x``.

    A kernel object is returned unchanged (kernels are injected, the names are shortcuts).
    """
    if isinstance(kernel, str):
        if kernel == "imq":
            return IMQKernel()
        if kernel == "rbf":
            return RBFKernel(median_bandwidth_squared(x))
        raise ValueError(f"unknown kernel '{kernel}'; valid kernels: imq, rbf")
    return kernel


def default_chunk_size(n: int, device: torch.device) -> int:
    """Rows per block: ``CPU_BLOCK_ELEMENTS // n`` on CPU, ``ACCELERATOR_BLOCK_ELEMENTS // n``
    elsewhere, clipped to ``[1, n]``, so memory stays ``O(n · chunk)`` with a bounded block."""
    on_cpu = torch.device(device).type == "cpu"
    budget = CPU_BLOCK_ELEMENTS if on_cpu else ACCELERATOR_BLOCK_ELEMENTS
    return max(1, min(n, budget // max(n, 1)))


def _accumulation_dtype(device: torch.device) -> torch.dtype:
    # Sums of n² terms are accumulated in float64 (cheap: one value per block); MPS has no
    # float64, so it keeps float32 there.
    return torch.float32 if device.type == "mps" else torch.float64


def _pair_features(x: Tensor, score: Tensor) -> tuple[Tensor, ...]:
    """Augmented features so that ``t``, ``G`` and ``D`` are each one matmul.

    ``t_ij = [x_i, ‖x_i‖², 1] · [−2x_j, 1, ‖x_j‖²]`` and
    ``D_ij = [s_i, x_i, s_iᵀx_i, 1] · [−x_j, −s_j, 1, s_jᵀx_j]`` (the expansion of
    ``(s_i − s_j)ᵀ(x_i − x_j)``).
    """
    ones = torch.ones_like(x[:, :1])
    sq_norm = x.square().sum(dim=1, keepdim=True)
    score_x = (score * x).sum(dim=1, keepdim=True)
    dist_left = torch.cat([x, sq_norm, ones], dim=1)
    dist_right = torch.cat([-2.0 * x, ones, sq_norm], dim=1)
    cross_left = torch.cat([score, x, score_x, ones], dim=1)
    cross_right = torch.cat([-x, -score, ones, score_x], dim=1)
    return dist_left, dist_right, cross_left, cross_right


def _check_inputs(x: Tensor, score: Tensor) -> Tensor:
    """Validates shapes; returns ``score`` in ``x``'s dtype and device (the pass runs in those)."""
    if x.ndim != 2 or score.shape != x.shape:
        raise ValueError(f"x and score must both have shape (n, dim); got {tuple(x.shape)} and "
                         f"{tuple(score.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"KSD needs at least 2 samples, got {x.shape[0]}")
    return score.to(dtype=x.dtype, device=x.device)


def stein_kernel_diagonal(x: Tensor, score: Tensor,
                          kernel: KernelName | SteinKernel = "imq") -> Tensor:
    """``u(x_i, x_i)`` for every row, in closed form. ``(n, dim), (n, dim) -> (n,)``."""
    score = _check_inputs(x, score)
    kernel = resolve_kernel(kernel, x)
    return kernel.stein_diagonal(score.square().sum(dim=1), x.shape[1])


def stein_kernel_matrix(x: Tensor, score: Tensor,
                        kernel: KernelName | SteinKernel = "imq") -> Tensor:
    """The full ``(n, n)`` Stein kernel matrix (O(n²) memory: for tests and small ``n`` only).

    The diagonal is the exact closed form of :func:`stein_kernel_diagonal`.
    """
    score = _check_inputs(x, score)
    kernel = resolve_kernel(kernel, x)
    n, dim = x.shape
    dist_left, dist_right, cross_left, cross_right = _pair_features(x, score)
    block = kernel.stein_block(dist_left @ dist_right.T, score @ score.T,
                               cross_left @ cross_right.T, x.new_empty(n, n), dim)
    block.diagonal().copy_(kernel.stein_diagonal(score.square().sum(dim=1), dim))
    return block


def ksd_squared(x: Tensor, score: Tensor, kernel: KernelName | SteinKernel = "imq",
                statistic: Literal["v", "u"] = "v", chunk_size: int | None = None,
                fused: bool = False) -> Tensor:
    """Squared kernelised Stein discrepancy of the samples ``x`` from the target with ``score``.

    V-statistic ``(1/n²) Σ_ij u(x_i, x_j)`` (≥ 0 up to rounding; biased upwards by the diagonal,
    which is the noise floor on exact samples) or U-statistic ``(1/(n(n−1))) Σ_{i≠j} u``
    (unbiased for the population KSD², may be negative). Computed in ``x.dtype`` on ``x.device``
    in row blocks of ``chunk_size`` (memory ``O(n · chunk_size)``), accumulated in float64.

    Args:
        x: ``(n, dim)`` samples, ``n ≥ 2``.
        score: ``(n, dim)`` target score ``grad log q(x)`` at the samples (same dtype/device).
        kernel: ``"imq"`` (c = 1, β = −½), ``"rbf"`` (median rule on ``x``, see
            :func:`median_bandwidth_squared`) or a kernel object (:class:`IMQKernel`,
            :class:`RBFKernel`).
        statistic: ``"v"`` or ``"u"``.
        chunk_size: rows per block; ``None`` picks :func:`default_chunk_size`.
        fused: for the IMQ kernel at ``dim <= 8``, use the single fused loop compiled by
            ``torch.compile`` (:mod:`benchmark.metrics.ksd_fused`): about 6x faster at
            n = 10,000, d = 2 on one CPU thread, after a compilation of 10-20 s per process.
            Off by default: at the default n = 1000 the compilation never pays back.

    Returns:
        0-dim tensor (float64, or float32 on MPS) on ``x.device``.

    References:
        Liu, Lee & Jordan (ICML 2016); Chwialkowski, Strathmann & Gretton (ICML 2016);
        Gorham & Mackey (ICML 2017).
    """
    score = _check_inputs(x, score)
    if statistic not in ("v", "u"):
        raise ValueError(f"unknown statistic '{statistic}'; valid statistics: v, u")
    n, dim = x.shape
    chunk_size = default_chunk_size(n, x.device) if chunk_size is None else int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    kernel = resolve_kernel(kernel, x)
    if fused:
        from benchmark.metrics.ksd_fused import MAX_DIM, imq_ksd_squared_fused
        if not isinstance(kernel, IMQKernel) or dim > MAX_DIM:
            raise ValueError(f"fused KSD supports the IMQ kernel at dim <= {MAX_DIM}; got "
                             f"{type(kernel).__name__} at dim {dim}")
        return imq_ksd_squared_fused(x, score, c=kernel.c, beta=kernel.beta,
                                     statistic=statistic)
    acc = _accumulation_dtype(x.device)
    dist_left, dist_right, cross_left, cross_right = _pair_features(x, score)
    # Four flat work buffers reused by every block (a block of `rows × cols` is a contiguous
    # view of their first rows·cols entries): memory 4 · chunk_size · n elements.
    rows_max = min(chunk_size, n)
    buffers = torch.empty(4, rows_max * n, dtype=x.dtype, device=x.device)
    off_diagonal = torch.zeros((), dtype=acc, device=x.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        rows, cols = stop - start, n - start
        sq_dist, score_dot, cross, scratch = (buffer[: rows * cols].view(rows, cols)
                                              for buffer in buffers)
        # Columns from `start` on: the square part [start, stop) once, the rest twice (symmetry).
        torch.mm(dist_left[start:stop], dist_right[start:].T, out=sq_dist)
        torch.mm(score[start:stop], score[start:].T, out=score_dot)
        torch.mm(cross_left[start:stop], cross_right[start:].T, out=cross)
        block = kernel.stein_block(sq_dist, score_dot, cross, scratch, dim)
        square = block[:, :rows]
        # Row sums in x.dtype (cascade summation, accurate), then float64 across rows: cheaper
        # than casting the whole block.
        off_diagonal += (2.0 * block.sum(dim=1).sum(dtype=acc) - square.sum(dtype=acc)
                         - square.diagonal().sum(dtype=acc))
    diagonal = kernel.stein_diagonal(score.square().sum(dim=1), dim).sum(dtype=acc)
    if statistic == "v":
        return (off_diagonal + diagonal) / (n * n)
    return off_diagonal / (n * (n - 1))


def signed_sqrt(value: Tensor | float) -> Tensor:
    """``sign(v) · √|v|``: a root of a U-statistic KSD² that is never NaN for finite ``v``."""
    value = torch.as_tensor(value)
    return value.sign() * value.abs().sqrt()


def ksd(x: Tensor, score: Tensor, kernel: KernelName | SteinKernel = "imq",
        statistic: Literal["v", "u"] = "v", chunk_size: int | None = None) -> Tensor:
    """KSD as a root: ``√KSD²`` for the V-statistic (clamped at 0 against rounding), the signed
    root for the U-statistic. Arguments as :func:`ksd_squared`; returns a 0-dim tensor."""
    value = ksd_squared(x, score, kernel=kernel, statistic=statistic, chunk_size=chunk_size)
    return value.clamp(min=0.0).sqrt() if statistic == "v" else signed_sqrt(value)


def score_in_chunks(score_fn: Callable[[Tensor], Tensor], x: Tensor,
                    chunk_size: int = 8192) -> Tensor:
    """``score_fn`` on row chunks of ``x`` (bounds autograd memory). ``(n, dim) -> (n, dim)``."""
    return torch.cat([score_fn(x[start:start + chunk_size]).detach()
                      for start in range(0, x.shape[0], chunk_size)], dim=0)
