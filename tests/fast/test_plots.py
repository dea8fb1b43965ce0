"""Figures from a tiny synthetic results store: every figure renders to non-empty PNG + PDF,
figures lacking data are skipped with a reason, the CLI wires it, and output is deterministic.

The store holds a donut target with a floor, SVGD at 10/100/200, DFT-NS full/partial at one step
(with training histories) and a 2 × 2 DFT-NS σ × K_φ ablation; stored samples only for seed 0.
"""

from __future__ import annotations

import itertools
import json
import math

import matplotlib

matplotlib.use("Agg")  # no display; figures are built with the object-oriented API anyway

import matplotlib.image
import numpy as np
import pytest
import seaborn as sns
import torch

from benchmark.cli import main
from benchmark.report.plots import FIGURES, _ablation_cells, write_figures
from benchmark.report.plots_2d import dft_label, sample_window
from benchmark.report.plots_common import MissingData, PlotData, sampler_colors
from benchmark.report.plots_scaling import scaling_points
from benchmark.schema import COLUMNS
from benchmark.store import ResultsStore
from targets import make_target
from targets.base import make_generator

SEEDS = (0, 1)
NUM_SAMPLES = 200


def _row(cell_id: str, sampler: str, budget: int, seed: int, value: float, params: dict,
         train_seconds: float = math.nan, sampler_name: str | None = None) -> dict:
    row = {column: math.nan for column in COLUMNS}
    row.update(matrix="tiny", cell_id=cell_id, target="donut", target_name="donut",
               target_params="{}", sampler=sampler, sampler_name=sampler_name or sampler,
               params=json.dumps(params, sort_keys=True), budget=budget, seed=seed,
               cell_seed=seed, n=NUM_SAMPLES, status="ok", metric="ksd", value=value, reason="",
               nfe=float(budget), train_seconds=train_seconds,
               sample_seconds=0.01 * (budget + 1), device="cpu", num_threads=1, worker="test",
               torch_version="x", package_version="x", git_commit="x", timestamp="x")
    return row


def _save_samples(store: ResultsStore, cell_id: str, samples: torch.Tensor) -> None:
    (store.root / "samples").mkdir(parents=True, exist_ok=True)
    torch.save({"samples": samples.to(torch.float32)}, store.root / "samples" / f"{cell_id}.pt")


def build_store(root, with_samples: bool = True, with_history: bool = True) -> ResultsStore:
    store = ResultsStore(root)
    donut = make_target("donut", dtype=torch.float64)
    generator = make_generator(0)
    dft = {"gradient": "full", "sigma": 0.05, "score_steps": 2}
    cells = [("reference", "reference", 0, {}, math.nan)]
    cells += [("svgd", "svgd", steps, {"step_size": 0.05}, math.nan) for steps in (10, 100, 200)]
    cells += [("dft_ns_full", "dft_ns", 1, dft, 60.0),
              ("dft_ns_partial", "dft_ns", 1, {**dft, "gradient": "partial"}, 55.0)]
    cells += [(f"dft_s{sigma}_k{steps}", "dft_ns", 1, {**dft, "sigma": sigma,
                                                        "score_steps": steps}, 50.0)
              for sigma in (0.02, 0.1) for steps in (1, 5)]
    for index, (label, name, budget, params, train_seconds) in enumerate(cells):
        for seed in SEEDS:
            cell_id = f"c{index}s{seed}"
            value = 0.1 * (index + 1) * (1 + 0.1 * seed)
            store.write_cell(cell_id, [_row(cell_id, label, budget, seed, value, params,
                                            train_seconds, name)])
            if with_samples and seed == 0 and (label == "reference" or budget > 0):
                # Exact donut samples blurred more for fewer steps: a plausible picture.
                blur = 1.0 / max(budget, 1) ** 0.5
                samples = donut.sample(NUM_SAMPLES, generator)
                _save_samples(store, cell_id, samples + blur * torch.randn(
                    samples.shape, generator=generator, dtype=samples.dtype))
    if with_history:
        for label in ("dft_ns_full", "dft_ns_partial"):
            for seed in SEEDS:
                key = f"{label}-{seed}"
                store.write_history(key, [
                    {"train_key": key, "target": "donut", "sampler": label, "params": "{}",
                     "seed": seed, "iteration": iteration, "metric": metric,
                     "value": 10.0 / iteration * (1 + 0.2 * seed)}
                    for iteration in (10, 20, 30, 40) for metric in ("ksd_eval", "dsm_loss")])
    return store


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    build_store(root)
    return root, {result.name: result for result in write_figures(root)}


