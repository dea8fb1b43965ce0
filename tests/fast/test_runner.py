"""The first `run`: cells, seeds, NFE, statuses, the store, resume and the printed table."""

from __future__ import annotations

import math
import shutil
import textwrap

import pandas as pd
import pytest
from plugin_matrix import PLUGIN_DIR, parse_matrix

from benchmark.cli import main
from benchmark.plan.cells import plan_cells
from benchmark.plan.plan import make_plan
from benchmark.run.runner import run_cell, run_matrix
from benchmark.schema import COLUMNS
from benchmark.store import ResultsStore

TINY = {
    "name": "tiny",
    "seeds": [0, 1],
    "n": 64,
    "metrics": ["ksd", "energy_distance", "mode_weight_error"],
    "targets": ["gaussian"],
    "samplers": [
        {"name": "mala", "budgets": [3, 6]},
        {"name": "toy_plugins:ExplodingSampler", "label": "exploding", "budgets": [4]},
        {"name": "toy_plugins:RaisingSampler", "label": "raising", "budgets": [2]},
    ],
}


@pytest.fixture
def tiny_run(tmp_path):
    matrix = parse_matrix(TINY)
    store = ResultsStore(tmp_path / "store")
    finished = list(run_matrix(make_plan(matrix, store), store, cache_dir=tmp_path / "cache"))
    return matrix, store, finished


def test_plan_covers_the_matrix_and_floors():
    cells = plan_cells(parse_matrix(TINY))
    # floors: 1 target x 2 seeds; samplers: (2 + 1 + 1) budgets x 2 seeds
    assert len(cells) == 2 + 8
    assert len({c.cell_id for c in cells}) == len(cells)


def test_cell_seeds_are_shared_across_budgets_and_differ_across_seeds():
    cells = [c for c in plan_cells(parse_matrix(TINY)) if c.sampler_label == "mala"]
    by = {(c.budget, c.seed): c for c in cells}
    assert by[(3, 0)].cell_seed == by[(6, 0)].cell_seed
    assert by[(3, 0)].cell_seed != by[(3, 1)].cell_seed
    assert by[(3, 0)].reference_seed == [c for c in plan_cells(parse_matrix(TINY))
                                         if c.sampler is None and c.seed == 0][0].reference_seed


def test_rows_have_the_schema_and_one_row_per_metric(tiny_run):
    matrix, store, finished = tiny_run
    rows = store.load()
    assert list(rows.columns) == list(COLUMNS)
    assert len(rows) == len(plan_cells(matrix)) * len(matrix.metrics)
    assert set(rows["status"]) == {"ok", "diverged", "failed"}


def test_nfe_follows_the_rule(tiny_run):
    rows = tiny_run[1].load()
    mala = rows[rows["sampler"] == "mala"]
    # init evaluates once, every transition once more: K transitions = K + 1 per particle
    assert (mala["nfe"] == mala["budget"] + 1).all()
    assert (rows[rows["sampler"] == "reference"]["nfe"] == 0).all()


def test_diverged_and_failed_cells_are_results(tiny_run):
    rows = tiny_run[1].load()
    exploding = rows[rows["sampler"] == "exploding"]
    assert (exploding["status"] == "diverged").all()
    assert exploding["reason"].str.startswith("diverged: ").all()
    assert exploding["value"].isna().all()
    raising = rows[rows["sampler"] == "raising"]
    assert (raising["status"] == "failed").all()
    assert (raising["reason"] == "RuntimeError: deliberate failure").all()


def test_inapplicable_metric_has_a_reason(tiny_run):
    rows = tiny_run[1].load()
    mode = rows[(rows["metric"] == "mode_weight_error") & (rows["status"] == "ok")]
    assert mode["value"].isna().all()
    assert mode["reason"].str.contains("does not provide modes").all()
    ksd = rows[(rows["metric"] == "ksd") & (rows["status"] == "ok")]
    assert ksd["value"].map(math.isfinite).all() and (ksd["reason"] == "").all()


