"""``benchmark.tools.rescore`` draws a stored cell's own samples again, without training."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from benchmark.plan.matrix import load_matrix
from benchmark.plan.plan import make_plan
from benchmark.run.runner import run_matrix
from benchmark.store import ResultsStore
from benchmark.tools.rescore import main, rescore, select_cells, summary_tables

pytestmark = pytest.mark.usefixtures("single_thread")

MATRIX = textwrap.dedent("""
    name = "rescore"
    seeds = [0, 1]
    n = 32
    metrics = ["energy_distance"]
    targets = ["mog2", "banana"]

    [[samplers]]
    name = "ula"
    budgets = [5]

    [[samplers]]
    name = "dft_ns"
    budgets = [1]
    [samplers.params]
    num_iterations = 4
    batch_size = 16
    hidden_width = 8
    hidden_depth = 1
    score_warmup = 2
    warmup_iterations = 2
    monitor_every = 2
    monitor_batch = 16
    log_every = 2
""")


@pytest.fixture
def stored(tmp_path):
    """The matrix's path, its store and the cache its run filled."""
    path = tmp_path / "rescore.toml"
    path.write_text(MATRIX)
    store = ResultsStore(tmp_path / "store")
    list(run_matrix(make_plan(load_matrix(str(path)), store, force=True), store,
                    cache_dir=tmp_path / "cache"))
    return path, store, tmp_path / "cache"


def test_rescored_values_are_the_stored_ones(stored, tmp_path):
    path, store, cache = stored
    cells = select_cells(str(path), ["ula", "dft_ns"], ["mog2"],
                         ["energy_distance", "knn_recall"])
    values = rescore(cells, cache)
    rows, _ = store.load_current()
    for label, name in (("ula@5", "ula"), ("dft_ns@1", "dft_ns"), ("reference", "reference")):
        mine = values[values["sampler"].eq(label) & values["metric"].eq("energy_distance")]
        theirs = rows[rows["sampler"].eq(name) & rows["target"].eq("mog2")
                      & rows["metric"].eq("energy_distance")]
        assert len(mine) == 2
        assert (mine.set_index("seed")["value"].sort_index().to_numpy()
                == theirs.set_index("seed")["value"].sort_index().to_numpy()).all()
    recall = values[values["metric"].eq("knn_recall")]
    assert len(recall) == 6 and recall["value"].between(0, 1).all()
    assert set(values["target"]) == {"mog2"}
    table = summary_tables(values)["knn_recall"]
    assert list(table.index) == ["dft_ns@1", "reference", "ula@5"]
    assert "nan" not in table.to_markdown()


def test_an_untrained_neural_cell_is_skipped_not_trained(stored, tmp_path, capsys):
    path, _, _ = stored
    empty = tmp_path / "empty-cache"
    values = rescore(select_cells(str(path), ["dft_ns"], ["banana"], ["energy_distance"]),
                     empty)
    assert set(values["sampler"]) == {"reference"}
    assert capsys.readouterr().err.count("training not in") == 2
    assert not empty.exists() or not any(empty.iterdir())


@pytest.mark.parametrize(("argument", "words"), [
    (["--metric", "nope"], "unknown metric 'nope'; valid: ksd"),
    (["--metric", "ksd", "--sampler", "svgd"], "sampler 'svgd' is not in matrix 'rescore'"),
    (["--metric", "ksd", "--target", "donut"], "target 'donut' is not in matrix 'rescore'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argument, words):
    path = tmp_path / "rescore.toml"
    path.write_text(MATRIX)
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), *argument])
    assert exit_info.value.code == 2
    assert words in capsys.readouterr().err.strip().splitlines()[-1]


def test_out_writes_the_per_seed_values(stored, tmp_path):
    path, _, cache = stored
    out = tmp_path / "values.csv"
    assert main([str(path), "--metric", "knn_precision", "--sampler", "ula", "--target",
                 "banana", "--cache", str(cache), "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert len(written) == 4 and set(written["sampler"]) == {"ula@5", "reference"}
