"""FID feature networks, the Fréchet distance, class coverage and the image metrics.

The Fréchet distance is checked against closed forms derived independently of the
implementation (which uses eigendecompositions of symmetrised products):

* 2x2: for PSD ``A``, ``B`` the eigenvalues of ``A B`` are real and >= 0, so
  ``tr sqrtm(A B) = sqrt(l_1) + sqrt(l_2) = sqrt(tr(A B) + 2 sqrt(det A det B))``;
* commuting (diagonal) covariances: ``sum_i (sqrt(a_i) - sqrt(b_i))^2``;
* a duplicated feature column: ``(x_1, x_1)`` is a rotation of ``(sqrt(2) x_1, 0)``, and the
  distance is invariant under a common orthogonal map, so duplicating a column equals scaling
  it by ``sqrt(2)`` and adding a constant column — an exact answer for a singular covariance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

import benchmark.fid.reference as reference_module
from benchmark.cli import main
from benchmark.fid.coverage import class_histogram, max_share, total_variation
from benchmark.fid.evaluation import (
    class_coverage,
    fid_between,
    fid_floor,
    fid_to_data,
    outputs,
)
from benchmark.fid.features import (
    FeatureClassifier,
    _random_shift,
    accuracy,
    as_images,
    checkpoint_path,
    load_classifier,
    save_checkpoint,
    train_classifier,
)
from benchmark.fid.frechet import (
    frechet_distance,
    frechet_distance_of_features,
    gaussian_fit,
    psd_sqrt,
)
from benchmark.fid.reference import (
    held_out_images,
    load_reference,
    load_reference_info,
    make_reference,
    run_mala,
    save_reference,
)
from benchmark.metrics.base import MetricContext
from benchmark.metrics.registry import evaluate_metric, supported_metrics
from benchmark.run.runner import evaluate_samples
from targets import make_target
from targets.base import Target, make_generator
from targets.datasets import load_dataset

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("single_thread")


def _closed_form_2x2(mean_1, cov_1, mean_2, cov_2) -> float:
    """``|m1 - m2|^2 + tr A + tr B - 2 sqrt(tr(AB) + 2 sqrt(det A det B))`` in numpy."""
    a, b = np.asarray(cov_1), np.asarray(cov_2)
    trace_sqrt = math.sqrt(np.trace(a @ b) + 2.0 * math.sqrt(np.linalg.det(a) * np.linalg.det(b)))
    return float(np.sum((np.asarray(mean_1) - np.asarray(mean_2)) ** 2)
                 + np.trace(a) + np.trace(b) - 2.0 * trace_sqrt)


# -- the Fréchet distance -----------------------------------------------------------------------
def test_frechet_matches_2x2_closed_form_with_non_commuting_covariances():
    mean_1, mean_2 = torch.tensor([0.3, -1.0], dtype=F64), torch.tensor([1.2, 0.5], dtype=F64)
    cov_1 = torch.tensor([[2.0, 0.9], [0.9, 1.0]], dtype=F64)
    angle = 0.7  # cov_2 = R diag(0.5, 3) R^T with a rotation that does not align the two
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)],
                             [math.sin(angle), math.cos(angle)]], dtype=F64)
    cov_2 = rotation @ torch.diag(torch.tensor([0.5, 3.0], dtype=F64)) @ rotation.T
    assert not torch.allclose(cov_1 @ cov_2, cov_2 @ cov_1)  # genuinely non-commuting
    expected = _closed_form_2x2(mean_1, cov_1, mean_2, cov_2)
    assert frechet_distance(mean_1, cov_1, mean_2, cov_2) == pytest.approx(expected, abs=1e-6)
    assert expected > 1.0  # not a vacuous comparison near 0


def test_frechet_matches_scipy_sqrtm_on_a_well_conditioned_5x5():
    # The textbook route (sqrtm of the non-symmetric product) is fine when both are well
    # conditioned; it must agree there.
    generator = torch.Generator().manual_seed(3)
    a = torch.randn(5, 5, generator=generator, dtype=F64)
    b = torch.randn(5, 5, generator=generator, dtype=F64)
    cov_1, cov_2 = a @ a.T + 0.5 * torch.eye(5, dtype=F64), b @ b.T + 0.1 * torch.eye(5, dtype=F64)
    mean_1, mean_2 = torch.randn(5, generator=generator, dtype=F64), torch.zeros(5, dtype=F64)
    root = scipy.linalg.sqrtm(cov_1.numpy() @ cov_2.numpy()).real
    expected = float((mean_1 - mean_2).square().sum() + cov_1.trace() + cov_2.trace()
                     - 2.0 * np.trace(root))
    assert frechet_distance(mean_1, cov_1, mean_2, cov_2) == pytest.approx(expected, abs=1e-6)


def test_frechet_of_commuting_covariances_is_the_sum_of_root_differences():
    a, b = torch.tensor([4.0, 1.0, 0.25], dtype=F64), torch.tensor([1.0, 9.0, 0.0], dtype=F64)
    zero = torch.zeros(3, dtype=F64)
    expected = float((a.sqrt() - b.sqrt()).square().sum())  # (2-1)^2 + (1-3)^2 + 0.5^2
    assert frechet_distance(zero, torch.diag(a), zero, torch.diag(b)) == pytest.approx(
        expected, abs=1e-12)
    assert expected == pytest.approx(5.25)


def test_psd_sqrt_squares_back_and_clips_round_off_negatives():
    generator = torch.Generator().manual_seed(0)
    factor = torch.randn(6, 3, generator=generator, dtype=F64)
    singular = factor @ factor.T  # rank 3: three eigenvalues are 0 up to round-off (some < 0)
    root = psd_sqrt(singular)
    assert torch.isfinite(root).all()
    assert torch.allclose(root, root.T)
    assert torch.allclose(root @ root, singular, atol=1e-10)


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(200, 8, generator=generator, dtype=F64) @ torch.randn(
        8, 8, generator=generator, dtype=F64)
    y = torch.rand(150, 8, generator=generator, dtype=F64) * 3.0
    assert frechet_distance_of_features(x, x) == pytest.approx(0.0, abs=1e-9)
    forward, backward = frechet_distance_of_features(x, y), frechet_distance_of_features(y, x)
    assert forward > 1.0
    assert forward == pytest.approx(backward, rel=1e-10)


@pytest.mark.parametrize("n", [5, 20])
def test_fid_with_fewer_samples_than_features_is_finite_real_and_zero_on_itself(n):
    # n < d: both covariances are singular (rank n - 1), where sqrtm of the product can go
    # complex or NaN. The symmetric route stays real, finite and >= 0.
    generator = torch.Generator().manual_seed(n)
    x = torch.randn(n, 32, generator=generator, dtype=F64)
    y = torch.randn(n, 32, generator=generator, dtype=F64) + 0.5
    value = frechet_distance_of_features(x, y)
    assert math.isfinite(value) and value > 0.0
    assert frechet_distance_of_features(x, x) == pytest.approx(0.0, abs=1e-9)
    # The distance to a shifted copy of itself is exactly the squared shift.
    assert frechet_distance_of_features(x, x + 0.5) == pytest.approx(32 * 0.25, abs=1e-8)


def test_duplicated_feature_columns_give_the_rotated_exact_answer():
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(300, 3, generator=generator, dtype=F64) @ torch.tensor(
        [[1.0, 0.3, 0.0], [0.0, 1.0, 0.5], [0.2, 0.0, 2.0]], dtype=F64)
    y = 0.7 * torch.randn(250, 3, generator=generator, dtype=F64) + torch.tensor([0.5, 0, 1])

    def duplicated(z):  # (z0, z0, z1, z2): a singular covariance
        return torch.cat([z[:, :1], z], dim=1)

    def rotated(z):  # (sqrt(2) z0, 0, z1, z2)
        return torch.cat([math.sqrt(2.0) * z[:, :1], torch.zeros_like(z[:, :1]), z[:, 1:]], 1)

    expected = frechet_distance_of_features(rotated(x), rotated(y))
    assert frechet_distance_of_features(duplicated(x), duplicated(y)) == pytest.approx(
        expected, rel=1e-9)
    assert expected > frechet_distance_of_features(x, y)  # the duplicate counts twice


def test_gaussian_fit_is_numpys_mean_and_unbiased_cov():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(4), dtype=F64)
    mean, cov = gaussian_fit(x)
    assert np.allclose(mean.numpy(), x.numpy().mean(0))
    assert np.allclose(cov.numpy(), np.cov(x.numpy(), rowvar=False))


def test_bad_shapes_raise_one_line_errors():
    with pytest.raises(ValueError, match="same d"):
        frechet_distance_of_features(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="n >= 2"):
        gaussian_fit(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(2))


# -- class coverage -----------------------------------------------------------------------------
def test_class_histogram_total_variation_and_max_share():
    p = class_histogram(torch.tensor([0, 0, 0, 1]), 3)
    r = class_histogram(torch.tensor([0, 1, 2, 2]), 3)
    assert p.tolist() == [0.75, 0.25, 0.0]
    assert total_variation(p, r) == pytest.approx(0.5 * (0.5 + 0.0 + 0.5))
    assert total_variation(p, p) == 0.0
    assert max_share(p) == 0.75
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        class_histogram(torch.tensor([0, 3]), 3)


# -- the feature classifiers ----------------------------------------------------------------------
def test_classifier_shapes_and_bad_input_shape():
    model = FeatureClassifier((1, 8, 8), 10, (4, 8), 6)
    images = torch.rand(5, 1, 8, 8)
    assert model.features(images).shape == (5, 6) and model(images).shape == (5, 10)
    assert (model.features(images) > -1).all()  # ELU features
    with pytest.raises(ValueError, match="square images of side 8"):
        FeatureClassifier((1, 16, 16), 10, (4, 8), 6)
    with pytest.raises(ValueError, match=r"\(n, 64\)"):
        as_images(torch.zeros(3, 65), (1, 8, 8))


def test_random_shift_translates_with_zero_fill():
    images = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4) + 1.0
    generator = torch.Generator().manual_seed(0)
    shifted = _random_shift(images, 1, generator)
    offsets = torch.randint(0, 3, (2, 2), generator=torch.Generator().manual_seed(0)) - 1
    for image, moved, (down, right) in zip(images, shifted, offsets.tolist(), strict=True):
        padded = torch.nn.functional.pad(image, (1, 1, 1, 1))
        expected = padded[:, 1 + down:5 + down, 1 + right:5 + right]
        assert torch.equal(moved, expected)
    assert torch.equal(_random_shift(images, 0, generator), images)


@pytest.mark.parametrize("dataset", ["digits", "mnist5k"])
def test_shipped_checkpoint_loads_weights_only_and_reproduces_its_test_accuracy(dataset):
    path = checkpoint_path(dataset)
    assert path.stat().st_size < 1024**2  # small enough to ship
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    data = load_dataset(dataset)
    model = load_classifier(dataset)
    assert checkpoint["dataset"] == dataset and "train-classifier" in checkpoint["command"]
    assert checkpoint["test_accuracy"] == pytest.approx(accuracy(model, data.x_test, data.y_test),
                                                        abs=1e-12)
    assert checkpoint["test_accuracy"] > 0.95
    # Penultimate width well below the evaluation n (the test split), so covariances of n
    # features are estimated from many more points than dimensions.
    assert 5 * checkpoint["config"]["feature_dim"] <= len(data.x_test)
    assert all(floor["mean"] > 0 for floor in checkpoint["fid_floor"])


def test_training_one_epoch_and_the_cli_error_paths(tmp_path, capsys):
    checkpoint = train_classifier("digits", seed=1, num_epochs=1)
    assert checkpoint["num_epochs"] == 1 and 0.0 <= checkpoint["test_accuracy"] <= 1.0
    save_checkpoint(checkpoint, checkpoint_path("digits", tmp_path))
    reloaded = load_classifier("digits", str(tmp_path))
    assert torch.equal(reloaded.head.weight, checkpoint["state"]["head.weight"])
    with pytest.raises(ValueError, match="valid datasets: digits, mnist5k"):
        train_classifier("no_such_dataset")
    assert main(["train-classifier", "--dataset", "no_such_dataset"]) == 2
    assert main(["ebm-reference", "--target", "mog2", "--steps", "1"]) == 2
    assert "not an image energy" in capsys.readouterr().err


# -- FID and coverage of image samples ----------------------------------------------------------
def test_fid_and_coverage_of_the_test_split_against_itself_are_zero():
    data = load_dataset("digits")
    flat = data.x_test.reshape(len(data.x_test), -1)
    assert fid_to_data(flat, "digits") == pytest.approx(0.0, abs=1e-9)
    tv, share = class_coverage(flat, "digits")
    assert tv == 0.0
    assert share == pytest.approx(float(torch.bincount(outputs(flat, "digits")[1]).max()) / 359)


def test_fid_floor_is_far_below_noise_and_collapse_shows_in_coverage():
    data = load_dataset("digits")
    floor, spread = fid_floor("digits", 359, num_repeats=3)
    assert 0.0 < floor and spread > 0.0
    noise = torch.rand(359, 64, generator=torch.Generator().manual_seed(0))
    assert fid_to_data(noise, "digits") > 10 * floor
    one_image = data.x_test[:1].reshape(1, -1).repeat(359, 1)  # mode collapse
    tv, share = class_coverage(one_image, "digits")
    assert share == 1.0 and tv > 0.85
    # Out-of-range pixels are clamped like a saved image would be.
    assert fid_to_data(2.0 * noise - 0.5, "digits") == pytest.approx(
        fid_to_data((2.0 * noise - 0.5).clamp(0, 1), "digits"), abs=1e-9)
    with pytest.raises(ValueError, match="n must be in"):
        fid_floor("digits", 5000)


# -- the registered metrics and the EBM reference ----------------------------------------------
class ImageGaussian(Target):
    """A stand-in image energy on digits' 8x8 pixels: ``N(0.3, 0.2^2 I)``, ``provides`` images
    (and an MCMC reference, like the EBMs).

    It has what the image metrics and the reference need (``dataset``, ``info["path"]`` of its
    "checkpoint") without training an energy.
    """

    name = "test_image_gaussian"

    def __init__(self, checkpoint) -> None:
        super().__init__(64)
        self.dataset = "digits"
        self.info = {"path": str(checkpoint)}

    @property
    def provides(self):
        return frozenset({"score", "images", "mcmc_reference"})

    def log_prob(self, x):
        return -0.5 * ((x - 0.3) / 0.2).square().sum(dim=1)


@pytest.fixture
def image_target(tmp_path, monkeypatch):
    checkpoint = tmp_path / "energy.pt"
    checkpoint.write_bytes(b"stand-in weights")
    monkeypatch.setattr(reference_module, "REFERENCE_DIR", tmp_path / "references")
    return ImageGaussian(checkpoint)


def test_image_metrics_are_registered_supported_and_match_the_functions(image_target):
    names = ["fid_data", "fid_ref", "class_tv", "class_max_share"]
    assert all(name in supported_metrics(image_target) for name in names)
    assert not set(names) & set(supported_metrics(make_target("mog2")))
    x = load_dataset("digits").x_train[:300].reshape(300, -1)
    context = MetricContext(reference=None, generator=make_generator(0))
    assert evaluate_metric("fid_data", x, image_target, context) == pytest.approx(
        fid_to_data(x, "digits"), rel=1e-12)
    tv, share = class_coverage(x, "digits")
    assert evaluate_metric("class_tv", x, image_target, context) == tv
    assert evaluate_metric("class_max_share", x, image_target, context) == share
    # Without a stored reference, fid_ref fails with the command that makes one (a row
    # reason, not a crash of the run).
    status, rows = evaluate_samples(x, image_target, names, n=300, reference_seed=0,
                                    target_label="img")
    reasons = {row["metric"]: row["reason"] for row in rows}
    assert status == "ok" and reasons["fid_data"] == ""
    assert "ebm-reference --target test_image_gaussian" in reasons["fid_ref"]


def test_reference_runs_are_stored_compactly_and_checked_against_the_energy(image_target):
    samples, info = make_reference(image_target, num_steps=40, n=30, seed=0, step_size=0.01)
    assert set(samples) == {"from_data", "from_noise"}
    assert all(x.shape == (30, 64) for x in samples.values())
    for run in info["runs"].values():
        assert 0.0 < run["acceptance_rate"] < 1.0 and run["step_size"] > 0.0
        assert run["non_finite"] == 0
    assert info["num_steps"] == 40 and info["fid_between_runs"] > 0.0
    directory = save_reference(samples, info, reference_module.reference_directory(
        image_target.name))
    stored = torch.load(directory / "samples.pt", weights_only=True)
    assert stored["from_data"].dtype == torch.float16
    assert json.loads((directory / "reference.json").read_text())["n"] == 30
    # fid_ref compares with the from-data run; the stored floor is the FID between the runs.
    reference = load_reference(image_target)
    assert torch.equal(reference, samples["from_data"])
    context = MetricContext(reference=None, generator=make_generator(0))
    assert evaluate_metric("fid_ref", samples["from_noise"], image_target, context) == \
        pytest.approx(info["fid_between_runs"], rel=1e-9)
    Path(image_target.info["path"]).write_bytes(b"retrained weights")
    with pytest.raises(ValueError, match="another energy checkpoint"):
        load_reference(image_target)


def test_mala_reference_run_reaches_a_known_gaussian_from_data_and_noise(image_target):
    # N(0.3, 0.2^2) per pixel: after 150 steps both starts must agree with the target's
    # moments. Tolerances: the mean over 64 * 200 pixel draws has s.e. 0.2 / sqrt(12800)
    # ~ 0.0018 if chains were independent per pixel, so 0.02 is > 10 s.e. of slack for
    # residual autocorrelation and step-size bias (MALA is exact after warm-up).
    for label, x0 in (("data", held_out_images(image_target, 200, 0)),
                      ("noise", torch.rand(200, 64, generator=torch.Generator().manual_seed(1)))):
        run = run_mala(image_target, x0, 150, make_generator(2), step_size=0.01)
        assert float(run.samples.mean()) == pytest.approx(0.3, abs=0.02), label
        assert float(run.samples.std()) == pytest.approx(0.2, abs=0.02), label
        assert 0.3 < run.acceptance_rate < 0.9, label


@pytest.mark.parametrize("target_name", sorted(
    path.name for path in reference_module.REFERENCE_DIR.glob("*") if path.is_dir()))
def test_shipped_reference_matches_its_energy_and_reproduces_its_floor(target_name):
    # Fails when the energy checkpoint is retrained without rerunning ebm-reference.
    target = make_target(target_name)
    info = load_reference_info(target_name)
    from_data = load_reference(target, run="from_data")
    from_noise = load_reference(target, run="from_noise")
    assert from_data.shape == from_noise.shape == (info["n"], target.dim)
    assert (reference_module.REFERENCE_DIR / target_name / "samples.pt").stat().st_size < 2.5e6
    assert "ebm-reference" in info["command"] and info["num_steps"] >= 1
    # Recomputed here on the CPU. The features are float32: another CPU's vector width sums
    # each convolution in another order, moving every feature by a few ulps, and FID (smooth
    # in the features' means and covariances) by a relative few x eps32 (8.6e-9 measured
    # between an AVX-512 and an AVX2 machine); 100 eps32 = 1.2e-5 leaves room on any x86 CPU.
    # A reference made on a GPU was evaluated there (cuDNN vs CPU): ~1e-4 relative.
    rel = 1e-3 if "--device cuda" in info["command"] else 100 * torch.finfo(torch.float32).eps
    assert fid_between(from_data, from_noise, target.dataset) == pytest.approx(
        info["fid_between_runs"], rel=rel)
    assert fid_to_data(from_data, target.dataset) == pytest.approx(
        info["runs"]["from_data"]["fid_to_test_data"], rel=rel)


def test_floor_rows_of_an_image_energy_come_from_the_metrics_own_floors(tmp_path):
    # EBM targets have no exact sampler; their floor row is each metric's Metric.floor:
    # n training images for fid_data / class coverage, the two reference runs for fid_ref.
    import json

    from benchmark.fid.reference import reference_directory
    from benchmark.plan.cells import plan_cells
    from benchmark.plan.matrix import parse_matrix
    from benchmark.run.runner import run_cell

    matrix = parse_matrix({
        "name": "floor-test", "seeds": [0], "n": 60, "device": "cpu", "dtype": "float32",
        "metrics": ["fid_data", "fid_ref", "class_tv", "class_max_share"],
        "targets": ["ebm_digits"], "samplers": [{"name": "mala", "budgets": [1]}]})
    floor_cell = next(cell for cell in plan_cells(matrix) if cell.sampler is None)
    rows = {row["metric"]: row for row in run_cell(floor_cell, tmp_path).rows}
    stored = json.loads((reference_directory("ebm_digits") / "reference.json").read_text())
    assert rows["fid_ref"]["value"] == pytest.approx(stored["fid_between_runs"], rel=1e-6)
    assert 0 < rows["fid_data"]["value"] < 40  # real images: far below any sampler's FID
    assert 0 <= rows["class_tv"]["value"] < 0.5 and 0.1 <= rows["class_max_share"]["value"] < 0.5
    assert all(row["status"] == "ok" and row["reason"] == "" for row in rows.values())
