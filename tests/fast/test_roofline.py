"""The roofline report: well-formed rows and a consistent cost model (no timing asserted)."""

from __future__ import annotations

import math

import torch

from benchmark.roofline import SMALL_DIM, measure


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
