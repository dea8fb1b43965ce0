"""`claim STORE A B`: the paired two-standard-error verdict for one named pair of rows.

The per-seed values are fixed, so every difference and standard error below is exact
arithmetic (no random draw, no false-failure budget needed).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.report.aggregate import paired_difference, verdict
from benchmark.report.claims import claim_table, parse_row
from benchmark.schema import COLUMNS, UsageError
from benchmark.store import ResultsStore

SEEDS = (0, 1, 2)
A, B = ("dft_ns", 1), ("svgd", 200)
A_VALUES = [1.0, 1.1, 1.2]
# Per-target per-seed differences B − A of a lower-is-better metric: mean 0.6 and s.e.
# 0.1/√3 ≈ 0.058 (beats); mean 1/60 against s.e. ≈ 0.072 (on par); the mirror (loses).
DIFFERENCES = {"donut": [0.5, 0.6, 0.7], "mog2": [-0.1, 0.0, 0.15], "mog8": [-0.5, -0.6, -0.7]}


def _row(target: str, sampler: str, budget: int, seed: int, metric: str, value: float,
         **costs: float) -> dict:
    row = {column: "" for column in COLUMNS}
    row.update(matrix="synthetic", cell_id=f"{target}-{sampler}-{budget}-{seed}", target=target,
               target_name=target, target_params="{}", sampler=sampler, sampler_name=sampler,
               params="{}", denoise=False, budget=budget, seed=seed, cell_seed=seed, n=100,
               status="ok", metric=metric, value=value, nfe=float(budget), device="cpu",
               sample_seconds=costs.get("sample_seconds", 1.0),
               train_seconds=costs.get("train_seconds", math.nan))
    return row


def _rows() -> pd.DataFrame:
    rows = []
    for target, differences in DIFFERENCES.items():
        for seed, a, d in zip(SEEDS, A_VALUES, differences, strict=True):
            rows.append(_row(target, *A, seed, "energy_distance", a,
                             sample_seconds=0.1, train_seconds=100.0))
            rows.append(_row(target, *B, seed, "energy_distance", a + d, sample_seconds=10.0))
            # mode_recall is higher-is-better: A recalls every mode, B fewer, so A beats B.
            rows.append(_row(target, *A, seed, "mode_recall", 1.0,
                             sample_seconds=0.1, train_seconds=100.0))
            rows.append(_row(target, *B, seed, "mode_recall", 0.5 + 0.1 * seed,
                             sample_seconds=10.0))
    return pd.DataFrame(rows, columns=COLUMNS)


def test_each_verdict_follows_the_paired_two_standard_error_rule():
    table = claim_table(_rows(), A, B, metrics=["energy_distance"]).set_index("target")
    assert table["verdict"].to_dict() == {"donut": "beats", "mog2": "on par", "mog8": "loses"}
    # The difference is B − A, positive in A's favour, with its paired standard error.
    assert table.loc["donut", "difference"] == pytest.approx(0.6)
    assert table.loc["donut", "difference_se"] == pytest.approx(0.1 / math.sqrt(3))
    assert table.loc["mog8", "difference"] == pytest.approx(-0.6)
    assert (table["seeds"] == 3).all()
    assert table.loc["donut", "a_mean"] == pytest.approx(1.1)


def test_a_higher_is_better_metric_flips_the_sign():
    table = claim_table(_rows(), A, B, metrics=["mode_recall"], targets=["donut"])
    assert table["verdict"].tolist() == ["beats"]
    assert table["difference"].iloc[0] == pytest.approx(0.4)  # 1.0 − mean(0.5, 0.6, 0.7)


def test_the_cost_columns_are_a_speed_up_and_break_even_over_b():
    table = claim_table(_rows(), A, B, targets=["donut"])
    # Per sample: A 0.1 s / 100, B 10 s / 100, so B/A = 100 and the 100 s of training pay
    # back after 100 / (0.1 − 0.001) samples.
    assert table["speedup"].tolist() == pytest.approx([100.0, 100.0])
    assert table["break_even"].tolist() == pytest.approx([100.0 / 0.099] * 2)


def test_a_single_common_seed_is_unpaired_not_a_win():
    rows = _rows()
    keep = ~((rows["sampler"] == B[0]) & (rows["seed"] > 0))
    table = claim_table(rows[keep], A, B, metrics=["energy_distance"], targets=["donut"])
    assert table["verdict"].tolist() == ["unpaired"]
    assert verdict(*paired_difference(pd.Series([1.0]), pd.Series([9.0]), lower=True)) \
        == "unpaired"


def test_parse_row_and_unknown_rows_are_usage_errors():
    assert parse_row("annealed_langevin_ref+dn@2700") == ("annealed_langevin_ref+dn", 2700)
    for text in ("svgd", "svgd@", "@200", "svgd@two"):
        with pytest.raises(UsageError, match="sampler@budget"):
            parse_row(text)
    with pytest.raises(UsageError, match=r"svgd@100 is not in the store .*svgd@200"):
        claim_table(_rows(), A, ("svgd", 100))
    with pytest.raises(UsageError, match="--metric fid: not in the store"):
        claim_table(_rows(), A, B, metrics=["fid"])


def test_the_command_prints_the_verdicts_and_exits_2_on_bad_input(tmp_path: Path, capsys):
    store = ResultsStore(tmp_path / "store")
    for cell_id, rows in _rows().groupby("cell_id"):
        store.write_cell(str(cell_id), rows.to_dict("records"))
    assert main(["claim", str(store.root), "dft_ns@1", "svgd@200",
                 "--metric", "energy_distance"]) == 0
    out = capsys.readouterr().out
    assert "dft_ns@1 vs svgd@200" in out
    assert [word in out for word in ("beats", "on par", "loses")] == [True] * 3
    assert main(["claim", str(store.root), "dft_ns", "svgd@200"]) == 2
    assert "is not sampler@budget" in capsys.readouterr().err
    assert main(["claim", str(tmp_path / "nowhere"), "dft_ns@1", "svgd@200"]) == 2
    assert "no results in" in capsys.readouterr().err


def test_break_even_counts_both_trainings_and_is_absent_between_two_chains():
    rows = _rows()
    rows["train_seconds"] = rows["train_seconds"].astype(float)
    b_rows = rows["sampler"] == B[0]
    # B trained for 30 s: A's 100 s pay back after (100 − 30) / (0.1 − 0.001) samples.
    trained = rows.assign(train_seconds=rows["train_seconds"].where(~b_rows, 30.0))
    table = claim_table(trained, A, B, metrics=["energy_distance"], targets=["donut"])
    assert table["break_even"].iloc[0] == pytest.approx(70.0 / 0.099)
    # B trained longer than A: A is cheaper from the first sample.
    longer = rows.assign(train_seconds=rows["train_seconds"].where(~b_rows, 500.0))
    assert claim_table(longer, A, B, targets=["donut"])["break_even"].tolist() == [0.0, 0.0]
    # A samples slower than B: never.
    slower = rows.assign(sample_seconds=rows["sample_seconds"].where(b_rows, 20.0))
    assert claim_table(slower, A, B, targets=["donut"])["break_even"].tolist() == [math.inf] * 2
    # Neither trained (two chains): the speed-up only.
    chains = rows.assign(train_seconds=math.nan)
    table = claim_table(chains, A, B, targets=["donut"])
    assert table["break_even"].isna().all()
    assert table["speedup"].tolist() == pytest.approx([100.0] * 2)
