"""Crash safety and resume (a real SIGKILL mid-run), cell time limits, and the dry-run estimate."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import torch
from plugin_matrix import parse_matrix

from benchmark.cli import main
from benchmark.plan.cells import plan_cells
from benchmark.plan.estimate import estimate_seconds
from benchmark.plan.plan import make_plan
from benchmark.run.deadline import Deadline
from benchmark.run.runner import run_cell, run_matrix
from benchmark.schema import COLUMNS, MatrixError
from benchmark.store import ResultsStore

HERE = Path(__file__).resolve().parent
#: Columns that legitimately differ between two runs of the same seeded cells.
UNSEEDED = ["train_seconds", "sample_seconds", "metric_seconds", "timestamp", "worker"]

# 6 floor cells (fast) then 12 slow-MALA cells of ~0.15-0.3 s each: the run lasts a few
# seconds, so there is a wide window in which 0 < stored cells < 18.
RESUME_MATRIX = """
name = "resume"
seeds = [0, 1, 2, 3, 4, 5]
n = 32
metrics = ["ksd", "energy_distance"]
save_samples = true
targets = ["gaussian"]
[[samplers]]
name = "slow_plugins:SlowMALA"
label = "slow_mala"
budgets = [4, 8]
params = {delay = 0.03}
"""


def _command(matrix: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "benchmark", "run", str(matrix), "--out", str(out),
            "--cache", str(out / "cache")]


def _environment() -> dict[str, str]:
    # One intra-op thread keeps both concurrent runs identical and light.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _stored_files(store: Path) -> list[Path]:
    cells = store / "cells"
    return sorted(cells.glob("*.csv")) if cells.exists() else []


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_results(tmp_path):
    matrix = tmp_path / "resume.toml"
    matrix.write_text(RESUME_MATRIX)
    # The plugin is named by import path ``slow_plugins:SlowMALA``: the import-path policy
    # loads it from the matrix file's folder.
    shutil.copy(HERE / "slow_plugins.py", tmp_path)
    total = len(plan_cells(parse_matrix(tomllib.loads(RESUME_MATRIX))))
    killed_store, full_store = tmp_path / "killed", tmp_path / "full"
    environment = _environment()
    full_log = (tmp_path / "full.log").open("w")  # a file, not a pipe nobody reads yet
    full = subprocess.Popen(_command(matrix, full_store), env=environment, cwd=HERE.parent.parent,
                            stdout=full_log, stderr=subprocess.STDOUT)
    victim = subprocess.Popen(_command(matrix, killed_store), env=environment,
                              cwd=HERE.parent.parent, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while victim.poll() is None and time.monotonic() < deadline:
            if 0 < len(_stored_files(killed_store)) < total:
                victim.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        assert victim.wait(timeout=30) == -signal.SIGKILL, "the run ended before it was killed"
    finally:
        if victim.poll() is None:
            victim.kill()
    stored = _stored_files(killed_store)
    assert 0 < len(stored) < total
    # Every stored file is a complete cell: full schema, one row per metric, and its samples.
    for path in stored:
        frame = pd.read_csv(path, keep_default_na=False, na_values=["nan"])
        assert list(frame.columns) == list(COLUMNS)
        assert sorted(frame["metric"]) == ["energy_distance", "ksd"]
        assert (frame["status"] == "ok").all() and frame["value"].map(math.isfinite).all()
        samples = torch.load(killed_store / "samples" / f"{path.stem}.pt", weights_only=True)
        assert samples["samples"].shape == (32, 2) and samples["samples"].dtype == torch.float32

    rerun = subprocess.run(_command(matrix, killed_store), env=environment,
                           cwd=HERE.parent.parent, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({total - len(stored)} to run)" in rerun.stdout  # finished cells were skipped
    assert full.wait(timeout=120) == 0, (tmp_path / "full.log").read_text()
    full_log.close()

    resumed, reference = ResultsStore(killed_store).load(), ResultsStore(full_store).load()
    assert len(resumed) == total * 2
    assert not resumed.duplicated(["cell_id", "metric"]).any()
    pd.testing.assert_frame_equal(resumed.drop(columns=UNSEEDED),
                                  reference.drop(columns=UNSEEDED))  # exact: runs are seeded
    for store in (killed_store, full_store):
        assert main(["table", str(store)]) == 0
    for name in ("ksd.md", "energy_distance.md", "aggregate.csv"):
        assert ((killed_store / "tables" / name).read_bytes()
                == (full_store / "tables" / name).read_bytes())


# -- cell time limit ------------------------------------------------------------------------
def test_cell_over_its_time_limit_is_failed_and_the_run_goes_on(tmp_path, single_thread):
    data = {"seeds": [0], "n": 16, "metrics": ["ksd"], "targets": ["gaussian"],
            "cell_timeout": 0.3,
            "samplers": [{"name": "slow_plugins:SlowMALA", "label": "slow",
                          "budgets": [1000], "params": {"delay": 0.05}},
                         {"name": "mala", "budgets": [5]}]}
    store = ResultsStore(tmp_path / "store")
    plan = make_plan(parse_matrix(data), store)
    finished = list(run_matrix(plan, store, cache_dir=tmp_path / "cache"))
    assert len(finished) == 3
    rows = store.load().set_index("sampler")
    assert rows.loc["slow", "status"] == "failed"
    assert rows.loc["slow", "reason"] == "timeout: exceeded 0.3 s"
    assert math.isnan(rows.loc["slow", "value"])
    assert rows.loc["mala", "status"] == "ok" and rows.loc["reference", "status"] == "ok"


def test_neural_training_is_stopped_by_the_time_limit(tmp_path, single_thread):
    data = {"seeds": [0], "n": 16, "metrics": ["ksd"], "targets": ["gaussian"],
            "samplers": [{"name": "dft_ns", "budgets": [1],
                          "params": {"num_iterations": 10**7, "batch_size": 8,
                                     "hidden_width": 8, "hidden_depth": 1}}]}
    cell = next(c for c in plan_cells(parse_matrix(data)) if c.sampler is not None)
    result = run_cell(cell, tmp_path / "cache", timeout=0.5)
    assert {row["reason"] for row in result.rows} == {"timeout: exceeded 0.5 s"}
    assert {row["status"] for row in result.rows} == {"failed"}
    # Interrupted training is never cached (a later run must train from scratch).
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.pt"))


def test_deadline_is_checked_between_steps_only():
    Deadline.after(None).check()  # no limit: never raises
    expired = Deadline(seconds=1.0, start=time.monotonic() - 2.0)
    with pytest.raises(TimeoutError, match="exceeded 1 s"):
        expired.check()
    Deadline(seconds=60.0, start=time.monotonic()).check()


@pytest.mark.parametrize(("changes", "message"), [
    ({"cell_timeout": 0}, "cell_timeout: expected a number of seconds > 0"),
    ({"cell_timeout": True}, "cell_timeout: expected a number of seconds > 0"),
    ({"cell_timeout": "1h"}, "cell_timeout: expected a number of seconds > 0"),
    ({"save_samples": "yes"}, "save_samples: expected true or false"),
])
def test_new_matrix_keys_are_validated(changes, message):
    data = {"targets": ["gaussian"], "samplers": [{"name": "mala", "budgets": [1]}], **changes}
    with pytest.raises(MatrixError, match=message):
        parse_matrix(data)


# -- dry-run estimate -----------------------------------------------------------------------
ESTIMATE = {"name": "estimate", "n": 16, "metrics": ["ksd"], "targets": ["gaussian"],
            "samplers": [{"name": "mala", "budgets": [2, 4]}]}


def test_dry_run_estimates_from_stored_timings(tmp_path, capsys, single_thread):
    store = ResultsStore(tmp_path / "store")
    list(run_matrix(make_plan(parse_matrix({**ESTIMATE, "seeds": [0]}), store), store,
                    tmp_path / "cache"))
    stored = store.load()
    # Seeds 1 and 2 are new; budget 8 has no stored timing.
    bigger = {**ESTIMATE, "seeds": [0, 1, 2],
              "samplers": [{"name": "mala", "budgets": [2, 4, 8]}]}
    todo = [c for c in plan_cells(parse_matrix(bigger)) if not store.has_cell(c.cell_id)]
    estimate = estimate_seconds(todo, stored)
    per_cell = {(row.sampler, row.budget): row.sample_seconds + row.metric_seconds
                for row in stored.itertuples()}
    expected = sum(per_cell[(c.sampler_label, c.budget)] for c in todo
                   if (c.sampler_label, c.budget) in per_cell)
    assert estimate.seconds == pytest.approx(expected, rel=1e-12)
    assert estimate.sources == 3  # the three stored cells: floor, mala@2, mala@4
    assert estimate.without == 3  # mala@8, seeds 0, 1 and 2
    assert estimate.borrowed == 0

    # A target with nothing stored borrows the timing of its sampler@budget on another
    # target; the median resists one cell slowed by a shared core.
    slow = stored[stored["sampler"].eq("mala") & stored["budget"].eq(2)].assign(
        cell_id="slow", seed=7, sample_seconds=1e6)
    twin = stored.assign(cell_id=stored["cell_id"] + "-twin")
    other = plan_cells(parse_matrix({**bigger, "targets": ["donut"]}))
    borrowed = estimate_seconds(other, pd.concat([stored, twin, slow]))
    assert borrowed.borrowed == 9 and borrowed.without == 3  # mala@8 still has none
    assert borrowed.sources == 7
    # Each seed of donut: the floor, mala@2 (median of 2 ok cells and the slow one), mala@4.
    assert borrowed.seconds == pytest.approx(3 * (per_cell[("reference", 0)]
                                                  + per_cell[("mala", 2)]
                                                  + per_cell[("mala", 4)]), rel=1e-12)

    path = tmp_path / "bigger.toml"
    path.write_text(textwrap.dedent("""
        name = "estimate"
        seeds = [0, 1, 2]
        n = 16
        metrics = ["ksd"]
        targets = ["gaussian"]
        [[samplers]]
        name = "mala"
        budgets = [2, 4, 8]
    """))
    assert main(["run", str(path), "--dry-run", "--out", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "12 cells (9 to run)" in out
    assert f"estimate: {expected:.1f} s from 3 stored cells; 3 cells without timing" in out
    path.write_text(path.read_text().replace('["gaussian"]', '["donut"]'))
    assert main(["run", str(path), "--dry-run", "--out", str(store.root)]) == 0
    assert ("from 3 stored cells (9 cells timed from the same sampler@budget on other targets); "
            "3 cells without timing") in capsys.readouterr().out
    assert len(_stored_files(store.root)) == 3  # a dry run runs nothing


def test_dry_run_charges_each_training_once():
    """A trained sampler serves every budget (PIS at K = 1 and 4 here), so its training time is
    counted once per train key, and not at all when its weights are already cached."""
    data = {"name": "estimate", "seeds": [0, 1, 2], "n": 16, "metrics": ["ksd"],
            "targets": ["gaussian"], "samplers": [{"name": "pis", "budgets": [1, 4]}]}
    cells = [c for c in plan_cells(parse_matrix(data)) if c.sampler is not None]
    stored = pd.DataFrame([{"cell_id": c.cell_id, "target": c.target.label, "sampler": "pis",
                            "budget": c.budget, "sample_seconds": 1.0, "train_seconds": 100.0,
                            "metric_seconds": 0.5} for c in cells if c.seed == 0])
    todo = [c for c in cells if c.seed != 0]
    assert estimate_seconds(todo, stored).seconds == pytest.approx(2 * (100.0 + 2 * 1.5))
    seed1 = next(c.train_key for c in todo if c.seed == 1)
    assert estimate_seconds(todo, stored, cached={seed1}).seconds == pytest.approx(
        100.0 + 4 * 1.5)


def test_iterative_step_count_is_unchanged_by_the_deadline(tmp_path):
    """The deadline check is outside the step: a cell within its limit runs every step."""
    data = {"seeds": [0], "n": 8, "metrics": ["ksd"], "targets": ["gaussian"],
            "samplers": [{"name": "mala", "budgets": [7]}]}
    cell = next(c for c in plan_cells(parse_matrix(data)) if c.sampler is not None)
    limited = run_cell(cell, tmp_path, timeout=600.0).rows
    free = run_cell(cell, tmp_path).rows
    assert limited[0]["nfe"] == free[0]["nfe"] == 8  # K + 1 evaluations per particle
    assert limited[0]["value"] == free[0]["value"]


# -- resume repairs what kills and failures leave ---------------------------------------------
def test_resume_reruns_failed_and_unreadable_cells_and_removes_stale_temporaries(
        tmp_path, capsys, single_thread):
    from benchmark.cli import main
    from benchmark.store import STALE_TEMPORARY_SECONDS

    matrix = tmp_path / "m.toml"
    matrix.write_text('name = "m"\nseeds = [0]\nn = 16\nmetrics = ["ksd"]\n'
                      'targets = ["gaussian"]\n[[samplers]]\nname = "ula"\nbudgets = [2, 3, 4]\n')
    out = tmp_path / "out"
    argv = ["run", str(matrix), "--out", str(out), "--cache", str(tmp_path / "c"),
            "--no-figures"]
    assert main(argv) == 0
    store = ResultsStore(out)
    files = sorted((out / "cells").glob("*.csv"))
    header_only, garbage, failed = files[:3]
    header_only.write_text(header_only.read_text().splitlines()[0] + "\n")
    garbage.write_bytes(b"\x00\xff garbage")
    failed.write_text(failed.read_text().replace(",ok,", ",failed,"))
    stale = out / "cells" / ".abc.csv.123.tmp"
    stale.write_text("half a row")
    old = time.time() - 2 * STALE_TEMPORARY_SECONDS
    os.utime(stale, (old, old))
    assert {store.cell_status(p.stem) for p in (header_only, garbage)} == {"unreadable"}
    assert store.cell_status(failed.stem) == "failed"
    capsys.readouterr()
    assert main(argv) == 0
    out_text = capsys.readouterr().out
    assert "(3 to run)" in out_text
    assert "rerunning 1 failed cell(s)" in out_text
    assert "rerunning 2 unreadable cell(s)" in out_text
    assert not stale.exists() and "removed a temporary file" in out_text
    assert all(store.cell_status(p.stem) == "finished" for p in files)
