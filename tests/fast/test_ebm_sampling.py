"""Samplers on image EBMs: image networks, the MDSM schedule, the final denoising step, Table 3.

Runner-level checks use a tiny quadratic "image" energy on 4×4 pixels (defined here, named by
import path ``test_ebm_sampling:ToyImageEnergy``) so every test runs in well under a second;
the real digits energy is exercised by the golden test ``tests/golden/test_ebm_golden.py``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from plugin_matrix import PLUGIN_DIR, parse_matrix
from torch import Tensor

from benchmark.plan.cells import plan_cells, resolved_params
from benchmark.report.plots_ebm import dataset_panel, mosaic
from benchmark.report.summary import SUMMARY_LAYOUTS, derived_costs, summary_table
from benchmark.run.runner import run_cell
from benchmark.schema import MatrixError
from samplers import SAMPLERS
from samplers.annealed import AnnealedLangevin, segment_lengths, temperature_schedule
from samplers.neural import DFTNS, DFTParams
from samplers.neural.networks import ConvGenerator, ConvScoreNet
from targets.base import AnalyticScoreTarget, make_generator
from targets.counting import CountingTarget


class ToyImageEnergy(AnalyticScoreTarget):
    """``E(x) = ||x − 0.5||² / 2`` on 4×4 one-channel images: score ``0.5 − x``."""

    name = "toy_image_energy"
    description = "test-only quadratic energy on 4x4 images"
    image_shape = (1, 4, 4)
    denoise_sigma = 0.1

    def __init__(self, device="cpu", dtype=torch.float32) -> None:
        super().__init__(16, device, dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        return -0.5 * (x - 0.5).square().sum(-1)

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.log_prob(x), 0.5 - x

    def initial_positions(self, n: int, generator: torch.Generator) -> Tensor:
        return 0.5 + self.randn(n, self.dim, generator=generator)


class ToyNoSigma(ToyImageEnergy):
    """The same energy without ``denoise_sigma``: denoising must be refused."""

    name = "toy_no_sigma"
    denoise_sigma = None


NEURAL = {"num_iterations": 2, "batch_size": 8, "log_every": 1, "latent_dim": 4,
          "generator_architecture": "conv", "score_architecture": "conv", "conv_channels": 4}


def _matrix(samplers: list[dict], target: str = "test_ebm_sampling:ToyImageEnergy", **extra):
    return parse_matrix({"seeds": [0], "n": 6, "metrics": ["ksd"], "samplers": samplers,
                         "targets": [{"name": target, "label": "toy"}], **extra})


# -- image networks ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 32, 32)])
def test_conv_networks_map_flat_images_and_are_seeded(shape):
    d = math.prod(shape)
    generator = ConvGenerator(5, shape, channels=4, init_generator=torch.Generator().manual_seed(1))
    again = ConvGenerator(5, shape, channels=4, init_generator=torch.Generator().manual_seed(1))
    score = ConvScoreNet(shape, channels=4, output_scale=10.0)
    z = torch.randn(3, 5)
    x = generator(z)
    assert x.shape == (3, d) and score(x).shape == (3, d)
    torch.testing.assert_close(again(z), x)  # same seed, same network
    # output_scale multiplies the output exactly (1/sigma for DSM)
    unscaled = ConvScoreNet(shape, channels=4, output_scale=1.0)
    torch.testing.assert_close(score(x), 10.0 * unscaled(x))


def test_conv_networks_reject_non_square_or_non_power_of_two_images():
    with pytest.raises(ValueError, match="square images"):
        ConvGenerator(4, (1, 6, 6))
    with pytest.raises(ValueError, match="square images"):
        ConvScoreNet((1, 8, 4))


def test_conv_sampler_trains_checkpoints_and_needs_an_image_shape():
    target = ToyImageEnergy()
    sampler = SAMPLERS["dft_ns"](**NEURAL)
    counting = CountingTarget(target)
    history = sampler.train(counting, generator=make_generator(0))
    assert isinstance(sampler.generator_net, ConvGenerator)
    assert isinstance(sampler.score_net, ConvScoreNet)
    assert {row["metric"] for row in history} >= {"dsm_loss", "f"}
    assert counting.num_hvp == 2 * 8  # one HVP batch per iteration
    copy = SAMPLERS["dft_ns"]()
    copy.load_state_dict(sampler.state_dict())
    torch.testing.assert_close(copy.sample(5, make_generator(3)),
                               sampler.sample(5, make_generator(3)))
    from targets.toy2d import StandardGaussian  # no image_shape

    with pytest.raises(ValueError, match="image_shape"):
        SAMPLERS["kl_ns"](**NEURAL).train(StandardGaussian(), generator=make_generator(0))


@dataclasses.dataclass(frozen=True)
class ExtendedParams(DFTParams):
    extra: int = dataclasses.field(default=3, metadata={"identity": "omit_default"})


class ExtendedDFT(DFTNS):
    """DFT-NS with one parameter added after cells were stored (import path
    ``test_ebm_sampling:ExtendedDFT``)."""

    name = "dft_ns_extended"
    Params = ExtendedParams


def test_params_marked_omit_default_leave_the_cell_identity_at_their_default():
    # A field with metadata {"identity": "omit_default"} enters the resolved params only when
    # set away from its default, so adding such a field keeps stored cells' ids.
    spec = _matrix([{"name": "dft_ns", "budgets": [1]}]).samplers[0]
    spec = dataclasses.replace(spec, name="test_ebm_sampling:ExtendedDFT",
                               plugin_dir=str(PLUGIN_DIR))
    assert "extra" not in resolved_params(spec, {})
    assert resolved_params(spec, {"extra": 4})["extra"] == 4


# -- annealed Langevin with the MDSM image settings -------------------------------------------
EXPECTED = {1: (0, 0, 1), 2: (1, 0, 1), 3: (1, 1, 1), 10: (2, 7, 1), 200: (37, 148, 15),
            2700: (500, 2000, 200)}


@pytest.mark.parametrize("num_steps", sorted(EXPECTED))
def test_mdsm_schedule_lengths_and_temperatures(num_steps):
    schedule = temperature_schedule(num_steps, 100.0)
    hot, geometric, linear = segment_lengths(num_steps)
    assert (hot, geometric, linear) == EXPECTED[num_steps] and len(schedule) == num_steps
    assert schedule[:hot] == [100.0] * hot
    # geometric segment: T_k = 100 exp(-k ln(100) / n_2), k = 0..n_2-1
    expected = [100.0 * math.exp(-k * math.log(100.0) / geometric) for k in range(geometric)]
    assert schedule[hot:hot + geometric] == pytest.approx(expected, rel=1e-14)
    # linear segment from 1 to 0 (a single step is T = 1)
    tail = np.linspace(1.0, 0.0, linear) if linear > 1 else np.ones(1)
    np.testing.assert_allclose(schedule[hot + geometric:], tail, atol=1e-15)


def test_annealed_step_uses_epsilon_002_and_sqrt_temperature_noise():
    target = ToyImageEnergy()
    sampler = AnnealedLangevin(step_size=0.02, max_temperature=100.0)
    x = target.initial_positions(5, make_generator(0))
    state = sampler.init(target, x, 2)  # K = 2: T = 100 then T = 1
    new, info = sampler.step(target, state, make_generator(4))
    noise = torch.randn(5, 16, generator=make_generator(4))
    torch.testing.assert_close(new.x, x + 0.5 * 0.02**2 * (0.5 - x) + 10.0 * 0.02 * noise)
    assert float(info["temperature"]) == 100.0


# -- the final denoising step in the harness --------------------------------------------------
def test_denoise_key_is_validated_and_labels_get_the_suffix():
    matrix = _matrix([{"name": "ula", "budgets": [3]},
                      {"name": "ula", "budgets": [3], "denoise": True}])
    assert [s.label for s in matrix.samplers] == ["ula", "ula+dn"]
    cells = [c for c in plan_cells(matrix) if c.sampler is not None]
    plain, denoised = cells
    assert plain.cell_id != denoised.cell_id and plain.cell_seed == denoised.cell_seed
    with pytest.raises(MatrixError, match="denoise: expected true or false"):
        _matrix([{"name": "ula", "budgets": [3], "denoise": "yes"}])
    with pytest.raises(MatrixError, match="denoise twice"):
        _matrix([{"name": "annealed_langevin", "budgets": [3], "denoise": True,
                  "params": {"denoise_sigma": 0.1}}])


def test_per_target_n_and_per_sampler_seeds():
    matrix = parse_matrix({
        "seeds": [0, 1], "n": 6, "metrics": ["ksd"],
        "targets": [{"name": "gaussian", "n": 9}, "mog2"],
        "samplers": [{"name": "ula", "budgets": [2], "seeds": [1]}]})
    cells = [c for c in plan_cells(matrix) if c.sampler is not None]
    assert sorted((c.target.label, c.n, c.seed) for c in cells) == [("gaussian", 9, 1),
                                                                     ("mog2", 6, 1)]
    with pytest.raises(MatrixError, match="not among the matrix's seeds"):
        _matrix([{"name": "ula", "budgets": [2], "seeds": [5]}])
    with pytest.raises(MatrixError, match=r"targets\[0\].n"):
        parse_matrix({"samplers": [{"name": "ula", "budgets": [1]}],
                      "targets": [{"name": "gaussian", "n": 1}]})


def _cells(samplers, target="test_ebm_sampling:ToyImageEnergy"):
    return {c.sampler_label: c for c in plan_cells(_matrix(samplers, target))
            if c.sampler is not None}


def test_denoising_adds_one_nfe_to_a_neural_sampler_and_none_to_a_chain(tmp_path):
    cells = _cells([{"name": "dft_ns", "budgets": [1], "params": NEURAL},
                    {"name": "dft_ns", "budgets": [1], "params": NEURAL, "denoise": True},
                    {"name": "annealed_langevin", "budgets": [4]},
                    {"name": "annealed_langevin", "budgets": [4], "denoise": True}])
    results = {label: run_cell(cell, tmp_path, save_samples=True)
               for label, cell in cells.items()}
    nfe = {label: result.rows[0]["nfe"] for label, result in results.items()}
    assert all(r.rows[0]["status"] == "ok" for r in results.values()), results
    # the sampling phase of a neural sampler evaluates the target 0 times; +dn exactly once
    assert nfe["dft_ns"] == 0.0 and nfe["dft_ns+dn"] == 1.0
    # annealed Langevin at K: K + 1 with or without the final step (it reuses the cached score)
    assert nfe["annealed_langevin"] == nfe["annealed_langevin+dn"] == 5.0
    # same network, same draws: the +dn samples are exactly Tweedie's step on the plain ones
    for label in ("dft_ns", "annealed_langevin"):
        x = results[label].samples
        torch.testing.assert_close(results[f"{label}+dn"].samples, x + 0.01 * (0.5 - x))


def test_denoising_a_target_without_sigma_fails_the_cell_with_a_reason(tmp_path):
    cell = _cells([{"name": "ula", "budgets": [2], "denoise": True}],
                  "test_ebm_sampling:ToyNoSigma")["ula+dn"]
    rows = run_cell(cell, tmp_path).rows
    assert rows[0]["status"] == "failed" and "has no denoise_sigma" in rows[0]["reason"]


# -- Table 3 and figure helpers ---------------------------------------------------------------
def _rows(entries) -> pd.DataFrame:
    """Result rows: (sampler, budget, seed, value, sample_seconds, train_seconds, nfe)."""
    return pd.DataFrame([{"cell_id": f"{s}{b}{seed}", "target": "digits", "sampler": s,
                          "budget": b, "seed": seed, "metric": "fid_data", "value": v,
                          "status": "ok", "reason": "", "n": 100, "nfe": nfe,
                          "sample_seconds": t, "train_seconds": train, "train_nfe": math.nan,
                          "device": "cpu", "denoise": s.endswith("+dn"),
                          "matrix": "m"}
                         for s, b, seed, v, t, train, nfe in entries])


def test_table3_costs_speedup_and_break_even():
    rows = _rows([(s, b, seed, v, t, tr, nfe)
                  for seed in (0, 1)
                  for s, b, v, t, tr, nfe in (
                      ("annealed_langevin", 200, 30.0 + seed, 20.0, math.nan, 201.0),
                      ("dft_ns_full", 1, 40.0 + seed, 0.02, 100.0, 0.0),
                      ("dft_ns_full+dn", 1, 35.0 + seed, 0.2, 100.0, 1.0))])
    costs = derived_costs(
        rows.groupby(["target", "sampler", "budget"]).agg(
            nfe=("nfe", "mean"), sample_seconds=("sample_seconds", "mean"),
            train_seconds=("train_seconds", "mean"), n=("n", "max"),
            device=("device", "first"), denoise=("denoise", "max")).assign(
                per_sample=lambda f: f.sample_seconds / f.n),
        ("annealed_langevin", 200))
    dft = costs.loc[("digits", "dft_ns_full", 1)]
    assert dft["per_1000"] == pytest.approx(0.2)  # 0.02 s for 100 samples
    assert dft["speedup"] == pytest.approx(1000.0)
    # break-even: 100 s of training over a saving of (0.2 - 0.0002) s per sample
    assert dft["break_even"] == pytest.approx(100.0 / (0.2 - 0.0002))
    # no denoised baseline stored: +dn rows fall back to the plain baseline
    assert costs.loc[("digits", "dft_ns_full+dn", 1)]["speedup"] == pytest.approx(100.0)
    assert math.isnan(costs.loc[("digits", "annealed_langevin", 200)]["break_even"])
    table = summary_table(rows, SUMMARY_LAYOUTS["table3_ebm"])
    row = table.loc[("digits", "dft_ns_full@1")]
    assert row["speed-up"] == "×1e+03" and row["NFE"] == "0" and row["train s"] == "100"
    assert row["FID (data)"] == "40.5 ± 0.5"


def test_mosaic_tiles_square_images_with_gutters():
    samples = np.stack([np.full(16, value) for value in (0.0, 2.0, -1.0)])
    canvas = mosaic(samples, count=3)
    assert canvas.shape == (2 * 5 - 1, 2 * 5 - 1)
    assert canvas[0, 0] == 0.0 and canvas[0, 5] == 1.0  # 2.0 clipped to 1
    assert canvas[5, 0] == 0.0 and canvas[4, 0] == 1.0  # -1 clipped to 0; gutter is white


def test_figure3_test_images_are_a_seeded_spread_of_the_targets_test_split():
    from targets.datasets import load_dataset

    rows = pd.DataFrame({"target": ["digits", "plugin"], "target_name": ["ebm_digits", "nowhere"],
                         "target_params": ["{}", "{}"]})
    images = dataset_panel(rows, "digits", count=64)
    test = load_dataset("digits")
    assert images.shape == (64, 64) and 0.0 <= images.min() and images.max() <= 1.0
    # Each shown image is a test image, and the choice covers several classes (a split stored
    # in label order would otherwise show one digit).
    flat = test.x_test.flatten(1).double().numpy()
    found = [int(np.flatnonzero((flat == image).all(axis=1))[0]) for image in images]
    assert len(set(test.y_test[found].tolist())) >= 5
    assert np.array_equal(images, dataset_panel(rows, "digits", count=64))  # seeded
    assert dataset_panel(rows, "plugin") is None  # unknown target: the panel says unavailable
