"""Sample files and ``evaluate``: recomputing metrics from stored samples reproduces the run."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch
from plugin_matrix import parse_matrix

from benchmark.cli import main
from benchmark.plan.cells import plan_cells
from benchmark.plan.plan import make_plan
from benchmark.run.evaluate import evaluate_store
from benchmark.run.runner import run_matrix
from benchmark.store import ResultsStore, samples_path

TINY = {
    "name": "tiny",
    "seeds": [0, 1],
    "n": 40,
    "metrics": ["ksd", "energy_distance", "mode_weight_error"],
    "targets": ["mog2"],
    "save_samples": True,
    "samplers": [
        {"name": "mala", "budgets": [3, 6]},
        {"name": "toy_plugins:ExplodingSampler", "label": "exploding", "budgets": [4]},
        {"name": "toy_plugins:RaisingSampler", "label": "raising", "budgets": [2]},
    ],
}


@pytest.fixture
def tiny_store(tmp_path, single_thread):
    store = ResultsStore(tmp_path / "store")
    list(run_matrix(make_plan(parse_matrix(TINY), store), store, cache_dir=tmp_path / "cache"))
    return store


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_finished_cells_have_their_samples_as_float32_cpu(tiny_store):
    rows = tiny_store.load()
    for cell_id, cell in rows.groupby("cell_id"):
        path = samples_path(tiny_store, cell_id)
        if cell["status"].iloc[0] == "failed":  # raised before producing samples
            assert not path.exists()
            continue
        payload = torch.load(path, weights_only=True)
        samples = payload["samples"]
        assert samples.shape == (40, 2) and samples.dtype == torch.float32
        assert samples.device.type == "cpu"
        assert bool(torch.isfinite(samples).all()) == (cell["status"].iloc[0] == "ok")


def test_evaluate_reproduces_the_stored_values_exactly(tiny_store):
    stored = tiny_store.load().set_index(["cell_id", "metric"])
    evaluated = list(evaluate_store(tiny_store))
    assert {c.rows is None for c in evaluated} == {True, False}
    for cell in evaluated:
        if cell.rows is None:
            assert (cell.stored["status"] == "failed").all()
            continue
        assert [row["metric"] for row in cell.rows] == sorted(TINY["metrics"])
        for row in cell.rows:
            before = stored.loc[(cell.cell_id, row["metric"])]
            assert _same(row["value"], before["value"]), (cell.cell_id, row["metric"])
            assert row["status"] == before["status"] and row["reason"] == before["reason"]
            assert row["nfe"] == before["nfe"] and row["cell_seed"] == before["cell_seed"]


def test_a_metric_added_later_equals_the_one_a_full_run_computes(tmp_path, single_thread):
    """Each metric has its own context, so evaluating a subset later changes nothing."""
    ksd_only = ResultsStore(tmp_path / "ksd")
    matrix = parse_matrix({**TINY, "metrics": ["ksd"]})
    list(run_matrix(make_plan(matrix, ksd_only), ksd_only, tmp_path / "c"))
    both = ResultsStore(tmp_path / "both")
    matrix = parse_matrix({**TINY, "metrics": ["ksd", "energy_distance"], "save_samples": False})
    list(run_matrix(make_plan(matrix, both), both, tmp_path / "c"))
    out = tmp_path / "added"
    assert main(["evaluate", str(ksd_only.root), "--metric", "energy_distance",
                 "--out", str(out)]) == 0
    added = ResultsStore(out).load().set_index(["cell_id", "metric"]).sort_index()
    expected = both.load().set_index(["cell_id", "metric"]).sort_index()
    assert list(added.index) == list(expected.index)  # failed cells copied, metric added
    for key in expected.index:
        assert _same(added.loc[key, "value"], expected.loc[key, "value"]), key
    # The new store is self-contained: every cell with samples brought them along.
    for cell_id, status in added["status"].groupby(level="cell_id").first().items():
        assert samples_path(ResultsStore(out), cell_id).exists() == (status != "failed")


def test_cli_evaluate_prints_recomputed_and_stored_values(tiny_store, capsys):
    assert main(["evaluate", str(tiny_store.root), "--metric", "ksd"]) == 0
    out = capsys.readouterr().out
    assert "stored" in out and "mala" in out and "exploding" in out
    # 2 floors + 4 MALA + 2 exploding cells have samples; the 2 raising cells do not.
    assert "recomputed 8 values of 1 metric(s) from samples; 2 cell(s) without samples" in out


def test_evaluate_without_samples_or_with_a_bad_metric_is_a_usage_error(tmp_path, capsys):
    store = ResultsStore(tmp_path / "plain")
    matrix = parse_matrix({**TINY, "save_samples": False, "seeds": [0]})
    list(run_matrix(make_plan(matrix, store), store, tmp_path / "cache"))
    assert main(["evaluate", str(store.root)]) == 2
    assert "no samples in" in capsys.readouterr().err
    assert main(["evaluate", str(store.root), "--metric", "nope"]) == 2
    assert "--metric: unknown metric 'nope'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 2


def test_samples_are_written_before_the_cell_and_by_the_cli_flag(tmp_path, monkeypatch):
    seen = []
    original = ResultsStore.write_cell

    def spy(self, cell_id, rows):
        rows = list(rows)
        if rows[0]["status"] != "failed":
            seen.append(samples_path(self, cell_id).exists())
        original(self, cell_id, rows)

    monkeypatch.setattr(ResultsStore, "write_cell", spy)
    path = tmp_path / "m.toml"
    path.write_text(textwrap.dedent("""
        seeds = [0]
        n = 16
        metrics = ["ksd"]
        targets = ["gaussian"]
        [[samplers]]
        name = "mala"
        budgets = [2]
    """))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--save-samples",
                 "--cache", str(tmp_path / "cache")]) == 0
    assert seen == [True, True]
    cells = plan_cells(parse_matrix({"seeds": [0], "n": 16, "metrics": ["ksd"],
                                     "targets": ["gaussian"],
                                     "samplers": [{"name": "mala", "budgets": [2]}]}))
    assert all(samples_path(ResultsStore(tmp_path / "out"), c.cell_id).exists() for c in cells)
    # A forced rerun without samples removes the now stale files.
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--force",
                 "--cache", str(tmp_path / "cache")]) == 0
    assert not any(samples_path(ResultsStore(tmp_path / "out"), c.cell_id).exists()
                   for c in cells)