def test_rerun_skips_finished_cells_reruns_failed_ones_and_force_reruns_all(tiny_run, tmp_path):
    matrix, store, finished = tiny_run
    assert len(finished) == len(plan_cells(matrix))
    # A failed cell (here: a sampler that raises) is not finished: resuming reruns it.
    failed = {cell.cell_id for cell, rows in finished if rows[0]["status"] == "failed"}
    assert failed
    resumed = list(run_matrix(make_plan(matrix, store), store, cache_dir=tmp_path / "cache"))
    assert {cell.cell_id for cell, _ in resumed} == failed
    rerun = list(run_matrix(make_plan(matrix, store, force=True), store,
                            cache_dir=tmp_path / "cache"))
    assert len(rerun) == len(finished)
    assert len(store.load()) == len(plan_cells(matrix)) * len(matrix.metrics)


def test_same_cell_gives_the_same_values(tiny_run, tmp_path):
    matrix, store, _ = tiny_run
    cell = next(c for c in plan_cells(matrix) if c.sampler_label == "mala")
    again = run_cell(cell, tmp_path / "cache").rows
    stored = store.load().set_index(["cell_id", "metric"])
    for row in again:
        expected = stored.loc[(cell.cell_id, row["metric"]), "value"]
        assert (math.isnan(expected) and math.isnan(row["value"])) or row["value"] == expected


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    import benchmark.store as store_module

    store = ResultsStore(tmp_path)
    row = {column: 0 for column in COLUMNS}

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_cell("abc", [row])
    assert not store.has_cell("abc")
    assert list((tmp_path / "cells").iterdir()) == []


