"""A fused IMQ KSD for small dimension, compiled with ``torch.compile`` (opt-in).

The eager pass in :mod:`benchmark.metrics.ksd` forms ``t``, ``G`` and ``D`` by three matrix
products and then runs about ten in-place elementwise passes over each ``rows x n`` block:
each pass streams the block through memory, so it runs at a tenth of an elementwise roofline
at best. Here the Stein kernel of a block is one expression of the per-point inputs, with the
``d`` coordinates unrolled (``d <= MAX_DIM``), so inductor emits a single fused loop that reads
``O(rows + n)`` numbers and reduces ``u`` on the fly: no ``(rows, n)`` tensor is written.

Compilation costs seconds to a minute per process (per block shape), so this pays only for
large ``n`` or many calls in one process; it is off by default (``ksd_squared(...,
fused=True)`` or ``python -m benchmark.tools.roofline --fused``). Measured numbers are in the
module :mod:`benchmark.tools.roofline` report and ``results/perf``.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

#: Largest dimension unrolled into the fused expression (beyond it the matmul form wins).
MAX_DIM = 8


def _imq_block_sum(x_rows: Tensor, s_rows: Tensor, x_cols: Tensor, s_cols: Tensor,
                   c2: float, beta: float) -> Tensor:
    """``sum_{i in rows, j in cols} u(x_i, x_j)`` for the IMQ kernel, fused.

    ``x_rows``, ``s_rows``: ``(r, d)``; ``x_cols``, ``s_cols``: ``(m, d)``. Uses
    ``u = q^beta G - 2 beta q^(beta-1) (D + d) - 4 beta (beta - 1) q^(beta-2) t`` with
    ``q = c^2 + t`` (the closed form of :class:`benchmark.metrics.ksd.IMQKernel`).
    """
    dim = x_rows.shape[1]
    t = g = dd = None
    for k in range(dim):  # unrolled at trace time: d is small and fixed per compilation
        r = x_rows[:, k, None] - x_cols[None, :, k]
        ds = s_rows[:, k, None] - s_cols[None, :, k]
        prod = s_rows[:, k, None] * s_cols[None, :, k]
        t = r * r if t is None else t + r * r
        dd = ds * r if dd is None else dd + ds * r
        g = prod if g is None else g + prod
    w = 1.0 / (t + c2)                       # q^-1
    q_beta = torch.sqrt(w) if beta == -0.5 else torch.pow(w, -beta)  # q^beta
    u = q_beta * (g - 2.0 * beta * w * (dd + dim) - 4.0 * beta * (beta - 1.0) * w * w * t)
    # Row sums in the input dtype (a vectorised reduction), then float64 across rows.
    return u.sum(dim=1).sum(dtype=torch.float64 if u.device.type != "mps" else u.dtype)


@functools.cache
def _compiled():
    return torch.compile(_imq_block_sum, dynamic=True)


def imq_ksd_squared_fused(x: Tensor, score: Tensor, c: float = 1.0, beta: float = -0.5,
                          statistic: str = "v", chunk_size: int = 256) -> Tensor:
    """IMQ KSD² (V or U statistic) like :func:`benchmark.metrics.ksd.ksd_squared`, fused
    (normally reached through ``ksd_squared(..., fused=True)``).

    Row blocks of ``chunk_size`` against all columns from the block's start (the upper block
    triangle, as the eager pass): square part once, the rest twice. The last, shorter block
    has its own shape and so its own compilation; ``chunk_size`` dividing ``n`` avoids it.

    Args:
        x, score: ``(n, d)`` with ``d <= MAX_DIM``.
    """
    n, dim = x.shape
    if dim > MAX_DIM:
        raise ValueError(f"fused KSD unrolls at most {MAX_DIM} dimensions, got d = {dim}")
    block_sum = _compiled()
    c2 = float(c) ** 2
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        square = block_sum(x[start:stop], score[start:stop], x[start:stop], score[start:stop],
                           c2, beta)
        total += square
        if stop < n:
            total += 2.0 * block_sum(x[start:stop], score[start:stop], x[stop:], score[stop:],
                                     c2, beta)
    # The diagonal, u(x, x) = c^(2 beta) ||s||^2 - 2 d beta c^(2 (beta - 1)), is inside the
    # square blocks already (t = 0 exactly there, since r = x_i - x_i).
    if statistic == "v":
        return total / (n * n)
    diagonal = (c2**beta * score.square().sum(dim=1) - 2.0 * dim * beta * c2 ** (beta - 1.0))
    return (total - diagonal.sum(dtype=torch.float64)) / (n * (n - 1))
