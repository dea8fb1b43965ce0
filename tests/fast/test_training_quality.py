"""The training-quality table: ground-truth curves logged during neural training, read back as
first / best / last per training and averaged over seeds; written by ``write_tables`` only when
histories are given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_tables import make_rows, series

from benchmark.report.tables import write_tables
from benchmark.report.training_quality import training_curves_summary, training_quality_table
from benchmark.schema import HISTORY_COLUMNS

EPS = np.finfo(float).eps


def _history(target: str, sampler: str, seed: int, metric: str,
             curve: dict[int, float]) -> list[dict]:
    return [{"train_key": f"{target}-{sampler}-{seed}", "target": target, "sampler": sampler,
             "params": "{}", "seed": seed, "iteration": iteration, "metric": metric,
             "value": value} for iteration, value in curve.items()]


@pytest.fixture
def store_frames():
    rows = make_rows(series("donut", "dft_ns", 1, [0.5, 0.4]) + series("donut", "mala", 100,
                                                                         [0.1, 0.1])
                     + series("donut", "reference", 0, [0.01, 0.01]), "energy_distance")
    history = pd.DataFrame(
        # Seed 0 improves, then gets worse by ground truth; seed 1 improves to the end.
        _history("donut", "dft_ns", 0, "energy_distance_eval", {100: 1.0, 200: 0.2, 300: 0.5})
        # Seed 1's training was stored under its '+dn' twin's label (the same training).
        + _history("donut", "dft_ns+dn", 1, "energy_distance_eval",
                   {100: 0.8, 200: 0.4, 400: 0.1})
        # Logged, but not the target's quality metric: not read.
        + _history("donut", "dft_ns", 0, "ksd_eval", {100: 9.0, 200: 0.01, 300: 0.001})
        # The held-out monitor: seed 0 blows up (last / best 12), seed 1 ends at its lowest.
        + _history("donut", "dft_ns", 0, "monitor_ksd", {250: 1.0, 500: 0.5, 750: 6.0})
        + _history("donut", "dft_ns+dn", 1, "monitor_ksd", {250: 0.4, 500: 0.2}),
        columns=list(HISTORY_COLUMNS))
    return rows, history


def test_first_best_last_per_training(store_frames):
    rows, history = store_frames
    summary = training_curves_summary(rows, history).set_index("seed")
    assert summary["sampler"].tolist() == ["dft_ns", "dft_ns"]
    assert summary["metric"].tolist() == ["energy_distance"] * 2
    assert summary.loc[0, ["first", "best", "best_at", "last", "last_at"]].tolist() == [
        1.0, 0.2, 200, 0.5, 300]
    assert summary.loc[1, ["first", "best", "best_at", "last", "last_at"]].tolist() == [
        0.8, 0.1, 400, 0.1, 400]
    assert summary.loc[0, "last_over_best"] == pytest.approx(2.5, rel=4 * EPS)
    assert summary.loc[1, "last_over_best"] == 1.0
    assert summary.loc[0, "monitor_last_over_best"] == pytest.approx(12.0, rel=4 * EPS)
    assert summary.loc[1, "monitor_last_over_best"] == 1.0


def test_table_averages_over_seeds(store_frames):
    rows, history = store_frames
    text = training_quality_table(rows, history)
    line = next(line for line in text.splitlines() if line.startswith("| donut"))
    cells = [cell.strip() for cell in line.split("|")[1:-1]]
    # first 0.9 ± 0.1, best 0.15 ± 0.05 at 300, last 0.3 ± 0.2 at 350, last/best 1.75 ± 0.75;
    # monitor last/best (12 + 1) / 2 = 6.5 ± 5.5, one of the two seeds above 10x.
    assert cells == ["donut", "dft_ns", "energy_distance", "2", "0.9 ± 0.1", "0.15 ± 0.05",
                     "300", "0.3 ± 0.2", "350", "1.75 ± 0.75", "6.5 ± 5.5", "1 of 2"]


def test_trainings_without_a_monitor_leave_its_columns_empty(store_frames):
    rows, history = store_frames
    text = training_quality_table(rows, history[history["metric"].ne("monitor_ksd")])
    line = next(line for line in text.splitlines() if line.startswith("| donut"))
    assert [cell.strip() for cell in line.split("|")[1:-1]][-2:] == ["", ""]
    assert "monitor blow-ups" in text.splitlines()[2]


def test_written_only_with_histories(store_frames, tmp_path):
    rows, history = store_frames
    assert "training_quality" not in write_tables(rows, tmp_path / "none")
    assert not (tmp_path / "none" / "training_quality.md").exists()
    texts = write_tables(rows, tmp_path / "with", history=history)
    assert (tmp_path / "with" / "training_quality.md").read_text() == texts["training_quality"]
    # No curve of the quality metric (only KSD logged): no table.
    assert training_quality_table(rows, history[history["metric"].eq("ksd_eval")]) is None
