"""The training tracer (``benchmark.tools.trace_training``) retrains a stored cell exactly."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from benchmark.plan.matrix import load_matrix
from benchmark.plan.plan import make_plan
from benchmark.run.runner import run_matrix
from benchmark.store import ResultsStore
from benchmark.tools.trace_training import QUANTILES, find_cell, main, trace

pytestmark = pytest.mark.usefixtures("single_thread")

MATRIX = textwrap.dedent("""
    name = "trace"
    seeds = [0, 1]
    n = 32
    metrics = ["energy_distance"]
    targets = ["mog2"]

    [[samplers]]
    name = "dft_ns"
    budgets = [1]
    [samplers.params]
    num_iterations = 6
    batch_size = 16
    hidden_width = 8
    hidden_depth = 1
    score_warmup = 2
    warmup_iterations = 2
    monitor_every = 2
    monitor_batch = 16
    log_every = 2
""")


def _untraced(history: pd.DataFrame) -> pd.DataFrame:
    """Loss and monitor rows: neither the seconds nor the logged/traced evaluations."""
    keep = ~history["metric"].str.contains("_eval|train_seconds|live_|reported_")
    return (history.loc[keep, ["iteration", "metric", "value"]]
            .sort_values(["iteration", "metric"]).reset_index(drop=True))


def test_the_traced_training_is_the_stored_one(tmp_path):
    path = tmp_path / "trace.toml"
    path.write_text(MATRIX)
    store = ResultsStore(tmp_path / "store")
    list(run_matrix(make_plan(load_matrix(str(path)), store, force=True), store,
                    cache_dir=tmp_path / "cache"))
    cell = find_cell(str(path), "mog2", "dft_ns", 1)
    stored = store.load_history()
    stored = stored[stored["train_key"].eq(cell.train_key)]

    traced, exact = trace(cell)

    assert len(stored) and exact is not None and len(exact) > 0
    pd.testing.assert_frame_equal(_untraced(traced), _untraced(stored), check_dtype=False)
    for prefix in ("live", "reported"):  # every traced column at every logged iteration
        for name in QUANTILES:
            values = traced.loc[traced["metric"].eq(f"{prefix}_{name}"), "value"]
            assert len(values) == 3 and (values > 0).all()
    median, largest = (traced.loc[traced["metric"].eq(f"reported_{q}"), "value"].to_numpy()
                       for q in ("median", "max"))
    assert (median <= largest).all()


def test_an_unknown_cell_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "trace.toml"
    path.write_text(MATRIX)
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--target", "mog2", "--sampler", "kl_ns", "--seed", "0"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no cell (mog2, kl_ns, seed 0)" in message and "('mog2', 'dft_ns')" in message
