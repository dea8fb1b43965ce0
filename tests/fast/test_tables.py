"""Tables from synthetic result rows: statistics, floor, marks, formats, determinism, CLI.

No randomness: every value is written out, so expected means, standard errors and the paired
test statistics are computed by hand in each test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.report.aggregate import AGGREGATE_COLUMNS, FLOOR_ROW, aggregate, natural_key
from benchmark.report.tables import caption, metric_table, render, write_tables
from benchmark.schema import COLUMNS
from benchmark.store import ResultsStore

NOT_APPLICABLE = "not applicable: target 'donut' does not provide modes"


def make_rows(records: list[tuple], metric: str = "ksd", n: int = 100) -> pd.DataFrame:
    """Store-schema rows from ``(target, sampler, budget, seed, value[, status, reason])``."""
    rows = []
    for record in records:
        target, sampler, budget, seed, value, *rest = record
        status = rest[0] if rest else "ok"
        reason = rest[1] if len(rest) > 1 else ("" if status == "ok" else f"{status}: test")
        row = {column: math.nan for column in COLUMNS}
        row.update(matrix="synthetic", cell_id=f"{target}-{sampler}-{budget}-{seed}",
                   target=target, target_name=target, target_params="{}", sampler=sampler,
                   sampler_name=sampler, params="{}", budget=budget, seed=seed, cell_seed=seed,
                   n=n, status=status, metric=metric, value=value, reason=reason,
                   nfe=float(budget + 1), device="cpu", num_threads=1, worker="test",
                   torch_version="x", package_version="x", git_commit="x", timestamp="x")
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def series(target: str, sampler: str, budget: int, values: list[float], seeds=None) -> list[tuple]:
    seeds = range(len(values)) if seeds is None else seeds
    pairs = zip(seeds, values, strict=True)
    return [(target, sampler, budget, seed, value) for seed, value in pairs]


def entry(summary: pd.DataFrame, target: str, sampler: str, budget: int) -> pd.Series:
    match = summary[summary["target"].eq(target) & summary["sampler"].eq(sampler)
                    & summary["budget"].eq(budget)]
    assert len(match) == 1
    return match.iloc[0]


def test_mean_and_standard_error_over_seeds():
    rows = make_rows(series("mog2", "svgd", 10, [1.0, 2.0, 4.0])
                     + series("mog2", "mala", 10, [3.0]))
    summary = aggregate(rows)
    record = entry(summary, "mog2", "svgd", 10)
    values = np.array([1.0, 2.0, 4.0])
    assert record["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert record["se"] == pytest.approx(values.std(ddof=1) / math.sqrt(3), rel=1e-12)
    assert (record["num_seeds"], record["num_ok"], record["nfe"], record["n"]) == (3, 3, 11, 100)
    single = entry(summary, "mog2", "mala", 10)
    assert single["mean"] == 3.0 and math.isnan(single["se"])
    table = metric_table(rows, "ksd")
    assert table.loc["svgd@10", "mog2"] == "2.33 ± 0.88"
    assert table.loc["mala@10", "mog2"] == "3"  # one seed: no standard error


def test_row_order_floor_row_and_below_floor_flag():
    rows = make_rows(series("mog2", "svgd", 100, [0.01, 0.02, 0.03])
                     + series("mog2", "svgd", 20, [0.5, 0.6, 0.7])
                     + series("mog2", "mala", 200, [0.3, 0.3, 0.3])
                     + series("mog2", "reference", 0, [0.06, 0.07, 0.08]))
    table = metric_table(rows, "ksd")
    # Sampler label, then budget numerically (20 before 100), floor row last.
    assert list(table.index) == ["mala@200", "svgd@20", "svgd@100", FLOOR_ROW]
    summary = aggregate(rows)
    assert entry(summary, "mog2", "svgd", 20)["floor_mean"] == pytest.approx(0.07)
    assert summary.loc[summary["sampler"].eq("svgd") & summary["budget"].eq(100),
                       "below_floor"].item()
    assert table.loc["svgd@100", "mog2"].endswith("†")
    assert "†" not in table.loc["svgd@20", "mog2"] and "†" not in table.loc[FLOOR_ROW, "mog2"]
    assert "†: mean below the floor" in caption(rows, "ksd")


def test_below_floor_is_not_flagged_for_a_higher_is_better_metric():
    rows = make_rows(series("mog2", "svgd", 10, [0.5, 0.5])
                     + series("mog2", "reference", 0, [1.0, 1.0]), metric="mode_recall")
    assert not aggregate(rows)["below_floor"].any()
    assert "†" not in render(rows, "mode_recall")


def test_diverged_failed_and_partly_diverged_cells():
    rows = make_rows(
        [("funnel", "mala", 10, seed, math.nan, "diverged") for seed in range(3)]
        + [("funnel", "nuts", 10, seed, math.nan, "failed") for seed in range(3)]
        + series("funnel", "svgd", 10, [1.0, 3.0])
        + [("funnel", "svgd", 10, 2, math.nan, "diverged")]
        + series("funnel", "reference", 0, [0.5, 0.5, 0.5]))
    table = metric_table(rows, "ksd")
    assert table.loc["mala@10", "funnel"] == "diverged"
    assert table.loc["nuts@10", "funnel"] == "failed"
    # The mean and s.e. of the two finite seeds, with the count of the diverged one.
    assert table.loc["svgd@10", "funnel"] == "2 ± 1 (1/3 diverged)"
    record = entry(aggregate(rows), "funnel", "svgd", 10)
    assert (record["num_seeds"], record["num_ok"], record["num_diverged"]) == (3, 2, 1)
    assert "'x (k/m diverged)'" in caption(rows, "ksd")


def test_targets_where_the_metric_does_not_apply_are_dropped():
    rows = make_rows(
        series("mog2", "svgd", 10, [0.1, 0.2]) + series("mog2", "reference", 0, [0.1, 0.1])
        + [("donut", sampler, budget, seed, math.nan, "ok", NOT_APPLICABLE)
           for sampler, budget in (("svgd", 10), ("reference", 0)) for seed in range(2)],
        metric="mode_weight_error")
    table = metric_table(rows, "mode_weight_error")
    assert list(table.columns) == ["mog2"]
    assert "Not applicable (omitted): donut." in caption(rows, "mode_weight_error")


def paired_marks(lower: list[float], higher: list[float]) -> tuple[bool, bool]:
    """(naive unpaired rule marks, paired rule marks) for ``lower`` beating ``higher``."""
    a, b = np.array(lower), np.array(higher)
    se = lambda x: x.std(ddof=1) / math.sqrt(len(x))  # noqa: E731
    naive = b.mean() - a.mean() > 2 * math.hypot(se(a), se(b))
    return bool(naive), bool((b - a).mean() > 2 * se(b - a))


def test_best_is_marked_by_the_paired_rule_when_unpaired_would_not():
    # Seed-to-seed variation shared by both samplers (common random numbers): the unpaired
    # standard errors are large, the paired differences are consistently positive.
    good, other = [1.0, 2.0, 3.0], [1.1, 2.12, 3.09]
    assert paired_marks(good, other) == (False, True)
    rows = make_rows(series("donut", "a", 1, good) + series("donut", "b", 1, other))
    summary = aggregate(rows)
    assert entry(summary, "donut", "a", 1)["best"] and not entry(summary, "donut", "b", 1)["best"]
    assert metric_table(rows, "ksd").loc["a@1", "donut"] == "**2 ± 0.58**"
    latex = render(rows, "ksd", "latex")
    assert r"\textbf{\boldmath $2 \pm 0.58$}" in latex


def test_best_is_not_marked_when_only_the_unpaired_rule_would_mark():
    # Anti-correlated seeds: unpaired means differ by > 2 combined s.e., paired d = [.8, .4, 0].
    good, other = [1.0, 1.2, 1.4], [1.8, 1.6, 1.4]
    assert paired_marks(good, other) == (True, False)
    rows = make_rows(series("donut", "a", 1, good) + series("donut", "b", 1, other))
    assert not aggregate(rows)["best"].any()
    assert "**" not in render(rows, "ksd")


def test_best_needs_paired_seeds_and_ignores_the_floor():
    clear = [0.1, 0.11, 0.12]
    disjoint = make_rows(series("mog2", "a", 1, clear) + series("mog2", "b", 1, [5.0, 5.1, 5.2],
                                                               seeds=[3, 4, 5]))
    one_seed = make_rows(series("mog2", "a", 1, [0.1]) + series("mog2", "b", 1, [5.0]))
    assert not aggregate(disjoint)["best"].any() and not aggregate(one_seed)["best"].any()
    # The floor is lower than everyone but is not a competitor; a diverged entry is beaten.
    rows = make_rows(series("mog2", "a", 1, clear) + series("mog2", "b", 1, [5.0, 5.1, 5.2])
                     + series("mog2", "reference", 0, [0.01, 0.01, 0.01])
                     + [("mog2", "c", 1, seed, math.nan, "diverged") for seed in range(3)])
    summary = aggregate(rows)
    assert summary.loc[summary["best"], "sampler"].tolist() == ["a"]


def test_best_follows_the_metric_direction():
    rows = make_rows(series("mog2", "a", 1, [0.5, 0.5, 0.55]) + series("mog2", "b", 1, [1.0] * 3),
                     metric="mode_recall")
    summary = aggregate(rows)
    assert summary.loc[summary["best"], "sampler"].tolist() == ["b"]


def test_scaling_labels_sort_naturally():
    assert sorted(["gaussian_d100", "gaussian_d10", "gaussian_d50"], key=natural_key) == [
        "gaussian_d10", "gaussian_d50", "gaussian_d100"]
    records = [record for target in ("gaussian_d100", "gaussian_d10", "gaussian_d50")
               for sampler, budget in (("svgd", 1000), ("svgd", 200), ("reference", 0))
               for record in series(target, sampler, budget, [1.0, 2.0])]
    table = metric_table(make_rows(records), "ksd")
    assert list(table.columns) == ["gaussian_d10", "gaussian_d50", "gaussian_d100"]
    assert list(table.index) == ["svgd@200", "svgd@1000", FLOOR_ROW]


def test_latex_is_booktabs_with_escaped_labels():
    rows = make_rows(series("gaussian_d10", "dft_ns", 1, [0.01, 0.02])
                     + series("gaussian_d10", "reference", 0, [0.5, 0.6])
                     + series("gaussian_d10", "svgd", 10, [2e-5, 3e-5]))
    latex = render(rows, "ksd", "latex")
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\caption{", r"\label{"):
        assert latex.count(rule) == 1
    assert r"gaussian\_d10" in latex and r"dft\_ns@1" in latex
    assert r"$^\dagger$" in latex and r"$\pm$" in latex and "±" not in latex
    assert r"10^{-5}" in latex  # no "2.5e-05" in LaTeX


def test_outputs_are_byte_for_byte_deterministic(tmp_path):
    rows = make_rows(series("mog2", "a", 1, [0.1, 0.11, 0.12]) + series("mog2", "b", 1, [5.0] * 3)
                     + series("donut", "a", 1, [1 / 3, 2 / 3, 0.5])
                     + series("mog2", "reference", 0, [0.2, 0.3, 0.25]))
    write_tables(rows, tmp_path / "first")
    # The same rows in another order must give the same bytes (tables do not see file order).
    write_tables(rows.sample(frac=1.0, random_state=0), tmp_path / "second")
    names = sorted(path.name for path in (tmp_path / "first").iterdir())
    assert names == ["aggregate.csv", "ksd.md", "ksd.tex"]
    for name in names:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()


def test_cli_table_writes_markdown_latex_and_the_aggregate(tmp_path, capsys):
    store = ResultsStore(tmp_path / "store")
    rows = pd.concat([make_rows(series("mog2", "svgd", 10, [0.2, 0.25]), metric=metric)
                      for metric in ("ksd", "energy_distance")]
                     + [make_rows(series("mog2", "reference", 0, [0.1, 0.1]), metric="ksd")])
    for cell_id, cell in rows.groupby("cell_id"):
        store.write_cell(str(cell_id), cell.to_dict("records"))
    assert main(["table", str(store.root)]) == 0
    out = capsys.readouterr().out
    tables = store.root / "tables"
    assert "| svgd@10" in out and FLOOR_ROW in out and "over 2 seed(s), n = 100" in out
    assert (tables / "ksd.md").read_text() in out
    assert r"\toprule" in (tables / "energy_distance.tex").read_text()
    aggregate_csv = pd.read_csv(tables / "aggregate.csv")
    assert list(aggregate_csv.columns) == AGGREGATE_COLUMNS
    assert len(aggregate_csv) == 3  # (svgd, ksd), (svgd, energy distance), (floor, ksd)
    first = {path.name: path.read_bytes() for path in tables.iterdir()}
    assert main(["table", str(store.root)]) == 0
    assert {path.name: path.read_bytes() for path in tables.iterdir()} == first
    assert main(["table", str(store.root), "--metric", "fid"]) == 2
    assert "no rows for metric(s) fid" in capsys.readouterr().err


def test_below_floor_entries_are_flagged_for_discrepancies_only_and_never_best():
    floor = series("t", "reference", 0, [0.50, 0.52, 0.51])
    records = floor + series("t", "a", 1, [0.10, 0.11, 0.12]) + series("t", "b", 1, [0.9, 1, 1.1])
    ksd = aggregate(make_rows(records, metric="ksd"))
    assert entry(ksd, "t", "a", 1)["below_floor"]
    assert not ksd["best"].any()  # "a" wins by far, but below the floor it is a warning sign
    weights = aggregate(make_rows(records, metric="mode_weight_error"))
    assert not weights["below_floor"].any()
    assert entry(weights, "t", "a", 1)["best"]


def test_a_mean_below_the_floor_within_the_noise_is_not_flagged():
    floor = series("t", "reference", 0, [0.50, 0.60, 0.70])
    # mean 0.55 vs floor 0.60: combined s.e. ~0.063, so 0.05 below is within two of them
    records = floor + series("t", "a", 1, [0.45, 0.55, 0.65])
    assert not aggregate(make_rows(records, metric="ksd"))["below_floor"].any()


def plan_of(rows: pd.DataFrame, extra: list[tuple] = ()) -> pd.DataFrame:
    """A plan holding the cells of ``rows`` plus ``extra`` ``(target, sampler, budget, seed)``."""
    cells = rows.drop_duplicates("cell_id")[["cell_id", "target", "sampler", "budget", "seed"]]
    more = pd.DataFrame([{"cell_id": f"{t}-{s}-{b}-{seed}", "target": t, "sampler": s,
                          "budget": b, "seed": seed} for t, s, b, seed in extra])
    return pd.concat([cells, more], ignore_index=True).assign(matrix="synthetic")


def test_planned_cells_without_rows_are_listed_and_the_list_goes_when_they_arrive(tmp_path):
    done = make_rows(series("mog2", "svgd", 10, [0.2, 0.3]))
    plan = plan_of(done, [("mog2", "kl_ns", 1, 1), ("mog2", "kl_ns", 1, 0),
                          ("donut", "svgd", 10, 0)])
    texts = write_tables(done, tmp_path, plan=plan)
    listed = (tmp_path / "missing.md").read_text()
    assert listed == texts["missing"]
    assert listed.startswith("Not run yet: 3 of 5 planned cells (synthetic)")
    lines = [line for line in listed.splitlines() if line.startswith("| ") and "target" not in line]
    # natural target order, then sampler@budget; seeds of one group joined in order
    assert [[c.strip() for c in line.strip("|").split("|")] for line in lines] == [
        ["donut", "synthetic", "svgd@10", "0"], ["mog2", "synthetic", "kl_ns@1", "0, 1"]]
    # once every planned cell has rows, the stale list is removed
    complete = pd.concat([done, make_rows(series("mog2", "kl_ns", 1, [0.5, 0.6])
                                          + series("donut", "svgd", 10, [0.1]))])
    assert "missing" not in write_tables(complete, tmp_path, plan=plan)
    assert not (tmp_path / "missing.md").exists()


def test_natural_order_is_total_when_labels_are_equal_as_numbers():
    labels = ["dft_s2_k2", "dft_s02_k1", "dft_s2_k1", "dft_s02_k2", "d100", "d10"]
    expected = ["d10", "d100", "dft_s02_k1", "dft_s2_k1", "dft_s02_k2", "dft_s2_k2"]
    assert sorted(labels, key=natural_key) == expected
    assert sorted(reversed(labels), key=natural_key) == expected


def test_the_scaling_layout_is_written_for_gaussian_d_and_funnel_d_stores_only(tmp_path):
    def family(name: str, labels: tuple[str, ...]) -> pd.DataFrame:
        records = [record for label in labels
                   for sampler, budget in (("mala", 100), ("dft_ns_full", 1), ("reference", 0))
                   for record in series(label, sampler, budget, [0.3, 0.4])]
        rows = pd.concat([make_rows(records, metric) for metric in ("ksd", "energy_distance")])
        rows["target_name"] = name
        rows["sample_seconds"] = np.where(rows["sampler"].eq("mala"), 2.0, 0.5)
        rows["train_seconds"] = np.where(rows["sampler"].eq("dft_ns_full"), 90.0, math.nan)
        return rows

    scaling = pd.concat([family("gaussian_d", ("gaussian_d100", "gaussian_d10")),
                         family("funnel_d", ("funnel_d10",))])
    texts = write_tables(scaling, tmp_path / "scaling")
    assert "table_scaling" in texts and (tmp_path / "scaling" / "table_scaling.tex").exists()
    lines = [line for line in texts["table_scaling"].splitlines() if line.startswith("| ")]
    # One row per (target, sampler@budget), targets in natural order, floor last per target.
    order = [(line.split("|")[1].strip(), line.split("|")[2].strip()) for line in lines[1:]]
    assert order[:3] == [("funnel_d10", "dft_ns_full@1"), ("funnel_d10", "mala@100"),
                         ("funnel_d10", FLOOR_ROW)]
    assert [target for target, _ in order[3::3]] == ["gaussian_d10", "gaussian_d100"]
    header = [cell.strip() for cell in lines[0].split("|")[1:-1]]
    assert header[-4:] == ["NFE", "train evals", "sample s", "train s"]
    dft = next(line for line in lines if "gaussian_d100" in line and "dft_ns_full@1" in line)
    assert dft.split("|")[-2].strip() == "90"  # training seconds, mean over seeds
    # A store with any other target (a 2-D one here) does not get the scaling layout.
    mixed = pd.concat([scaling, family("donut", ("donut",))])
    assert "table_scaling" not in write_tables(mixed, tmp_path / "mixed")


def test_time_to_quality_matches_the_cheapest_iterative_sampler_at_least_as_good(tmp_path):
    # Energy distance means: dft 0.05; mala@100 0.04 (better, 2 s per 100 samples), mala@10 0.2
    # (worse), svgd@200 0.03 (better, 10 s). The cheapest as-good iterative row is mala@100:
    # per sample 0.02 s against DFT's 0.001 s, so break-even n = 90 / 0.019 = 4737.
    records = (series("donut", "dft_ns", 1, [0.04, 0.06])
               + series("donut", "mala", 100, [0.04, 0.04])
               + series("donut", "mala", 10, [0.2, 0.2])
               + series("donut", "svgd", 200, [0.03, 0.03])
               + series("donut", "reference", 0, [0.01, 0.01]))
    rows = make_rows(records, "energy_distance")
    seconds = {"dft_ns": 0.1, "mala": 2.0, "svgd": 10.0, "reference": math.nan}
    rows["sample_seconds"] = rows["sampler"].map(seconds)
    rows.loc[rows["budget"].eq(10), "sample_seconds"] = 0.2
    rows["train_seconds"] = np.where(rows["sampler"].eq("dft_ns"), 90.0, math.nan)
    rows["train_nfe"] = np.where(rows["sampler"].eq("dft_ns"), 1000.0, math.nan)
    rows["train_hvp"] = np.where(rows["sampler"].eq("dft_ns"), 1000.0, math.nan)
    texts = write_tables(rows, tmp_path)
    lines = [line for line in texts["time_to_quality"].splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].split("|")[1:-1]]
    dft = dict(zip(header, (cell.strip() for cell in next(
        line for line in lines if "dft_ns@1" in line).split("|")[1:-1]), strict=True))
    assert dft["matched iterative"] == "mala@100"
    assert dft["break-even n"] == "4737"  # 90 / (0.02 - 0.001)
    assert dft["/ floor"] == "×5" and dft["train evals"] == "2000"
    assert (dft["metric"], dft["quality"]) == ("energy_distance", "0.05 ± 0.01")
    # A store without a neural sampler gets no such table.
    iterative = rows[rows["sampler"].ne("dft_ns")]
    assert "time_to_quality" not in write_tables(iterative, tmp_path / "iterative")


def test_reports_read_only_planned_cells_and_their_trainings(tmp_path):
    # Two trainings of "dft_ns" on donut: an old configuration (cell "old", no longer planned)
    # and the current one. Reports must see the current cell and its history only; nothing
    # is deleted.
    store = ResultsStore(tmp_path)
    for cell_id, params, value in (("old", '{"sigma":0.05}', 2.0), ("new", '{"sigma":null}', 0.1)):
        row = make_rows([("donut", "dft_ns", 1, 0, value)], "energy_distance").iloc[0].to_dict()
        store.write_cell(cell_id, [{**row, "cell_id": cell_id, "params": params}])
        store.write_history(cell_id, [{"train_key": cell_id, "target": "donut",
                                       "sampler": "dft_ns", "params": params, "seed": 0,
                                       "iteration": 100, "metric": "ksd_eval", "value": value}])
    rows, history = store.load_current()
    assert sorted(rows["cell_id"]) == ["new", "old"]  # no plan recorded: everything
    assert len(history) == 2
    store.write_plan("m", [{"cell_id": "new", "target": "donut", "sampler": "dft_ns",
                            "budget": 1, "seed": 0}])
    rows, history = store.load_current()
    assert rows["cell_id"].tolist() == ["new"] and history["value"].tolist() == [0.1]
    assert sorted(store.load()["cell_id"]) == ["new", "old"]  # still on disk


def test_history_files_store_params_once_and_load_them_on_every_row(tmp_path):
    # A long training logs hundreds of rows with the same ~700-character params: the file
    # keeps them on its first row; loading restores them on every row, so reports still tell
    # the two configurations' trainings apart (as in the test above, over several rows each).
    store = ResultsStore(tmp_path)
    configs = (("old", '{"sigma":0.05}', 2.0), ("new", '{"sigma":null}', 0.1))
    for cell_id, params, value in configs:
        row = make_rows([("donut", "dft_ns", 1, 0, value)], "energy_distance").iloc[0].to_dict()
        store.write_cell(cell_id, [{**row, "cell_id": cell_id, "params": params}])
        store.write_history(cell_id, [{"train_key": cell_id, "target": "donut",
                                       "sampler": "dft_ns", "params": params, "seed": 0,
                                       "iteration": iteration, "metric": "ksd_eval",
                                       "value": value} for iteration in (100, 200, 300)])
    text = (tmp_path / "history" / "new.csv").read_text()
    assert text.count("sigma") == 1
    history = store.load_history()
    for cell_id, params, _ in configs:
        assert history.loc[history["train_key"].eq(cell_id), "params"].tolist() == [params] * 3
    store.write_plan("m", [{"cell_id": "new", "target": "donut", "sampler": "dft_ns",
                            "budget": 1, "seed": 0}])
    _, current = store.load_current()
    assert current["value"].tolist() == [0.1] * 3 and set(current["train_key"]) == {"new"}


def test_matched_cost_reads_the_best_quality_within_each_budget(tmp_path):
    # mala@10 (NFE 11) 0.2, mala@100 (NFE 101) 0.04; dft_ns@1 0.05 at NFE 0 with 2000 training
    # evaluations + HVPs: 0.2 per sample amortised over 10,000 samples.
    records = (series("donut", "dft_ns", 1, [0.04, 0.06])
               + series("donut", "mala", 100, [0.04, 0.04])
               + series("donut", "mala", 10, [0.2, 0.2])
               + series("donut", "reference", 0, [0.01, 0.01]))
    rows = make_rows(records, "energy_distance")
    rows["nfe"] = np.where(rows["sampler"].eq("dft_ns"), 0.0, rows["budget"] + 1.0)
    rows["sample_seconds"] = np.where(rows["sampler"].eq("dft_ns"), 0.1, 1.0)
    rows["train_seconds"] = np.where(rows["sampler"].eq("dft_ns"), 90.0, math.nan)
    rows["train_nfe"] = np.where(rows["sampler"].eq("dft_ns"), 1000.0, math.nan)
    rows["train_hvp"] = np.where(rows["sampler"].eq("dft_ns"), 1000.0, math.nan)
    text = write_tables(rows, tmp_path)["matched_cost"]
    evaluations = text.split("\n\n")[1].splitlines()
    header = [cell.strip() for cell in evaluations[0].split("|")[1:-1]]

    def row(sampler: str, cost: str) -> dict[str, str]:
        line = next(line for line in evaluations
                    if f"| {sampler} " in line and f"| {cost} " in line)
        return dict(zip(header, (c.strip() for c in line.split("|")[1:-1]), strict=True))

    mala = row("mala", "sampling")
    assert mala["≤ 1"] == mala["≤ 10"] == "–"
    assert mala["≤ 100"] == "0.2 (@10)" and mala["≤ 1000"] == "0.04 (@100)"
    assert row("dft_ns", "sampling")["≤ 1"] == "0.05 (@1)"
    amortised = row("dft_ns", "+ training / 10,000")
    assert amortised["≤ 1"] == "0.05 (@1)"  # 0 + 2000 / 10,000 = 0.2 evaluations per sample
    assert (tmp_path / "matched_cost.md").exists()


def _two_quality_targets() -> pd.DataFrame:
    """``donut`` with exact samples (energy distance finite; also an FID, which must not be
    chosen) and an image-EBM-like ``ebm`` whose energy distance rows are NaN ("not applicable",
    as the store writes them) and whose quality is FID against data. Each: DFT-NS at one step
    (NFE 0, trained for 90 s with 2,000 evaluations + HVPs), MALA at 10 and 100, a floor."""
    def cells(target: str, values: dict[tuple[str, int], list[float]]) -> list[tuple]:
        return [record for (sampler, budget), seeds in values.items()
                for record in series(target, sampler, budget, seeds)]

    donut = cells("donut", {("dft_ns", 1): [0.04, 0.06], ("mala", 100): [0.04, 0.04],
                            ("mala", 10): [0.2, 0.2], ("reference", 0): [0.01, 0.01]})
    ebm = cells("ebm", {("dft_ns", 1): [30.0, 34.0], ("mala", 100): [20.0, 22.0],
                        ("mala", 10): [40.0, 40.0], ("reference", 0): [4.0, 4.0]})
    no_exact = [(target, sampler, budget, seed, math.nan, "ok",
                 "not applicable: target 'ebm' does not provide reference")
                for target, sampler, budget, seed, _ in ebm]
    rows = pd.concat([make_rows(donut, "energy_distance"),
                      make_rows([(*record[:4], 7.0) for record in donut], "fid_data"),
                      make_rows(no_exact, "energy_distance"), make_rows(ebm, "fid_data")],
                     ignore_index=True)
    neural = rows["sampler"].eq("dft_ns")
    rows["nfe"] = np.where(neural, 0.0, rows["budget"] + 1.0)
    rows["sample_seconds"] = np.where(neural, 0.1, np.where(rows["budget"].eq(10), 0.2, 2.0))
    rows["train_seconds"] = np.where(neural, 90.0, math.nan)
    rows["train_nfe"] = np.where(neural, 1000.0, math.nan)
    rows["train_hvp"] = np.where(neural, 1000.0, math.nan)
    return rows


def _markdown_rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].split("|")[1:-1]]
    return [dict(zip(header, (cell.strip() for cell in line.split("|")[1:-1]), strict=True))
            for line in lines[1:]]


def test_time_to_quality_and_matched_cost_choose_the_quality_metric_per_target(tmp_path):
    from benchmark.report.time_to_quality import quality_and_costs, quality_metrics

    rows = _two_quality_targets()
    # energy_distance first where it is finite; the EBM's NaN energy distance falls to FID.
    assert quality_metrics(rows) == {"donut": "energy_distance", "ebm": "fid_data"}
    frame = quality_and_costs(rows)
    assert frame.groupby("target")["metric"].agg(set).to_dict() == {
        "donut": {"energy_distance"}, "ebm": {"fid_data"}}
    texts = write_tables(rows, tmp_path)
    caption = texts["time_to_quality"].split("\n\n")[0]
    assert caption.startswith("Time to quality [matrix synthetic]: the quality metric is chosen "
                              "per target")
    table = {(row["target"], row["sampler@budget"]): row
             for row in _markdown_rows(texts["time_to_quality"])}
    assert {row["metric"] for key, row in table.items() if key[0] == "donut"} == {
        "energy_distance"}
    assert {row["metric"] for key, row in table.items() if key[0] == "ebm"} == {"fid_data"}
    assert table["donut", "dft_ns@1"]["quality"] == "0.05 ± 0.01"
    assert table["donut", "dft_ns@1"]["matched iterative"] == "mala@100"
    # The EBM in FID: real numbers, its floor, and a match among its own (FID) cells: mala@100
    # (21) is as good as DFT-NS (32), mala@10 (40) is not; break-even 90 / (0.02 - 0.001).
    ebm = table["ebm", "dft_ns@1"]
    assert (ebm["quality"], ebm["/ floor"]) == ("32 ± 2", "×8")
    assert (ebm["matched iterative"], ebm["break-even n"]) == ("mala@100", "4737")
    assert table["ebm", "mala@10"]["quality"] == "40 ± 0"
    # Matched cost: the metric per row, each target in its own.
    text = texts["matched_cost"]
    assert text.startswith("Matched cost [matrix synthetic]: the quality metric is chosen per "
                           "target")
    evaluations = {(row["target"], row["sampler"], row["cost"]): row
                   for row in _markdown_rows(text.split("\n\n")[1])}
    assert {row["metric"] for row in evaluations.values()} == {"energy_distance", "fid_data"}
    assert evaluations["donut", "mala", "sampling"]["metric"] == "energy_distance"
    assert evaluations["donut", "mala", "sampling"]["≤ 1000"] == "0.04 (@100)"
    ebm_mala = evaluations["ebm", "mala", "sampling"]
    assert ebm_mala["metric"] == "fid_data"
    assert (ebm_mala["≤ 100"], ebm_mala["≤ 1000"]) == ("40 (@10)", "21 (@100)")
    assert evaluations["ebm", "dft_ns", "sampling"]["≤ 1"] == "32 (@1)"
    assert evaluations["ebm", "dft_ns", "+ training / 10,000"]["≤ 1"] == "32 (@1)"


def test_the_report_page_links_only_files_that_exist_and_shows_every_table(tmp_path):
    import shutil
    from html.parser import HTMLParser
    from pathlib import Path

    from benchmark.cli import main

    store = tmp_path / "store"
    shutil.copytree(Path(__file__).resolve().parents[2] / "results" / "ci-tiny", store)
    (store / "figures").mkdir(exist_ok=True)
    (store / "figures" / "demo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main(["report", str(store)]) == 0

    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.links, self.ids = [], set()

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            self.links += [attrs[key] for key in ("src", "href") if key in attrs]
            if "id" in attrs:
                self.ids.add(attrs["id"])

    page = Links()
    page.feed((store / "report.html").read_text(encoding="utf-8"))
    assert page.links and all((store / link).exists() for link in page.links)
    assert {f"table-{p.stem}" for p in (store / "tables").glob("*.md")} <= page.ids
    assert "figure-demo" in page.ids and {"provenance", "commands"} <= page.ids
    text = (store / "report.html").read_text(encoding="utf-8")
    assert "python -m benchmark run ci-tiny" in text and "<table>" in text