def test_every_figure_renders_to_non_empty_png_and_pdf(rendered):
    root, results = rendered
    assert list(results) == list(FIGURES)
    # rosenbrock has no cells in the tiny store: skipped, everything else written.
    assert results["fig1_rosenbrock"].skipped == "no cells for target 'rosenbrock'"
    written = [name for name, result in results.items() if not result.skipped]
    assert written == ["fig1_donut", "training_ksd", "ablation_sigma_kphi", "frontier"]
    for name in written:
        png, pdf = results[name].paths
        assert png == root / "figures" / f"{name}.png" and pdf.suffix == ".pdf"
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0.01  # not a blank canvas
        assert pdf.stat().st_size > 1000 and pdf.read_bytes().startswith(b"%PDF")
    assert not list((root / "figures").glob(".*.tmp"))  # temporary files renamed away


def test_figures_are_deterministic(rendered, tmp_path):
    root, results = rendered
    again = write_figures(root, tmp_path, ["frontier", "ablation_sigma_kphi"])
    for result in again:
        for first, second in zip(results[result.name].paths, result.paths, strict=True):
            assert first.read_bytes() == second.read_bytes()


def test_missing_data_is_skipped_with_a_reason(tmp_path):
    build_store(tmp_path, with_samples=False, with_history=False)
    results = {result.name: result for result in write_figures(tmp_path, tmp_path / "out")}
    assert "no stored samples" in results["fig1_donut"].skipped
    assert "ksd_eval" in results["training_ksd"].skipped
    assert not results["frontier"].skipped and not results["ablation_sigma_kphi"].skipped


def test_ablation_needs_varying_sigma_and_score_steps(tmp_path):
    store = ResultsStore(tmp_path)
    params = {"sigma": 0.05, "score_steps": 2}
    for seed in SEEDS:
        store.write_cell(f"a{seed}", [_row(f"a{seed}", "dft_ns_full", 1, seed, 0.5, params,
                                           10.0, "dft_ns")])
    results = write_figures(tmp_path, names=["ablation_sigma_kphi"])
    assert results[0].skipped == "DFT-NS cells do not vary sigma and score_steps"


def test_ablation_reads_sigma_fraction_and_divides_energy_distance_by_its_floor(tmp_path):
    # The defaults give σ as a fraction of the target's length scale (sigma = None): the σ axis
    # is that fraction. Energy distance (ground truth) is shown relative to its floor.
    store = ResultsStore(tmp_path)
    floor_ed = 0.01
    cells = [("reference", "reference", 0, {}, {"energy_distance": floor_ed, "ksd": 0.05})]
    for fraction in (0.2, 0.4):
        for steps in (1, 2):
            params = {"sigma": None, "sigma_fraction": fraction, "score_steps": steps}
            cells.append((f"dft_f{fraction}_k{steps}", "dft_ns", 1, params,
                          {"energy_distance": fraction * steps, "ksd": 1.0}))
    for index, (label, name, budget, params, values) in enumerate(cells):
        for seed in SEEDS:
            cell_id = f"c{index}s{seed}"
            rows = []
            for metric, value in values.items():
                row = _row(cell_id, label, budget, seed, value, params, 10.0, name)
                rows.append({**row, "metric": metric})
            store.write_cell(cell_id, rows)
    data = PlotData.load(tmp_path)
    cells_frame = _ablation_cells(data.rows)
    assert set(cells_frame["sigma_axis"]) == {"σ / ℓ"}
    assert set(cells_frame["variant"]) == {""}  # nothing else varies
    ed = cells_frame[cells_frame["metric"].eq("energy_distance")].set_index(
        ["sigma", "score_steps"])["mean"]
    for (fraction, steps), ratio in ed.items():
        # Stored as text (round-trips float64 exactly), one mean of equal values, one division.
        assert ratio == pytest.approx(fraction * steps / floor_ed, rel=4 * np.finfo(float).eps)
    assert len(ed) == 4 and cells_frame["metric"].eq("ksd").sum() == 4
    result = write_figures(tmp_path, names=["ablation_sigma_kphi"])[0]
    assert not result.skipped and result.paths[0].stat().st_size > 1000


def test_samples_file_must_hold_a_samples_tensor(tmp_path):
    (tmp_path / "samples").mkdir()
    torch.save({"x": torch.zeros(3, 2)}, tmp_path / "samples" / "bad.pt")
    data = PlotData.load(tmp_path)
    with pytest.raises(MissingData, match="expected a dict"):
        data.samples("bad")
    with pytest.raises(MissingData, match="no stored samples"):
        data.samples("absent")


def test_sampler_colors_fixed_per_label_set():
    labels = ["svgd", "dft_ns_partial", "reference", "mala", "dft_ns_full"]
    colors = sampler_colors(labels)
    assert colors == sampler_colors(reversed(labels))
    assert colors["reference"] == (0.0, 0.0, 0.0)
    assert len(set(colors.values())) == len(labels)


