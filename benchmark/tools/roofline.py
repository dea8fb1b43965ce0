"""Achieved pair throughput of the KSD and SVGD kernel passes against a measured roofline.

    python -m benchmark.tools.roofline [--device cpu] [--n 1000 10000] [--dim 2 100] [--csv PATH]

Cost model. Both passes are sums over pairs of points: KSD (V-statistic) evaluates the Stein
kernel on the ``n(n+1)/2`` pairs of the upper block triangle; one SVGD step evaluates the RBF
kernel on all ``n^2`` pairs (distances, ``exp``, one ``(n, n) @ (n, 2d + 1)`` product) plus an
order-statistic selection over ``n(n-1)/2`` distances for the median bandwidth. Per pair the
work is ``O(d)`` multiply-adds (inner products, done as matrix products) and ``O(1)``
elementwise operations (about ten for the IMQ Stein kernel, three for SVGD).

Rooflines, measured in the same process on the same device and dtype:

- small ``d`` (the inner products are cheap, the elementwise passes dominate): the time of a
  single fused elementwise op over the same number of pairs (``torch.add(a, b, out=c)`` on
  float32 buffers of that length, chunked like the KSD blocks) — the fastest a pass that
  reads two numbers and writes one per pair can go;
- large ``d``: a ``torch.matmul`` of the shapes the pass needs (KSD: ``(n, d + 2) @ (d + 2,
  n)`` three times; SVGD: ``(n, d) @ (d, n)`` and ``(n, n) @ (n, 2d + 1)``).

Reported: seconds, pairs/s achieved, pairs/s of the roofline, and their ratio (roofline time
/ achieved time: 1 means at the roofline, 0.5 means twice as slow).

The elementwise roofline charges a pair one add; the IMQ Stein kernel costs
:func:`imq_flops_per_pair` (26 at d = 2, including one division and one square root), so at
small ``d`` a pass can be compute-bound far above that roofline. The KSD rows therefore also
give a compute roofline: achieved GFLOP/s (pairs x flops per pair / seconds) against the
float32 GFLOP/s of a large matrix product measured in the same process (the machine's
practical multiply-add peak; division and square root are counted as one flop each, which
flatters the peak, so the fraction is a lower bound).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from benchmark.metrics.ksd import default_chunk_size, ksd_squared
from samplers.svgd import SVGD
from targets.base import make_generator

#: ``d`` at or below which the elementwise roofline applies, above it the matmul one.
SMALL_DIM = 8


def best_seconds(function: Callable[[], object], device: torch.device, repeats: int = 5) -> float:
    """Fastest of ``repeats`` timed calls after one warm-up, device-synchronised."""
    def synchronise() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    function()
    synchronise()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronise()
        best = min(best, time.perf_counter() - start)
    return best


def elementwise_roofline(num_pairs: int, device: torch.device, block: int) -> float:
    """Seconds of one fused elementwise op over ``num_pairs`` float32 values, in blocks."""
    a, b, c = (torch.rand(block, device=device) for _ in range(3))
    full, rest = divmod(num_pairs, block)

    def run() -> None:
        for _ in range(full):
            torch.add(a, b, out=c)
        if rest:
            torch.add(a[:rest], b[:rest], out=c[:rest])
    return best_seconds(run, device)


def matmul_roofline(shapes: list[tuple[int, int, int]], device: torch.device) -> float:
    """Seconds of the float32 matrix products ``(m, k) @ (k, p)`` listed in ``shapes``."""
    operands = [(torch.rand(m, k, device=device), torch.rand(k, p, device=device))
                for m, k, p in shapes]
    return best_seconds(lambda: [left @ right for left, right in operands], device)


def imq_flops_per_pair(dim: int) -> int:
    """Floating-point operations of one IMQ Stein-kernel pair in the fused form
    (:func:`benchmark.metrics.ksd_fused._imq_block_sum`): per coordinate two differences, a
    product and three accumulations (8, less 3 for the first coordinate, which starts the
    sums); then ``1 / (t + c^2)`` (2), a square root (1), the bracket (9) and the row sum (1).
    """
    return 8 * dim + 10


def matmul_gflops(device: torch.device, size: int = 2048) -> float:
    """Float32 GFLOP/s of one ``(size, size) @ (size, size)`` product (best of 5)."""
    left, right = torch.rand(size, size, device=device), torch.rand(size, size, device=device)
    return 2.0 * size**3 / best_seconds(lambda: left @ right, device) / 1e9


def measure(n: int, dim: int, device: torch.device, fused: bool = False) -> list[dict]:
    """KSD (IMQ, V-statistic) and one SVGD direction at ``n`` points in ``dim`` dimensions;
    with ``fused``, also the compiled fused KSD (``dim <= 8``; compilation not timed)."""
    generator = make_generator(0, device)
    x = torch.randn(n, dim, generator=generator, device=device)
    score = -x
    rows = []
    ksd_pairs = n * (n + 1) // 2
    ksd_seconds = best_seconds(lambda: ksd_squared(x, score, kernel="imq"), device)
    if dim <= SMALL_DIM:
        block = default_chunk_size(n, device) * n
        ksd_roof, kind = elementwise_roofline(ksd_pairs, device, block), "elementwise"
    else:
        ksd_roof, kind = matmul_roofline([(n, dim + 2, n)] * 3, device), "matmul"
    rows.append(dict(pass_="ksd_imq", n=n, dim=dim, pairs=ksd_pairs, seconds=ksd_seconds,
                     roofline=kind, roofline_seconds=ksd_roof))
    if fused and dim <= SMALL_DIM:
        fused_seconds = best_seconds(lambda: ksd_squared(x, score, kernel="imq", fused=True),
                                     device)
        rows.append(dict(pass_="ksd_imq_fused", n=n, dim=dim, pairs=ksd_pairs,
                         seconds=fused_seconds, roofline=kind, roofline_seconds=ksd_roof))
    sampler = SVGD()
    svgd_pairs = n * n
    svgd_seconds = best_seconds(lambda: sampler.stein_direction(x, score), device)
    if dim <= SMALL_DIM:
        svgd_roof, kind = elementwise_roofline(svgd_pairs, device, min(svgd_pairs, 2**22)), \
            "elementwise"
    else:
        svgd_roof, kind = matmul_roofline([(n, dim, n), (n, n, 2 * dim + 1)], device), "matmul"
    rows.append(dict(pass_="svgd_direction", n=n, dim=dim, pairs=svgd_pairs,
                     seconds=svgd_seconds, roofline=kind, roofline_seconds=svgd_roof))
    peak = matmul_gflops(device) if dim <= SMALL_DIM else float("nan")
    for row in rows:
        if row["pass_"].startswith("ksd") and dim <= SMALL_DIM:
            row["gflops"] = row["pairs"] * imq_flops_per_pair(dim) / row["seconds"] / 1e9
            row["matmul_gflops"] = peak
            row["fraction_of_compute_peak"] = row["gflops"] / peak
        row["pairs_per_s"] = row["pairs"] / row["seconds"]
        row["roofline_pairs_per_s"] = row["pairs"] / row["roofline_seconds"]
        row["fraction_of_roofline"] = row["roofline_seconds"] / row["seconds"]
        row["device"] = str(device)
        row["threads"] = torch.get_num_threads()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.tools.roofline",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--dim", type=int, nargs="+", default=[2, 100])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--fused", action="store_true",
                        help="also time the compiled fused IMQ KSD (d <= 8)")
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [row for n in args.n for dim in args.dim
            for row in measure(n, dim, device, args.fused)]
    table = pd.DataFrame(rows).rename(columns={"pass_": "pass"})
    if args.csv:
        table.to_csv(args.csv, index=False)
    with pd.option_context("display.width", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
