"""pytest-benchmark timings of the hot paths (run with ``tox -e perf`` or
``python -m pytest tests/perf -m perf``); never part of the default test run.

Each benchmark asserts the result it timed is finite, so a broken fast path cannot look fast.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TypeVar

import pytest
import torch

from benchmark.metrics.ksd import ksd_squared
from samplers.langevin import MALA
from samplers.neural import DFTNS
from samplers.svgd import SVGD
from targets import make_target
from targets.base import make_generator

T = TypeVar("T")


def synchronised(function: Callable[[], T], device: str) -> Callable[[], T]:
    """``function`` followed by a device synchronisation, so GPU timings include the work."""
    if not device.startswith("cuda"):
        return function

    def run() -> T:
        result = function()
        torch.cuda.synchronize()
        return result
    return run


@pytest.mark.parametrize("n", [1_000, 10_000])
def test_ksd_imq(benchmark, device, n):
    x = torch.randn(n, 2, generator=make_generator(0, device), device=device)
    value = benchmark(synchronised(lambda: ksd_squared(x, -x, kernel="imq", statistic="v"),
                                   device))
    assert math.isfinite(float(value))


def _iterative_step(benchmark, sampler, n: int, device: str):
    target = make_target("donut", device=device)
    generator = make_generator(0, device)
    state = sampler.init(target, target.initial_positions(n, generator), 10)
    new_state, _ = benchmark(synchronised(lambda: sampler.step(target, state, generator), device))
    assert torch.isfinite(new_state.x).all()


def test_svgd_step(benchmark, device):
    _iterative_step(benchmark, SVGD(), 1_000, device)


def test_mala_step(benchmark, device):
    _iterative_step(benchmark, MALA(), 1_000, device)


def test_dft_training_10_iterations(benchmark, device):
    # ``train`` builds fresh networks each call; at default sizes that is < 1% of 10 iterations.
    target = make_target("donut", device=device)
    sampler = DFTNS()
    generator = make_generator(0, device)
    benchmark.pedantic(synchronised(lambda: sampler.train(target, 10, generator), device),
                       rounds=3, iterations=1)
    assert torch.isfinite(sampler.sample(10, generator)).all()


def test_generator_sampling(benchmark, device):
    sampler = DFTNS()
    generator = make_generator(0, device)
    sampler.train(make_target("donut", device=device), 0, generator)
    x = benchmark(synchronised(lambda: sampler.sample(1_000, generator), device))
    assert x.shape == (1_000, 2)


def test_default_matrix_cell(benchmark, device, tmp_path):
    # One whole cell of the default matrix (MALA at 100 steps on donut, n = 1000, with its
    # KSD, energy distance and mode metrics): sampling, metrics and the harness around them.
    from benchmark.plan.cells import plan_cells
    from benchmark.plan.matrix import load_matrix
    from benchmark.run.runner import run_cell

    cells = [cell for cell in plan_cells(load_matrix("default"))
             if cell.target.label == "donut" and cell.sampler is not None
             and cell.sampler.label == "mala" and cell.budget == 100 and cell.seed == 0]
    cell = dataclasses.replace(cells[0], device=device)
    result = benchmark.pedantic(lambda: run_cell(cell, tmp_path), rounds=3, iterations=1)
    assert {row["status"] for row in result.rows} == {"ok"}


def test_load_the_paper_2d_store(benchmark):
    # Reading a store of 1,131 cells (4,524 rows, plus the training histories) as `table`,
    # `plot` and `compare` do; the goal is under 3 s (4.3 s when every file was parsed by its
    # own pandas call, 0.3 s with one parse per header, both on the loaded 2-core VM).
    from pathlib import Path

    from benchmark.store import ResultsStore

    store = ResultsStore(Path(__file__).resolve().parents[2] / "results" / "paper-2d")

    def load() -> tuple:
        return store.load(), store.load_history()

    rows, history = benchmark.pedantic(load, rounds=3, iterations=1)
    assert rows["cell_id"].nunique() >= 1_131 and len(history) > 0
    assert rows["cell_id"].nunique() * 4 == len(rows)  # four metrics per cell