def test_up_to_twenty_labels_take_tab10_then_its_light_partners():
    labels = [f"s{index:02d}" for index in range(12)]
    colors = [sampler_colors(labels)[label] for label in labels]
    assert colors[:10] == list(sns.color_palette("tab10", 10))
    pairs = sns.color_palette("tab20", 20)
    assert colors[10:] == [pairs[1], pairs[3]]


def test_many_labels_get_distinct_hues_far_apart_for_neighbours():
    # Beyond twenty labels the palette is husl hues; neighbours in natural order (variants of
    # one sampler) must not get neighbouring hues: each step moves >= 2 of the spaced hues.
    labels = [f"s{index:02d}" for index in range(24)]
    colors = sampler_colors(labels)
    hues = sns.color_palette("husl", len(labels))
    positions = [hues.index(colors[label]) for label in labels]
    assert sorted(positions) == list(range(len(labels)))  # every hue used once
    for first, second in itertools.pairwise(positions):
        distance = min((first - second) % len(labels), (second - first) % len(labels))
        assert distance >= 2


def test_fig1_selection_and_window():
    assert dft_label(["dft_ns_partial", "dft_ns_full", "svgd"]) == "dft_ns_full"
    assert dft_label(["dft_ns_partial", "dft_ns_b"]) == "dft_ns_b"
    assert dft_label(["svgd"]) is None
    reference = np.random.default_rng(0).uniform(0.0, 1.0, size=(10_000, 2))
    window = sample_window(reference)
    # 0.5 % / 99.5 % quantiles of U(0, 1) ± 10 % of their width.
    np.testing.assert_allclose(window, [[-0.094, 1.094]] * 2, atol=0.01)


def test_cli_plot(rendered, tmp_path, capsys):
    root, _ = rendered
    assert main(["plot", str(root), "--out", str(tmp_path), "--figure", "frontier"]) == 0
    assert "wrote frontier" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frontier.pdf", "frontier.png"]
    assert main(["plot", str(root), "--figure", "nonsense"]) == 2
    assert "unknown figure(s) nonsense" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "empty")]) == 2


def test_scaling_figure_reads_the_dimension_from_target_params(tmp_path):
    store = ResultsStore(tmp_path)
    for family in ("gaussian_d", "funnel_d"):
        for dim in (10, 50, 100):
            for label, budget, train in (("mala", 100, math.nan), ("dft_ns_full", 1, 30.0),
                                         ("reference", 0, math.nan)):
                for seed in SEEDS:
                    cell_id = f"{family}{dim}-{label}-{seed}"
                    row = _row(cell_id, label, budget, seed, 0.01 * dim * (1 + seed), {}, train)
                    row.update(target=f"{family}{dim}", target_name=family,
                               target_params=json.dumps({"dim": dim}))
                    store.write_cell(cell_id, [row])
    points = scaling_points(PlotData.load(tmp_path).rows)
    dft = points[points["family"].eq("funnel_d") & points["sampler"].eq("dft_ns_full")]
    assert dft.sort_values("dim")["dim"].tolist() == [10.0, 50.0, 100.0]
    # KSD mean over seeds (0.01 d and 0.02 d); seconds = sampling (0.02) + training (30).
    assert dft.sort_values("dim")["mean"].tolist() == pytest.approx([0.15, 0.75, 1.5])
    assert dft["seconds"].tolist() == pytest.approx([30.02] * 3)
    assert points.loc[points["sampler"].eq("reference"), "seconds"].isna().all()
    (result,) = write_figures(tmp_path, names=["scaling"])
    assert not result.skipped
    image = matplotlib.image.imread(result.paths[0])
    assert image.shape[0] > 100 and image[..., :3].std() > 0.01


def test_scaling_figure_needs_targets_with_a_dimension(tmp_path):
    with pytest.raises(MissingData, match="'dim' parameter"):
        scaling_points(PlotData.load(build_store(tmp_path, False, False).root).rows)


def test_scaling_figure_skips_a_store_with_one_dimension_per_family(tmp_path):
    # Like the standard store: gaussian_d at d = 50 and funnel_d at d = 10, no trend in either.
    store = ResultsStore(tmp_path)
    for family, dim in (("gaussian_d", 50), ("funnel_d", 10)):
        for seed in SEEDS:
            cell_id = f"{family}{dim}-mala-{seed}"
            row = _row(cell_id, "mala", 100, seed, 0.1 * (1 + seed), {}, math.nan)
            row.update(target=f"{family}{dim}", target_name=family,
                       target_params=json.dumps({"dim": dim}))
            store.write_cell(cell_id, [row])
    (result,) = write_figures(tmp_path, names=["scaling"])
    assert result.skipped == "scaling needs a target family at two or more dimensions"


