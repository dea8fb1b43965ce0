"""Scaling out: a real two-worker ``distributed.LocalCluster`` against the sequential run."""

from __future__ import annotations

import dataclasses
import math
import textwrap
import tomllib

import pytest

from benchmark.cli import main
from benchmark.plan.cells import plan_cells
from benchmark.plan.matrix import parse_matrix
from benchmark.run.distributed import run_cells, task_groups
from benchmark.store import ResultsStore

# A tiny neural sampler: a few iterations of a narrow network, enough to exercise training on
# a worker, the grouping by train key and the client-side history write.
TINY_NEURAL = {"num_iterations": 4, "batch_size": 16, "hidden_width": 8, "hidden_depth": 1,
               "log_every": 2}

MATRIX = textwrap.dedent("""
    name = "dask"
    seeds = [0, 1, 2]
    n = 48
    metrics = ["ksd", "energy_distance"]
    targets = ["gaussian"]
    [[samplers]]
    name = "mala"
    budgets = [3, 6]
    [[samplers]]
    name = "dft_ns"
    budgets = [1]
    [samplers.params]
    num_iterations = 4
    batch_size = 16
    hidden_width = 8
    hidden_depth = 1
    log_every = 2
""")


def test_neural_cells_of_one_train_key_form_one_task():
    data = {"seeds": [0, 1], "n": 8, "metrics": ["ksd"], "targets": ["gaussian"],
            "samplers": [{"name": "mala", "budgets": [1, 2]},
                         {"name": "dft_ns", "budgets": [1], "params": TINY_NEURAL}]}
    cells = plan_cells(parse_matrix(data))
    # Budgets of a neural sampler are [1] in a matrix; a second budget of the same trained
    # sampler (e.g. from another plan) must join its key's task, never run beside it.
    neural = [c for c in cells if c.is_neural]
    cells += [dataclasses.replace(c, budget=2) for c in neural]
    groups = task_groups(cells)
    assert sorted(c.cell_id for g in groups for c in g) == sorted(c.cell_id for c in cells)
    for group in groups:
        if group[0].is_neural:
            assert len(group) == 2 and len({c.train_key for c in group}) == 1
        else:
            assert len(group) == 1
    keys = [g[0].train_key for g in groups if g[0].is_neural]
    assert len(keys) == len(set(keys)) == 2


def test_run_cells_outside_a_worker_keeps_host_pid(tmp_path):
    data = {"seeds": [0], "n": 8, "metrics": ["ksd"], "targets": ["gaussian"],
            "samplers": [{"name": "mala", "budgets": [2]}]}
    cells = plan_cells(parse_matrix(data))
    results = run_cells(cells, str(tmp_path), None, True, None)
    assert [r.rows[0]["cell_id"] for r in results] == [c.cell_id for c in cells]
    assert all(not r.rows[0]["worker"].startswith("tcp://") for r in results)
    assert all(r.samples is not None and r.samples.shape == (8, 2) for r in results)


def test_two_local_workers_match_the_sequential_run(tmp_path, single_thread):
    path = tmp_path / "dask.toml"
    path.write_text(MATRIX)
    # Sequential on one thread, as each Dask worker runs (threads_per_worker=1, and Dask sets
    # OMP_NUM_THREADS=1 in its workers), so float summation orders agree.
    assert main(["run", str(path), "--out", str(tmp_path / "seq"),
                 "--cache", str(tmp_path / "seq-cache")]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "dask"), "--workers", "2",
                 "--cache", str(tmp_path / "dask-cache")]) == 0
    sequential = ResultsStore(tmp_path / "seq").load()
    parallel = ResultsStore(tmp_path / "dask").load()
    assert len(parallel) == len(sequential) == len(plan_cells(parse_matrix(
        tomllib.loads(MATRIX)))) * 2
    workers = set(parallel["worker"])
    assert len(workers) == 2 and all(w.startswith("tcp://") for w in workers)
    assert not any(w.startswith("tcp://") for w in sequential["worker"])
    key = ["cell_id", "metric"]
    merged = sequential.merge(parallel, on=key, suffixes=("_seq", "_dask"), validate="1:1")
    assert len(merged) == len(sequential)
    for column in ("status", "reason", "nfe", "train_nfe", "cell_seed"):
        left, right = merged[f"{column}_seq"], merged[f"{column}_dask"]
        assert ((left == right) | (left.isna() & right.isna())).all(), column
    for a, b in zip(merged["value_seq"], merged["value_dask"], strict=True):
        assert math.isfinite(a) and b == pytest.approx(a, rel=1e-6)
    # The client wrote each trained sampler's history (workers never touch the store).
    history = ResultsStore(tmp_path / "dask").load_history()
    assert set(history["seed"]) == {0, 1, 2} and set(history["metric"]) >= {"dsm_loss"}


def test_bad_worker_options_are_usage_errors(tmp_path, capsys, monkeypatch):
    assert main(["run", "default", "--workers", "0", "--out", str(tmp_path)]) == 2
    assert "--workers: expected an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse: mutually exclusive options
        main(["run", "default", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"])
    assert info.value.code == 2
    import benchmark.run.distributed

    monkeypatch.setattr(benchmark.run.distributed, "CONNECT_TIMEOUT", 0.5)
    data = tmp_path / "one.toml"
    data.write_text('targets = ["gaussian"]\nn = 8\n[[samplers]]\nname = "mala"\n'
                    'budgets = [1]\n')
    assert main(["run", str(data), "--scheduler", "tcp://127.0.0.1:1",
                 "--out", str(tmp_path / "out")]) == 2
    assert "--scheduler: cannot connect to 'tcp://127.0.0.1:1'" in capsys.readouterr().err
