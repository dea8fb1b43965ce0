"""The roofline report: well-formed rows and a consistent cost model (no timing asserted)."""

from __future__ import annotations

import math

import torch

from benchmark.tools.roofline import SMALL_DIM, imq_flops_per_pair, measure


def test_roofline_rows_follow_the_cost_model():
    rows = measure(64, 3, torch.device("cpu")) + measure(64, SMALL_DIM + 1, torch.device("cpu"))
    assert [(r["pass_"], r["dim"]) for r in rows] == [
        ("ksd_imq", 3), ("svgd_direction", 3), ("ksd_imq", SMALL_DIM + 1),
        ("svgd_direction", SMALL_DIM + 1)]
    for row in rows:
        assert row["pairs"] == (64 * 65 // 2 if row["pass_"] == "ksd_imq" else 64 * 64)
        assert row["roofline"] == ("elementwise" if row["dim"] <= SMALL_DIM else "matmul")
        for key in ("seconds", "roofline_seconds", "pairs_per_s", "roofline_pairs_per_s"):
            assert math.isfinite(row[key]) and row[key] > 0
        assert row["fraction_of_roofline"] == row["roofline_seconds"] / row["seconds"]
        compute = "gflops" in row
        assert compute == (row["pass_"] == "ksd_imq" and row["dim"] <= SMALL_DIM)
        if compute:  # the compute roofline of the small-d KSD pass
            flops = row["pairs"] * imq_flops_per_pair(row["dim"])
            assert math.isclose(row["gflops"], flops / row["seconds"] / 1e9)
            assert math.isclose(row["fraction_of_compute_peak"],
                                row["gflops"] / row["matmul_gflops"])


def test_imq_flop_count_grows_by_eight_per_coordinate():
    # two differences, one product and three accumulations per coordinate (module docstring)
    assert [imq_flops_per_pair(d) for d in (1, 2, 3)] == [18, 26, 34]