def test_time_to_quality_leaves_out_a_target_without_finite_quality(tmp_path):
    """A target whose cells carry a quality metric only as NaN (as an image EBM's energy
    distance does) and no other gets no panel, instead of an empty log-scaled one that cannot
    render."""
    from benchmark.report.plots_time_to_quality import time_to_quality_figure

    store = ResultsStore(tmp_path)
    for target, value in (("donut", 0.1), ("ebm", math.nan)):
        for seed in SEEDS:
            cell_id = f"{target}{seed}"
            row = _row(cell_id, "svgd", 10, seed, value, {"step_size": 0.05})
            row.update(target=target, target_name=target, metric="energy_distance")
            store.write_cell(cell_id, [row])
    figure = time_to_quality_figure(PlotData.load(tmp_path))
    assert [ax.get_title() for ax in figure.axes] == ["donut"]
    (result,) = write_figures(tmp_path, names=["time_to_quality"])
    assert not result.skipped and result.paths


def test_time_to_quality_panels_show_each_targets_own_metric(tmp_path):
    """``donut`` has exact samples (energy distance, and an FID that must not be chosen);
    ``ebm`` has NaN energy distance and FID against data. Each gets a panel in its own metric,
    with the training curve of that metric's ``<metric>_eval`` history."""
    from benchmark.report.plots_time_to_quality import time_to_quality_figure

    store = ResultsStore(tmp_path)
    not_applicable = "not applicable: target 'ebm' does not provide reference"
    # (target, sampler, budget, train seconds, {metric: per-seed values})
    cells = [("donut", "svgd", 10, math.nan, {"energy_distance": (0.1, 0.12),
                                              "fid_data": (5.0, 5.0)}),
             ("donut", "dft_ns", 1, 60.0, {"energy_distance": (0.2, 0.2),
                                           "fid_data": (5.0, 5.0)}),
             ("donut", "reference", 0, math.nan, {"energy_distance": (0.01, 0.01)}),
             ("ebm", "svgd", 10, math.nan, {"energy_distance": (math.nan, math.nan),
                                            "fid_data": (30.0, 34.0)}),
             ("ebm", "dft_ns", 1, 60.0, {"energy_distance": (math.nan, math.nan),
                                         "fid_data": (50.0, 50.0)}),
             ("ebm", "reference", 0, math.nan, {"energy_distance": (math.nan, math.nan),
                                                "fid_data": (4.0, 4.0)})]
    for target, sampler, budget, train_seconds, metrics in cells:
        for seed in SEEDS:
            cell_id = f"{target}-{sampler}-{seed}"
            rows = []
            for metric, values in metrics.items():
                row = _row(cell_id, sampler, budget, seed, values[seed], {}, train_seconds)
                row.update(target=target, target_name=target, metric=metric,
                           reason=not_applicable if math.isnan(values[seed]) else "")
                rows.append(row)
            store.write_cell(cell_id, rows)
    # Training curves: each target logs both metrics; only its own may be drawn.
    curves = {"donut": {"energy_distance_eval": (1.0, 0.5), "fid_data_eval": (999.0, 999.0)},
              "ebm": {"energy_distance_eval": (math.nan, math.nan),
                      "fid_data_eval": (200.0, 100.0)}}
    for target, logged in curves.items():
        for seed in SEEDS:
            key = f"{target}-dft_ns-{seed}"
            history = [{"train_key": key, "target": target, "sampler": "dft_ns", "params": "{}",
                        "seed": seed, "iteration": iteration, "metric": "train_seconds",
                        "value": float(iteration)} for iteration in (10, 20)]
            history += [{"train_key": key, "target": target, "sampler": "dft_ns",
                         "params": "{}", "seed": seed, "iteration": iteration,
                         "metric": metric, "value": values[index]}
                        for metric, values in logged.items()
                        for index, iteration in enumerate((10, 20))]
            store.write_history(key, history)
    figure = time_to_quality_figure(PlotData.load(tmp_path))
    assert [ax.get_title() for ax in figure.axes] == ["donut", "ebm"]
    assert [ax.get_ylabel() for ax in figure.axes] == ["energy distance", "fid data"]
    donut, ebm = ({line.get_label(): line for line in ax.get_lines()} for ax in figure.axes)
    np.testing.assert_allclose(donut["dft_ns"].get_ydata(), [1.0, 0.5])
    np.testing.assert_allclose(donut["svgd"].get_ydata(), [0.11])
    np.testing.assert_allclose(donut["reference floor"].get_ydata(), [0.01, 0.01])
    np.testing.assert_allclose(ebm["dft_ns"].get_xydata(), [[10.0, 200.0], [20.0, 100.0]])
    np.testing.assert_allclose(ebm["svgd"].get_ydata(), [32.0])
    np.testing.assert_allclose(ebm["reference floor"].get_ydata(), [4.0, 4.0])
    assert all(ax.get_yscale() == "log" for ax in figure.axes)
    (result,) = write_figures(tmp_path, names=["time_to_quality"])
    assert not result.skipped and result.paths