def test_cli_run_prints_the_ksd_table_and_exits_1_on_failed_cells(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    shutil.copy(PLUGIN_DIR / "toy_plugins.py", tmp_path)  # beside the matrix that names it
    path.write_text(textwrap.dedent("""
        name = "tiny"
        seeds = [0, 1]
        n = 64
        metrics = ["ksd"]
        targets = ["gaussian", "mog2"]
        [[samplers]]
        name = "mala"
        budgets = [5]
        [[samplers]]
        name = "toy_plugins:RaisingSampler"
        label = "raising"
        budgets = [1]
    """))
    code = main(["run", str(path), "--out", str(tmp_path / "out"),
                 "--cache", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code == 1
    assert "| mala@5" in out and "| reference (floor)" in out and "failed" in out
    table = (tmp_path / "out" / "tables" / "ksd.md").read_text()
    assert "over 2 seed(s), n = 64" in table
    assert main(["table", str(tmp_path / "out"), "--metric", "ksd"]) == 0


def test_list_prints_every_registry(capsys):
    from benchmark.metrics.registry import METRICS
    from samplers import SAMPLERS
    from targets import TARGETS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in [*TARGETS, *SAMPLERS, *METRICS, "default"]:
        assert f"  {name} " in out


def test_dry_run_runs_nothing(tmp_path, capsys):
    assert main(["run", "default", "--dry-run", "--out", str(tmp_path)]) == 0
    assert "cells" in capsys.readouterr().out
    assert not (tmp_path / "cells").exists()


def test_store_round_trips_nan_inf_and_empty_reasons(tmp_path):
    store = ResultsStore(tmp_path)
    base = {column: "x" for column in COLUMNS}
    rows = [{**base, "value": math.nan, "reason": "why", "budget": 1, "seed": 0},
            {**base, "value": math.inf, "reason": "", "budget": 1, "seed": 1},
            {**base, "value": 0.5, "reason": "", "budget": 1, "seed": 2}]
    store.write_cell("c1", rows)
    loaded = store.load()
    assert math.isnan(loaded["value"][0]) and loaded["value"][1] == math.inf
    assert list(loaded["reason"]) == ["why", "", ""]
    assert isinstance(loaded, pd.DataFrame)


def test_shards_partition_the_cells_and_keep_a_trained_sampler_together():
    from benchmark.plan.cells import in_shard

    # A denoised entry shares its twin's training: the pair must land in one shard, or two
    # shards train the same network at once. Six seeds make a split pair all but certain
    # under a rule that ignores the twin (each pair: 2/3 chance of a split with 3 shards).
    data = {**TINY, "seeds": list(range(6)),
            "samplers": [{"name": "mala", "budgets": [1, 2, 3]},
                         {"name": "mala", "budgets": [1, 2, 3], "denoise": True},
                         {"name": "svgd", "budgets": [1, 2]}]}
    cells = plan_cells(parse_matrix(data))
    assert {c.sampler_label for c in cells} >= {"mala", "mala+dn", "svgd"}
    shards = [[c for c in cells if in_shard(c, (i, 3))] for i in range(3)]
    assert sorted(c.cell_id for shard in shards for c in shard) == sorted(c.cell_id for c in cells)
    for shard in shards:
        others = [c for s in shards if s is not shard for c in s]
        keys = {(c.twin_label, c.seed) for c in shard}
        assert not keys & {(c.twin_label, c.seed) for c in others}


def test_bad_shard_is_a_usage_error(capsys):
    assert main(["run", "default", "--shard", "3/2", "--dry-run"]) == 2
    assert "--shard: expected INDEX/COUNT" in capsys.readouterr().err


def test_target_selection_keeps_the_full_matrix_cell_ids():
    from benchmark.plan.matrix import load_matrix
    from benchmark.plan.plan import select_targets

    matrix = load_matrix("paper-ebm")  # has an entry restricted to one target, kept or dropped
    full = plan_cells(matrix)
    chosen = plan_cells(select_targets(matrix, ["mnist16"]))
    assert chosen and {c.target.label for c in chosen} == {"mnist16"}
    assert [c.cell_id for c in chosen] == [c.cell_id for c in full if c.target.label == "mnist16"]


def test_sampler_selection_keeps_the_cell_ids_and_the_floors(tmp_path):
    from benchmark.plan.matrix import load_matrix
    from benchmark.plan.plan import select_samplers

    matrix = load_matrix("default")
    full = plan_cells(matrix)
    plan = make_plan(select_samplers(matrix, ["mala", "kl_ns"]), ResultsStore(tmp_path),
                     planned=full)
    wanted = [c.cell_id for c in full
              if c.sampler is None or c.sampler.label in ("mala", "kl_ns")]
    assert [c.cell_id for c in plan.cells] == wanted
    assert {c.sampler_label for c in plan.cells} == {"mala", "kl_ns", "reference"}
    assert len(plan.planned) == len(full)  # the recorded plan is still the whole matrix


def test_unknown_sampler_selection_is_a_one_line_usage_error(capsys):
    assert main(["run", "default", "--sampler", "nope", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "has no sampler 'nope'" in err and "valid choices:" in err


def test_unknown_target_selection_is_a_one_line_usage_error(capsys):
    assert main(["run", "default", "--target", "nope", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "has no target 'nope'" in err and "valid choices:" in err


def test_run_records_the_whole_matrix_plan_even_for_one_target(tmp_path, capsys):
    path = tmp_path / "two.toml"
    path.write_text(textwrap.dedent("""
        name = "two"
        seeds = [0, 1]
        n = 32
        metrics = ["ksd"]
        targets = ["gaussian", "mog2"]
        [[samplers]]
        name = "mala"
        budgets = [2]
    """))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--target", "gaussian",
                 "--cache", str(tmp_path / "cache"), "--no-figures"]) == 0
    store = ResultsStore(out)
    plan = store.load_plan()
    assert set(plan["matrix"]) == {"two"}
    assert sorted(plan["cell_id"]) == sorted(c.cell_id for c in plan_cells(parse_matrix(
        {"name": "two", "seeds": [0, 1], "n": 32, "metrics": ["ksd"],
         "targets": ["gaussian", "mog2"], "samplers": [{"name": "mala", "budgets": [2]}]})))
    missing = (out / "tables" / "missing.md").read_text()
    assert "Not run yet: 4 of 8 planned cells (two)" in missing and "| mog2" in missing
    assert "| gaussian" not in missing and missing in capsys.readouterr().out


def test_identifiers_that_look_like_numbers_are_read_back_as_text(tmp_path):
    # "2e54942334901554" parses as a float (inf) and "9515048898568688" as an integer; both
    # are real hex cell ids of paper-2d, which once dropped out of the plan comparison.
    store = ResultsStore(tmp_path)
    for cell_id in ("2e54942334901554", "9515048898568688", "00ab"):
        store.write_cell(cell_id, [{**{column: 0 for column in COLUMNS}, "cell_id": cell_id,
                                    "git_commit": "1234567"}])
    loaded = store.load()
    assert sorted(loaded["cell_id"]) == ["00ab", "2e54942334901554", "9515048898568688"]
    assert set(loaded["git_commit"]) == {"1234567"} and loaded["budget"].dtype.kind == "i"


def test_rows_name_the_commit_the_run_started_from(tmp_path, monkeypatch):
    # A long run outlives edits to its checkout: its rows (and its cache keys) must describe
    # the code it imported at the start, not a commit made while it ran.
    import subprocess

    from benchmark.plan import cells as cells_module
    from benchmark.run import runner as runner_module

    repo = tmp_path / "repo"
    for package in ("targets", "samplers"):
        (repo / package).mkdir(parents=True)
        (repo / package / "module.py").write_text("VALUE = 1\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=repo, capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "start")
    started = git("rev-parse", "--short=12", "HEAD")
    monkeypatch.setattr(cells_module, "PACKAGE_ROOT", repo)
    for cached in (cells_module.git_commit, cells_module.code_version):
        cached.cache_clear()
    edits = []
    real_run_cell = runner_module.run_cell

    def commit_then_run(*args, **kwargs):  # before each cell, another commit
        edits.append(cells_module.code_version())
        (repo / "samplers" / "module.py").write_text(f"VALUE = {len(edits) + 1}\n")
        git("commit", "-qam", f"edit {len(edits)} during the run")
        return real_run_cell(*args, **kwargs)

    monkeypatch.setattr(runner_module, "run_cell", commit_then_run)
    try:
        matrix = parse_matrix({**TINY, "samplers": [{"name": "mala", "budgets": [2]}]})
        store = ResultsStore(tmp_path / "store")
        list(run_matrix(make_plan(matrix, store), store, cache_dir=tmp_path / "cache"))
        assert git("rev-parse", "--short=12", "HEAD") != started
        assert set(store.load()["git_commit"]) == {started}
        assert len(edits) == len(plan_cells(matrix)) and len(set(edits)) == 1
    finally:
        for cached in (cells_module.git_commit, cells_module.code_version):
            cached.cache_clear()  # the next test reads the real checkout again


def test_run_expands_the_matrix_once_and_hands_that_plan_to_the_runner(tmp_path, monkeypatch,
                                                                        single_thread):
    from benchmark.plan import cells as cells_module
    from benchmark.plan import plan as plan_module
    from benchmark.run import runner as runner_module

    expanded, plans = [], []

    def counted_plan_cells(matrix):
        expanded.append(matrix.name)
        return plan_cells(matrix)

    def spied_run_matrix(plan, *args, **kwargs):
        plans.append(plan)
        return run_matrix(plan, *args, **kwargs)

    monkeypatch.setattr(cells_module, "plan_cells", counted_plan_cells)
    monkeypatch.setattr(plan_module, "plan_cells", counted_plan_cells)
    monkeypatch.setattr(runner_module, "run_matrix", spied_run_matrix)
    path = tmp_path / "once.toml"
    path.write_text('name = "once"\nseeds = [0, 1]\nn = 16\nmetrics = ["ksd"]\n'
                    'targets = ["gaussian", "mog2"]\n[[samplers]]\nname = "mala"\nbudgets = [2]\n')
    assert main(["run", str(path), "--target", "gaussian", "--out", str(tmp_path / "out"),
                 "--cache", str(tmp_path / "cache"), "--no-figures"]) == 0
    assert expanded == ["once"]
    (plan,) = plans
    assert len(plan.planned) == 8 and plan.todo == plan.cells
    assert {cell.target.label for cell in plan.cells} == {"gaussian"} and len(plan.cells) == 4
    assert set(ResultsStore(tmp_path / "out").load()["cell_id"]) == {c.cell_id for c in plan.todo}


def test_the_cache_key_follows_a_plugins_source_and_the_device(tmp_path):
    import dataclasses

    from benchmark.plan.cells import plugin_source_hash
    from benchmark.plan.matrix import parse_matrix as parse

    shutil.copy(PLUGIN_DIR / "toy_plugins.py", tmp_path)
    data = {"seeds": [0], "n": 8, "metrics": ["ksd"], "targets": ["gaussian"],
            "samplers": [{"name": "toy_plugins:RaisingSampler", "budgets": [1]}]}

    def key() -> str:
        plugin_source_hash.cache_clear()
        cell = next(c for c in plan_cells(parse(data, search_dirs=(tmp_path,)))
                    if c.sampler is not None)
        return cell.train_key

    before = key()
    assert key() == before
    (tmp_path / "toy_plugins.py").write_text((tmp_path / "toy_plugins.py").read_text()
                                             + "\n# edited\n")
    assert key() != before
    cell = next(c for c in plan_cells(parse(data, search_dirs=(tmp_path,))) if c.sampler)
    assert dataclasses.replace(cell, device="cuda").train_key != cell.train_key


def test_denoising_is_its_own_column_and_the_twins_share_random_numbers(tmp_path):
    matrix = parse_matrix({
        "name": "twins", "seeds": [0], "n": 32, "metrics": ["energy_distance"],
        "targets": [{"name": "toy_plugins:SmoothedGaussian", "label": "smooth"}],
        "samplers": [{"name": "ula", "budgets": [3]},
                     {"name": "ula", "budgets": [3], "denoise": True}]})
    store = ResultsStore(tmp_path / "store")
    list(run_matrix(make_plan(matrix, store), store, cache_dir=tmp_path / "cache"))
    rows = store.load()
    flags = rows.groupby("sampler")["denoise"].unique().map(list).to_dict()
    assert flags == {"reference": [False], "ula": [False], "ula+dn": [True]}
    seeds = rows.groupby("sampler")["cell_seed"].first()
    assert seeds["ula"] == seeds["ula+dn"]  # paired: the same chain before the final step
    assert (rows.loc[rows["sampler"].eq("ula+dn"), "nfe"] == 4.0).all()  # K + 1, step reused


def test_cell_files_from_before_the_denoise_column_still_load(tmp_path):
    store = ResultsStore(tmp_path)
    old = [column for column in COLUMNS if column != "denoise"]
    for cell_id, label in (("a", "mala"), ("b", "mala+dn")):
        frame = pd.DataFrame([{**{column: "x" for column in old}, "sampler": label,
                               "budget": 1, "seed": 0, "value": 0.5}], columns=old)
        store.cells_dir.mkdir(parents=True, exist_ok=True)
        frame.to_csv(store.cells_dir / f"{cell_id}.csv", index=False)
    store.write_cell("c", [{**{column: "x" for column in COLUMNS}, "sampler": "plain",
                            "denoise": True, "budget": 1, "seed": 0, "value": 0.5}])
    rows = store.load()
    assert list(rows.columns) == list(COLUMNS)
    # Old files: the label's suffix; new files: the column, whatever the label says.
    assert dict(zip(rows["sampler"], rows["denoise"], strict=True)) == {
        "mala": False, "mala+dn": True, "plain": True}
