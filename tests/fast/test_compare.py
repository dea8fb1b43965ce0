"""`compare BASELINE CURRENT` on small synthetic stores, and the perf-tier baseline plumbing.

Stores are written with ``ResultsStore.write_cell`` (no sampler runs). The values are fixed, so
every mean, s.e. and threshold below is exact arithmetic, not a random draw.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.report.compare import REGRESSION, compare_results, group_label
from benchmark.schema import COLUMNS
from benchmark.store import ResultsStore

SEEDS = (0, 1, 2)
# Per-seed values of each group: mean 1.0, sample s.d. 0.1, s.e. 0.1 / sqrt(3).
OFFSETS = (-0.1, 0.0, 0.1)
SE = 0.1 / math.sqrt(3)
# Two identical stores have se_b = se_c, so the combined s.e. is sqrt(2) * SE.
COMBINED_SE = math.sqrt(2) * SE
GROUPS = [  # (target, sampler, budget, metric); mode_recall is higher-is-better
    ("donut", "svgd", 100, "ksd"),
    ("donut", "svgd", 100, "energy_distance"),
    ("donut", "mala", 200, "ksd"),
    ("mog2", "svgd", 100, "mode_recall"),
    ("mog2", "reference", 0, "ksd"),
]


def _row(target: str, sampler: str, budget: int, seed: int, metric: str, value: float,
         status: str = "ok") -> dict:
    row = {column: "" for column in COLUMNS}
    row.update(matrix="synthetic", cell_id=f"{target}-{sampler}-{budget}-{seed}", target=target,
               target_name=target, target_params="{}", sampler=sampler, sampler_name=sampler,
               params="{}", budget=budget, seed=seed, cell_seed=seed, n=100, status=status,
               metric=metric, value=value, nfe=float(budget), device="cpu")
    return row


def write_store(root: Path, values: dict[tuple, list[float]] | None = None,
                statuses: dict[tuple, list[str]] | None = None,
                groups: list[tuple] | None = None) -> Path:
    """A store with one cell per (target, sampler, budget, seed) holding its metrics' rows.

    ``values`` / ``statuses`` override the per-seed values / statuses of chosen groups.
    """
    values, statuses = values or {}, statuses or {}
    cells: dict[str, list[dict]] = {}
    for group in groups if groups is not None else GROUPS:
        target, sampler, budget, metric = group
        group_values = values.get(group, [1.0 + offset for offset in OFFSETS])
        group_statuses = statuses.get(group, ["ok"] * len(SEEDS))
        for seed, value, status in zip(SEEDS, group_values, group_statuses, strict=True):
            row = _row(target, sampler, budget, seed, metric, value, status)
            cells.setdefault(row["cell_id"], []).append(row)
    store = ResultsStore(root)
    for cell_id, rows in cells.items():
        store.write_cell(cell_id, rows)
    return root


def shifted(shift: float) -> list[float]:
    return [1.0 + offset + shift for offset in OFFSETS]


def run_compare(capsys, baseline: Path, current: Path, *options: str) -> tuple[int, str, str]:
    code = main(["compare", str(baseline), str(current), *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def verdict_line(output: str, group: tuple) -> str:
    label = group_label(*group)
    lines = [line for line in output.splitlines() if line.startswith(f"| {label} ")]
    assert len(lines) == 1, f"{label!r} not exactly once in:\n{output}"
    return lines[0]


@pytest.fixture
def baseline(tmp_path) -> Path:
    return write_store(tmp_path / "baseline")


def test_store_against_a_copy_of_itself_passes(capsys, baseline, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(baseline, copy)
    code, out, _ = run_compare(capsys, baseline, copy)
    assert code == 0
    assert REGRESSION not in out
    assert "5 groups compared: 0 regressions" in out
    for group in GROUPS:
        assert verdict_line(out, group).rstrip(" |").endswith("unchanged")


def test_injected_regression_is_flagged_and_named(capsys, baseline, tmp_path):
    # Worse by 4 combined s.e. (> k = 3) on one group only.
    group = GROUPS[0]
    current = write_store(tmp_path / "current", {group: shifted(4 * COMBINED_SE)})
    code, out, _ = run_compare(capsys, baseline, current)
    assert code == 1
    assert REGRESSION in verdict_line(out, group)
    assert sum(REGRESSION in line for line in out.splitlines() if line.startswith("| ")) == 1
    assert "1 regression," in out.splitlines()[-1]


def test_change_within_noise_is_not_flagged(capsys, baseline, tmp_path):
    group = GROUPS[0]
    current = write_store(tmp_path / "current", {group: shifted(2 * COMBINED_SE)})
    code, out, _ = run_compare(capsys, baseline, current)
    assert code == 0
    assert verdict_line(out, group).rstrip(" |").endswith("within noise")


def test_threshold_is_k_combined_standard_errors_or_the_absolute_tolerance(baseline, tmp_path):
    group = GROUPS[0]
    rows_b = ResultsStore(baseline).load()
    rows_c = ResultsStore(write_store(tmp_path / "c", {group: shifted(0.5)})).load()
    comparison = compare_results(rows_b, rows_c, k=3.0).set_index(
        ["target", "sampler", "budget", "metric"])
    record = comparison.loc[group]
    assert record["delta"] == pytest.approx(0.5, abs=1e-12)
    assert record["se_b"] == pytest.approx(SE, rel=1e-12)
    assert record["threshold"] == pytest.approx(3.0 * COMBINED_SE, rel=1e-12)
    assert bool(record["regression"])
    relaxed = compare_results(rows_b, rows_c, abs_tol=0.6).set_index(
        ["target", "sampler", "budget", "metric"]).loc[group]
    assert relaxed["threshold"] == 0.6
    assert not bool(relaxed["regression"])
    with pytest.raises(ValueError, match="abs_tol and k"):
        compare_results(rows_b, rows_c, k=-1.0)


def test_abs_tol_and_k_options(capsys, baseline, tmp_path):
    current = write_store(tmp_path / "current", {GROUPS[0]: shifted(4 * COMBINED_SE)})
    assert run_compare(capsys, baseline, current, "--abs-tol", "1.0")[0] == 0
    assert run_compare(capsys, baseline, current, "--k", "5")[0] == 0
    assert run_compare(capsys, baseline, current, "--k", "3")[0] == 1


def test_direction_follows_the_metric_registry(capsys, baseline, tmp_path):
    recall = GROUPS[3]  # mode_recall: higher is better, so a drop is the regression
    worse = write_store(tmp_path / "worse", {recall: shifted(-4 * COMBINED_SE)})
    code, out, _ = run_compare(capsys, baseline, worse)
    assert code == 1 and REGRESSION in verdict_line(out, recall)
    better = write_store(tmp_path / "better", {recall: shifted(4 * COMBINED_SE),
                                               GROUPS[0]: shifted(-4 * COMBINED_SE)})
    code, out, _ = run_compare(capsys, baseline, better)
    assert code == 0
    assert verdict_line(out, recall).rstrip(" |").endswith("improved")
    assert verdict_line(out, GROUPS[0]).rstrip(" |").endswith("improved")


@pytest.mark.parametrize("status", ["diverged", "failed"])
def test_ok_group_becoming_diverged_or_failed_is_a_regression(capsys, baseline, tmp_path,
                                                              status):
    group = GROUPS[2]
    # One seed of three goes bad; the other two keep their exact values (mean barely moves).
    current = write_store(tmp_path / "current", {group: [0.9, 1.0, math.nan]},
                          {group: ["ok", "ok", status]})
    code, out, _ = run_compare(capsys, baseline, current)
    assert code == 1
    line = verdict_line(out, group)
    assert REGRESSION in line and f"1/3 {status}" in line


def test_group_losing_every_value_is_a_regression(baseline, tmp_path):
    group = GROUPS[1]
    rows_b = ResultsStore(baseline).load()
    rows_c = ResultsStore(write_store(tmp_path / "c", {group: [math.nan] * 3})).load()
    record = compare_results(rows_b, rows_c).set_index(
        ["target", "sampler", "budget", "metric"]).loc[group]
    assert bool(record["regression"]) and "no finite values" in record["verdict"]


def test_added_and_removed_groups_are_listed_not_flagged(capsys, baseline, tmp_path):
    new = ("funnel", "svgd", 100, "ksd")
    current = write_store(tmp_path / "current", groups=GROUPS[1:] + [new])
    code, out, _ = run_compare(capsys, baseline, current)
    assert code == 0
    assert verdict_line(out, GROUPS[0]).rstrip(" |").endswith("removed")
    assert verdict_line(out, new).rstrip(" |").endswith("added")
    assert "1 added, 1 removed" in out


def test_metric_option_restricts_the_comparison(capsys, baseline, tmp_path):
    current = write_store(tmp_path / "current", {GROUPS[0]: shifted(4 * COMBINED_SE)})
    code, out, _ = run_compare(capsys, baseline, current, "--metric", "energy_distance")
    assert code == 0
    assert group_label(*GROUPS[0]) not in out and group_label(*GROUPS[1]) in out
    code, _, err = run_compare(capsys, baseline, current, "--metric", "fid")
    assert code == 2 and "fid" in err


def test_missing_or_empty_store_is_a_one_line_usage_error(capsys, baseline, tmp_path):
    code, out, err = run_compare(capsys, baseline, tmp_path / "nowhere")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_compare(capsys, tmp_path / "empty", baseline)
    assert code == 2 and err.count("\n") == 1 and "no results in baseline store" in err


# --- perf tier: tests/perf/conftest.py picks the baseline and never fails a first run --------

PERF_CONFTEST = Path(__file__).parents[1] / "perf" / "conftest.py"
PERF_OPTIONS = ["--benchmark-storage=store", "--benchmark-autosave", "--benchmark-compare",
                "--benchmark-compare-fail=median:20%", "--benchmark-min-rounds=3",
                "--benchmark-max-time=0.001", "--benchmark-warmup=off"]


def _run_perf(directory: Path) -> subprocess.CompletedProcess:
    # A separate pytest process in its own root (no project ini): the conftest under test is an
    # initial conftest there, exactly as with `pytest tests/perf`.
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           *PERF_OPTIONS], cwd=directory, capture_output=True, text=True,
                          timeout=120)


def _saved_runs(directory: Path) -> list[Path]:
    return sorted((directory / "store").glob("*/[0-9][0-9][0-9][0-9]_*.json"))


def _scale_saved_medians(path: Path, factor: float) -> None:
    data = json.loads(path.read_text())
    for bench in data["benchmarks"]:
        for field in ("min", "max", "mean", "median"):
            bench["stats"][field] *= factor
    path.write_text(json.dumps(data))


def test_perf_first_run_records_the_baseline_and_later_runs_compare_with_it(tmp_path):
    shutil.copy(PERF_CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_tiny.py").write_text(textwrap.dedent("""
        def test_tiny(benchmark):
            assert benchmark(sum, range(200)) == 19900
    """))
    first = _run_perf(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no baseline saved on this machine yet" in first.stdout
    (baseline,) = _saved_runs(tmp_path)
    assert baseline.name == "0001_baseline.json"
    assert json.loads(baseline.read_text())["machine_info"]["sampler_bench"]["cpu_count"] >= 1

    # Baseline made 1000x slower: the new run is far faster, compared, passes, and is saved as
    # history (not as a baseline).
    _scale_saved_medians(baseline, 1000.0)
    second = _run_perf(tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "comparing with" in second.stdout and "0001_baseline" in second.stdout
    assert len(_saved_runs(tmp_path)) == 2 and "baseline" not in _saved_runs(tmp_path)[1].name

    # Baseline made 1000x faster: a > 20% median regression fails the run, and the comparison
    # is still with the pinned baseline, not with the newer history run 0002.
    _scale_saved_medians(baseline, 1e-6)
    third = _run_perf(tmp_path)
    assert third.returncode != 0
    assert "comparing with" in third.stdout and "0001_baseline" in third.stdout
    assert "Performance has regressed" in third.stdout + third.stderr


# -- rules added for hardening: one bad seed, NaN with status ok, different setups ------------
def _rows(values: dict[int, float], *, n: int = 100, params: str = "{}",
          status: str = "ok") -> pd.DataFrame:
    return pd.DataFrame([{"matrix": "m", "cell_id": f"c{seed}", "target": "donut",
                          "sampler": "mala", "budget": 10, "seed": seed, "metric": "ksd",
                          "value": value, "status": status, "reason": "", "n": n,
                          "params": params, "nfe": 10.0} for seed, value in values.items()])


def test_a_single_bad_seed_is_caught_although_it_inflates_the_current_se():
    baseline = _rows({0: 0.185, 1: 0.189})
    current = _rows({0: 0.185, 1: 5.0})
    record = compare_results(baseline, current).iloc[0]
    assert bool(record["regression"]) and "seed 1" in record["verdict"]
    # The mean rule alone would not have caught it: the bad seed inflates the s.e.
    se_c = float(np.std([0.185, 5.0], ddof=1) / np.sqrt(2))
    assert (np.mean([0.185, 5.0]) - 0.187) < 3.0 * se_c


def test_identical_or_noise_level_seeds_pass_the_seed_rule():
    baseline = _rows({0: 0.185, 1: 0.189, 2: 0.187})
    assert not compare_results(baseline, baseline)["regression"].any()
    nudged = _rows({0: 0.186, 1: 0.188, 2: 0.187})
    assert not compare_results(baseline, nudged)["regression"].any()


def test_seed_threshold_is_the_t_prediction_bound():
    from scipy import stats

    from benchmark.report.compare import SEED_ALPHA, seed_threshold

    values = [1.0, 2.0, 3.0]
    expected = stats.t.ppf(1 - SEED_ALPHA, 2) * 1.0 * math.sqrt(1 + 1 / 3)
    assert math.isclose(seed_threshold(values, 0.0), expected, rel_tol=1e-12)
    assert seed_threshold([1.0], 0.0) == math.inf
    assert seed_threshold(values, 1e6) == 1e6


def test_a_nan_value_with_status_ok_is_a_regression():
    baseline = _rows({0: 0.185, 1: 0.189, 2: 0.187})
    current = _rows({0: 0.185, 1: math.nan, 2: 0.187})
    record = compare_results(baseline, current).iloc[0]
    assert bool(record["regression"]) and "NaN/inf" in record["verdict"]


def test_stores_with_different_n_or_params_are_not_compared_as_equal():
    baseline = _rows({0: 0.185, 1: 0.189})
    for current in (_rows({0: 9.0, 1: 9.0}, n=200), _rows({0: 9.0, 1: 9.0}, params='{"a":1}')):
        result = compare_results(baseline, current)
        assert sorted(result["verdict"]) == ["added", "removed"]
        assert not result["regression"].any()
        assert all("params" in text for text in result["setup"])
