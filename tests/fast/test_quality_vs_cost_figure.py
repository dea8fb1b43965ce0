"""The matched-cost figures ``quality_vs_cost`` and ``quality_vs_seconds``.

A hand-made store: on ``donut`` an iterative sampler (MALA at 10 and 100 steps), a one-step
neural sampler (KL-NS) with training evaluations, HVPs and seconds that differ between seeds, a
step-axis neural sampler (PIS at 4 and 16 steps of one trained net) and a reference floor; on
``funnel`` MALA alone, no floor. The plotted points must be the hand-computed means over seeds
and the costs of the matched-cost table (amortised = sampling NFE + (training NFE + HVPs) /
AMORTISED_OVER; seconds per 1,000 samples, training seconds spread the same way), and the
drawn lines must carry exactly those points.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; figures are built with the object-oriented API anyway

import matplotlib.colors
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.report.matched_cost import AMORTISED_OVER, matched_cost_table
from benchmark.report.plots import FIGURES, write_figures
from benchmark.report.plots_common import MissingData, PlotData, sampler_colors
from benchmark.report.plots_matched_cost import (
    POINT_COLUMNS,
    floor_levels,
    quality_cost_points,
    quality_vs_cost,
    quality_vs_seconds,
)
from benchmark.schema import COLUMNS
from benchmark.store import ResultsStore

N = 200
METRIC = "energy_distance"
# (target, sampler, budget, nfe per sample, {seed: (value, train_nfe, train_hvp, train_s)},
#  sample_seconds)
CELLS = [
    ("donut", "mala", 10, 11.0, {0: (0.2, None, None, None), 1: (0.4, None, None, None)}, 0.05),
    ("donut", "mala", 100, 101.0, {0: (0.05, None, None, None), 1: (0.07, None, None, None)},
     0.5),
    ("donut", "kl_ns", 1, 0.0, {0: (0.1, 1000, 500, 10.0), 1: (0.2, 3000, 1500, 30.0)}, 0.002),
    ("donut", "pis", 4, 4.0, {0: (0.12, 6000, 0, 40.0), 1: (0.14, 6000, 0, 40.0)}, 0.004),
    ("donut", "pis", 16, 16.0, {0: (0.08, 6000, 0, 40.0), 1: (0.1, 6000, 0, 40.0)}, 0.016),
    ("donut", "reference", 0, math.nan, {0: (0.01, None, None, None),
                                          1: (0.03, None, None, None)}, math.nan),
    ("funnel", "mala", 10, 11.0, {0: (0.5, None, None, None), 1: (0.6, None, None, None)}, 0.05),
]


def _rows(metric: str = METRIC) -> pd.DataFrame:
    records = []
    for target, sampler, budget, nfe, seeds, sample_seconds in CELLS:
        for seed, (value, train_nfe, train_hvp, train_seconds) in seeds.items():
            row = {column: math.nan for column in COLUMNS}
            neural = train_nfe is not None
            row.update(
                matrix="tiny", cell_id=f"{target}-{sampler}-{budget}-{seed}", target=target,
                target_name=target, target_params="{}", sampler=sampler, sampler_name=sampler,
                params=json.dumps({}), budget=budget, seed=seed, cell_seed=seed, n=N,
                status="ok", metric=metric, value=value, reason="", nfe=nfe,
                train_nfe=train_nfe if neural else math.nan,
                train_hvp=train_hvp if neural else math.nan,
                train_seconds=train_seconds if neural else math.nan,
                sample_seconds=sample_seconds, device="cpu", num_threads=1, worker="test",
                torch_version="x", package_version="x", git_commit="x", timestamp="x")
            records.append(row)
    return pd.DataFrame(records, columns=list(COLUMNS))


def _data(rows: pd.DataFrame) -> PlotData:
    # Figures read rows and colours only; no store on disk behind this one.
    return PlotData(root=Path("in-memory"), rows=rows, history=pd.DataFrame(),
                    colors=sampler_colors(rows["sampler"]))


def _point(points: pd.DataFrame, target: str, sampler: str, mode: str) -> pd.DataFrame:
    return points[points["target"].eq(target) & points["sampler"].eq(sampler)
                  & points["mode"].eq(mode)].sort_values("budget")


def test_evaluation_points_are_the_hand_computed_costs_and_means():
    points = quality_cost_points(_rows(), "evaluations")
    assert list(points.columns) == list(POINT_COLUMNS)
    assert points["metric"].eq(METRIC).all()
    mala = _point(points, "donut", "mala", "sampling")
    assert mala["budget"].tolist() == [10, 100]
    assert mala["cost"].tolist() == pytest.approx([11.0, 101.0])
    assert mala["mean"].tolist() == pytest.approx([0.3, 0.06])
    # s.e. = sample s.d. / sqrt(seeds): |0.4 - 0.2| / sqrt(2) / sqrt(2) = 0.1.
    assert mala["se"].tolist() == pytest.approx([0.1, 0.01])
    assert not mala["neural"].any()
    assert _point(points, "donut", "mala", "amortised").empty  # nothing to amortise
    # KL-NS: no target evaluation while sampling; amortised = 0 + (mean train NFE 2,000 +
    # mean HVPs 1,000) / 10,000 = 0.3; quality the mean over seeds either way.
    assert AMORTISED_OVER == 10_000
    kl_sampling = _point(points, "donut", "kl_ns", "sampling")
    kl_amortised = _point(points, "donut", "kl_ns", "amortised")
    assert kl_sampling["cost"].tolist() == [0.0]
    assert kl_amortised["cost"].tolist() == pytest.approx([0.0 + (2000 + 1000) / 10_000])
    assert kl_sampling["mean"].tolist() == kl_amortised["mean"].tolist() == pytest.approx([0.15])
    assert kl_sampling["neural"].all() and kl_amortised["neural"].all()
    # PIS, one trained net sampled at 4 and 16 steps: each budget amortises the same training.
    pis = _point(points, "donut", "pis", "amortised")
    assert pis["budget"].tolist() == [4, 16]
    assert pis["cost"].tolist() == pytest.approx([4.6, 16.6])
    assert _point(points, "donut", "pis", "sampling")["cost"].tolist() == pytest.approx([4, 16])
    assert pis["mean"].tolist() == pytest.approx([0.13, 0.09])
    # The floor is no point; it is drawn as a band.
    assert not points["sampler"].eq("reference").any()


def test_seconds_points_are_per_thousand_samples_with_training_spread_like_the_table():
    points = quality_cost_points(_rows(), "seconds")
    # 1,000 x sample seconds / n; training: 1,000 x mean training seconds (20) / 10,000 = 2.
    kl_sampling = _point(points, "donut", "kl_ns", "sampling")["cost"].item()
    kl_amortised = _point(points, "donut", "kl_ns", "amortised")["cost"].item()
    assert kl_sampling == pytest.approx(1000 * 0.002 / N)
    assert kl_amortised == pytest.approx(1000 * 0.002 / N + 1000 * 20.0 / 10_000)
    mala = _point(points, "donut", "mala", "sampling")
    assert mala["cost"].tolist() == pytest.approx([1000 * 0.05 / N, 1000 * 0.5 / N])


def test_floor_is_mean_and_se_over_seeds():
    floors = floor_levels(_rows(), {"donut": METRIC, "funnel": METRIC})
    assert list(floors.index) == ["donut"]
    assert floors.loc["donut", "mean"] == pytest.approx(0.02)
    assert floors.loc["donut", "se"] == pytest.approx(0.01)


def _lines(ax) -> dict[str, object]:
    return {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}


def _assert_xy(line, expected: list[list[float]]) -> None:
    np.testing.assert_allclose(line.get_xydata(), np.asarray(expected, dtype=float),
                               rtol=1e-12, atol=1e-12)


def test_drawn_lines_carry_the_points():
    figure = quality_vs_cost(_data(_rows()))
    donut, funnel = figure.axes[:2]
    assert [donut.get_title(), funnel.get_title()] == ["donut", "funnel"]
    lines = _lines(donut)
    _assert_xy(lines["mala|sampling"], [[11, 0.3], [101, 0.06]])
    sampling, amortised = lines["kl_ns|sampling"], lines["kl_ns|amortised"]
    _assert_xy(sampling, [[0.0, 0.15]])
    _assert_xy(amortised, [[0.3, 0.15]])
    # Hollow at the sampling cost, filled at the amortised cost.
    assert sampling.get_markerfacecolor() == "white"
    color = matplotlib.colors.to_rgb(amortised.get_color())
    assert matplotlib.colors.to_rgb(amortised.get_markerfacecolor()) == pytest.approx(color)
    _assert_xy(lines["pis|amortised"], [[4.6, 0.13], [16.6, 0.09]])
    # The dotted lines join each neural budget's two costs at its quality.
    joins = sorted((line.get_xydata().round(12).tolist() for line in donut.get_lines()
                    if line.get_gid() in ("kl_ns|training", "pis|training")),
                   key=lambda xy: xy[0][0])
    assert joins == [[[0.0, 0.15], [0.3, 0.15]], [[4.0, 0.13], [4.6, 0.13]],
                     [[16.0, 0.09], [16.6, 0.09]]]
    assert all(line.get_linestyle() == ":" for line in donut.get_lines()
               if line.get_gid() in ("kl_ns|training", "pis|training"))
    assert lines["floor"].get_ydata()[0] == pytest.approx(0.02)
    # Zero evaluations stay on the axis: symlog; quality spans 0.02..0.3, more than a decade.
    assert donut.get_xscale() == "symlog" and donut.get_yscale() == "log"
    # funnel: 0.5..0.6 and no floor — a linear quality axis, no floor line.
    assert funnel.get_yscale() == "linear" and "floor" not in _lines(funnel)
    seconds = quality_vs_seconds(_data(_rows()))
    assert seconds.axes[0].get_xscale() == "log"
    _assert_xy(_lines(seconds.axes[0])["kl_ns|amortised"], [[0.01 + 2.0, 0.15]])


def test_each_panel_shows_its_targets_own_metric():
    # "ebm" is donut's cells again, as an image EBM: energy distance NaN (no exact samples),
    # FID against data 100 x donut's values. Its panel must show FID; the others energy distance.
    donut = _rows()[lambda rows: rows["target"].eq("donut")]
    ebm = donut.assign(target="ebm", target_name="ebm", cell_id="ebm-" + donut["cell_id"])
    no_exact = ebm.assign(value=math.nan,
                          reason="not applicable: target 'ebm' does not provide reference")
    rows = pd.concat([_rows(), no_exact, ebm.assign(metric="fid_data", value=100 * ebm["value"])],
                     ignore_index=True)
    points = quality_cost_points(rows, "evaluations")
    assert points.groupby("target")["metric"].agg(set).to_dict() == {
        "donut": {METRIC}, "ebm": {"fid_data"}, "funnel": {METRIC}}
    kl = _point(points, "ebm", "kl_ns", "amortised")
    assert kl["mean"].tolist() == pytest.approx([15.0])  # the mean over seeds, in FID
    assert kl["cost"].tolist() == pytest.approx([0.3])
    floors = floor_levels(rows, {"donut": METRIC, "ebm": "fid_data"})
    assert floors["mean"].to_dict() == pytest.approx({"donut": 0.02, "ebm": 2.0})
    for figure in (quality_vs_cost(_data(rows)), quality_vs_seconds(_data(rows))):
        panels = [ax for ax in figure.axes if ax.get_title()]
        assert [ax.get_title() for ax in panels] == ["donut", "ebm", "funnel"]
        assert [ax.get_ylabel() for ax in panels] == ["energy distance", "fid data",
                                                      "energy distance"]
        ebm_lines = _lines(panels[1])
        assert ebm_lines["mala|sampling"].get_ydata().tolist() == pytest.approx([30.0, 6.0])
        assert ebm_lines["floor"].get_ydata()[0] == pytest.approx(2.0)
    # The table reads the same frame: the EBM's rows in FID, not NaN.
    table = matched_cost_table(rows)
    ebm_row = next(line for line in table.splitlines()
                   if line.startswith("| ebm ") and "| kl_ns " in line and "| sampling " in line)
    assert "| fid_data " in ebm_row and "15 (@1)" in ebm_row


def test_cli_draws_both_figures_into_the_store(tmp_path, capsys):
    store = ResultsStore(tmp_path)
    rows = _rows()
    for cell_id, cell in rows.groupby("cell_id"):
        store.write_cell(cell_id, cell.to_dict("records"))
    assert {"quality_vs_cost", "quality_vs_seconds"} <= set(FIGURES)
    assert main(["plot", str(tmp_path), "--figure", "quality_vs_cost",
                 "quality_vs_seconds"]) == 0
    assert "wrote quality_vs_cost" in capsys.readouterr().out
    for name in ("quality_vs_cost", "quality_vs_seconds"):
        png, pdf = tmp_path / "figures" / f"{name}.png", tmp_path / "figures" / f"{name}.pdf"
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 100 and image[..., :3].std() > 0.01  # not a blank canvas
        assert pdf.read_bytes().startswith(b"%PDF")
    # The table reads the same rows: the figure adds no table and changes none.
    assert "kl_ns" in matched_cost_table(store.load())


def test_stores_without_a_quality_metric_or_cost_columns_are_skipped(tmp_path):
    store = ResultsStore(tmp_path)
    rows = _rows(metric="ksd")
    for cell_id, cell in rows.groupby("cell_id"):
        store.write_cell(cell_id, cell.to_dict("records"))
    results = write_figures(tmp_path, names=["quality_vs_cost", "quality_vs_seconds"])
    assert [result.skipped for result in results] == [
        "no sampler cells with one of the quality metrics energy_distance, fid_data"] * 2
    assert not (tmp_path / "figures").exists()
    with pytest.raises(MissingData, match="train_hvp"):
        quality_vs_cost(_data(_rows().drop(columns="train_hvp")))
    # No timings at all: the evaluation figure draws, the seconds figure says why not.
    untimed = _rows().assign(sample_seconds=math.nan)
    assert quality_vs_cost(_data(untimed)).axes
    with pytest.raises(MissingData, match="finite cost in wall-clock seconds"):
        quality_vs_seconds(_data(untimed))
