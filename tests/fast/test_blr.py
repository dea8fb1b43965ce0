"""Bayesian logistic regression: datasets, target, minibatch scores, metrics, reference runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_targets import finite_difference_score  # the suite's one finite-difference score

from benchmark.metrics.base import MetricContext
from benchmark.metrics.blr import standardised_moment_errors
from benchmark.metrics.registry import METRICS, supported_metrics
from samplers.base import run_chain
from samplers.neural.dft import DFTNS
from samplers.neural.minibatch import DFTNSMinibatch
from samplers.sgld import SGLD
from targets import make_target
from targets.base import make_generator
from targets.blr import (
    REFERENCE_DIR,
    BayesianLogisticRegression,
    predictive_accuracy,
    predictive_log_likelihood,
)
from targets.counting import CountingTarget
from targets.datasets import DatasetUnavailable, load_dataset
from targets.datasets.tabular import logistic_margin_scale, prepare

pytestmark = pytest.mark.usefixtures("single_thread")

#: Reference runs that the committed BLR matrix relies on.
REFERENCE_KEYS = ("breast_cancer", "synthetic_num_data20000_num_features54_seed0")


@pytest.fixture(scope="module")
def breast_cancer() -> BayesianLogisticRegression:
    return make_target("blr", dataset="breast_cancer", dtype=torch.float64)


def _theta(target: BayesianLogisticRegression, n: int, seed: int) -> torch.Tensor:
    """Points near the posterior's scale: w ~ N(0, 0.5^2), log alpha ~ N(0, 1)."""
    generator = make_generator(seed)
    w = 0.5 * target.randn(n, target.num_features, generator=generator)
    return torch.cat([w, target.randn(n, 1, generator=generator)], dim=1)


@pytest.mark.parametrize("dataset", ["breast_cancer", "synthetic"])
def test_score_matches_finite_differences(dataset):
    options = {"num_data": 300, "num_features": 6, "data_seed": 1} if dataset == "synthetic" else {}
    target = make_target("blr", dataset=dataset, dtype=torch.float64, **options)
    x = _theta(target, 6, seed=0)
    # Central differences in float64: truncation ~ step^2 |f'''| ~ 1e-10, rounding
    # ~ 1e-16 |log p| / step ~ 1e-7 for |log p| ~ 1e3.
    expected = finite_difference_score(target, x, step=1e-6)
    torch.testing.assert_close(target.score(x), expected, rtol=1e-6, atol=1e-5)


def test_log_posterior_matches_the_formula(breast_cancer):
    x = _theta(breast_cancer, 3, seed=1)
    w, log_alpha = x[:, :-1], x[:, -1]
    d = breast_cancer.num_features
    margins = (w @ breast_cancer.x_train.T) * breast_cancer.y_train
    expected = (torch.nn.functional.logsigmoid(margins).sum(1) + 0.5 * d * log_alpha
                - 0.5 * log_alpha.exp() * w.square().sum(1) - 0.01 * log_alpha.exp() + log_alpha)
    torch.testing.assert_close(breast_cancer.log_prob(x), expected, rtol=1e-12, atol=1e-9)
    assert breast_cancer.dim == 32 and d == 31  # 30 features + the ones column, + log alpha


def test_minibatch_scores_average_to_the_full_score(breast_cancer):
    x = _theta(breast_cancer, 4, seed=2)
    num_batches = 5  # 455 = 5 x 91 training rows
    rows = torch.randperm(breast_cancer.num_data, generator=make_generator(3))
    batches = rows.reshape(num_batches, -1)
    mean = sum(breast_cancer.batch_score(x, batch) for batch in batches) / num_batches
    torch.testing.assert_close(mean, breast_cancer.score(x), rtol=1e-10, atol=1e-9)
    # A single batch is a different (noisy) estimate; m >= N gives the exact score.
    assert not torch.allclose(breast_cancer.batch_score(x, batches[0]), breast_cancer.score(x))
    exact = breast_cancer.minibatch_score(x, 10_000, make_generator(0))
    torch.testing.assert_close(exact, breast_cancer.score(x))


def test_predictive_accuracy_and_log_likelihood_by_hand():
    # sigma(ln 3) = 3/4, sigma(0) = 1/2, sigma(-ln 3) = 1/4.
    ln3 = math.log(3.0)
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    x = torch.tensor([[ln3, 0.0], [0.0, ln3], [ln3, ln3]], dtype=torch.float64)
    y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    # p = (3/4 + 1/2)/2 = 5/8, (1/2 + 1/4)/2 = 3/8, (3/4 + 3/4)/2 = 3/4.
    assert predictive_accuracy(weights, x, y) == pytest.approx(2.0 / 3.0)
    expected = (math.log(5 / 8) + math.log(3 / 8) + math.log(3 / 4)) / 3
    assert predictive_log_likelihood(weights, x, y) == pytest.approx(expected, abs=1e-12)
    assert predictive_log_likelihood(weights, x, y, chunk=2) == pytest.approx(expected,
                                                                             abs=1e-12)


def test_metrics_through_the_registry(breast_cancer):
    names = supported_metrics(breast_cancer)
    assert {"accuracy", "test_loglik", "ksd"} <= set(names)
    assert "accuracy" not in supported_metrics(make_target("mog2"))
    theta = _theta(breast_cancer, 50, seed=4)
    context = MetricContext(reference=None, generator=make_generator(0))
    accuracy = METRICS["accuracy"].fn(theta, breast_cancer, context)
    assert 0.0 <= accuracy <= 1.0 and not METRICS["accuracy"].lower_is_better
    assert METRICS["test_loglik"].fn(theta, breast_cancer, context) < 0.0


def test_standardised_moment_errors_by_hand():
    samples = torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=torch.float64)  # mean (1, 2)
    # sample s.d. (ddof 1) is sqrt(2) in both coordinates
    mean_error, std_error = standardised_moment_errors(
        samples, torch.tensor([1.0, 0.0]), torch.tensor([math.sqrt(2.0), 2 * math.sqrt(2.0)]))
    assert mean_error == pytest.approx(math.sqrt((0.0 + (2 / (2 * math.sqrt(2))) ** 2) / 2))
    assert std_error == pytest.approx(math.sqrt((0.0 + 0.5 ** 2) / 2))


def test_splits_are_deterministic_disjoint_and_standardised():
    first, again = load_dataset("breast_cancer"), load_dataset("breast_cancer")
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)
    assert first.x_train.shape == (455, 31) and first.x_test.shape == (114, 31)
    assert torch.all(first.x_train[:, -1] == 1) and torch.all(first.x_test[:, -1] == 1)
    torch.testing.assert_close(first.x_train[:, :-1].double().mean(0),
                               torch.zeros(30, dtype=torch.float64), atol=1e-5, rtol=0)
    other = load_dataset("breast_cancer", split_seed=1)
    assert not torch.equal(other.y_test, first.y_test)
    # Row identities through a monotone feature: no row is in both splits, none is lost.
    ids = np.arange(100, dtype=np.float64)[:, None]
    data = prepare("ids", ids, np.arange(100) % 2, split_seed=0, info={})
    train, test = set(data.x_train[:, 0].tolist()), set(data.x_test[:, 0].tolist())
    assert not train & test and len(train) + len(test) == 100 and len(test) == 20


def test_synthetic_has_the_requested_bayes_accuracy():
    scale = logistic_margin_scale(0.75)
    # Independent check of E[sigma(|m|)] = 0.75 for m ~ N(0, s^2): trapezoid rule on a grid.
    m = np.linspace(-12 * scale, 12 * scale, 200_001)
    density = np.exp(-0.5 * (m / scale) ** 2) / (scale * math.sqrt(2 * math.pi))
    assert np.trapezoid(density / (1 + np.exp(-np.abs(m))), m) == pytest.approx(0.75, abs=1e-6)
    data = load_dataset("synthetic", num_data=2000, num_features=5, seed=3)
    assert data.x_train.shape == (1600, 6)
    weights = torch.tensor(data.info["true_weights"], dtype=torch.float64)
    assert float(weights.norm()) == pytest.approx(scale, rel=1e-12)  # identity covariance
    again = load_dataset("synthetic", num_data=2000, num_features=5, seed=3)
    assert torch.equal(again.x_test, data.x_test)
    # Labels are informative but noisy: about 3/4 of them agree with the Bayes rule.
    agree = float(((data.x_train[:, :-1].double() @ weights > 0).long()
                   == data.y_train).double().mean())
    assert 0.7 < agree < 0.8


def test_covertype_offline_error_and_local_fixture(tmp_path):
    with pytest.raises(DatasetUnavailable, match="fetch_covtype"):
        load_dataset("covertype", data_home=str(tmp_path), download=False)
    reason = BayesianLogisticRegression.unavailable_reason(dataset="covertype",
                                                           path=str(tmp_path / "none.npz"))
    assert reason and "fetch_covtype" in reason
    generator = np.random.default_rng(0)
    features = generator.integers(0, 100, size=(50, 54)).astype(np.float64)
    cover_type = np.tile(np.arange(1, 8), 8)[:50]
    np.savez(tmp_path / "covtype.npz", data=features, target=cover_type)
    data = load_dataset("covertype", path=str(tmp_path / "covtype.npz"))
    assert data.x_train.shape == (40, 55) and data.x_test.shape == (10, 55)
    total = int(data.y_train.sum() + data.y_test.sum())
    assert total == int((cover_type == 2).sum())  # "class 2 vs rest"
    np.savetxt(tmp_path / "covtype.data", np.column_stack([features, cover_type]),
               delimiter=",", fmt="%d")
    from_csv = load_dataset("covertype", path=str(tmp_path / "covtype.data"))
    assert torch.equal(from_csv.x_train, data.x_train)
    target = make_target("blr", dataset="covertype", path=str(tmp_path / "covtype.npz"))
    assert target.dim == 56 and "reference" not in target.provides


def test_sgld_uses_minibatches_and_counts_their_share(breast_cancer):
    counting = CountingTarget(breast_cancer)
    sampler = SGLD(step_size=1e-4, batch_size=91)
    x = run_chain(sampler, counting, 8, 3, make_generator(0))
    assert x.shape == (8, 32) and torch.isfinite(x).all()
    # init: one full score; each step: one minibatch of 91 of the 455 rows.
    assert counting.nfe_per_particle(8) == pytest.approx(1 + 3 * 91 / 455)
    assert sampler.step_size_at(100) == pytest.approx(1e-4 * 2 ** -0.55)


class _ScriptedBatches:
    """BLR target whose minibatch scores use a given sequence of row batches."""

    def __init__(self, target: BayesianLogisticRegression, batches: list[torch.Tensor]):
        self.target, self.batches = target, list(batches)

    def score(self, x, create_graph=False):
        return self.target.score(x, create_graph=create_graph)

    def minibatch_score(self, x, batch_size, generator, create_graph=False):
        return self.target.batch_score(x, self.batches.pop(0), create_graph=create_graph)

    def __getattr__(self, attribute):
        return getattr(self.target, attribute)


@pytest.mark.parametrize("gradient", ["full", "partial"])
def test_dft_independent_minibatches_are_unbiased_and_shared_ones_are_not(breast_cancer,
                                                                          gradient):
    """Averaged over all ordered pairs of batches of a partition, the independent-batch DFT
    loss ``f`` and its gradient equal the full-batch ones exactly; one shared batch is biased
    upwards by the mean squared minibatch error."""
    sigma = 0.05
    x = _theta(breast_cancer, 3, seed=5)
    noise = breast_cancer.randn(3, breast_cancer.dim, generator=make_generator(6))
    sampler_score = lambda points: -points  # noqa: E731 - a frozen stand-in for s_phi
    batches = torch.randperm(breast_cancer.num_data, generator=make_generator(7)).reshape(5, -1)

    def evaluate(sampler, target):
        leaf = x.clone().requires_grad_(True)
        surrogate, monitors = sampler.surrogate(leaf, noise, target, sampler_score,
                                                generator=make_generator(0))
        (direction,) = torch.autograd.grad(surrogate.sum(), leaf)
        return monitors["f"], direction

    full_f, full_direction = evaluate(DFTNS(sigma=sigma, gradient=gradient), breast_cancer)
    independent = DFTNSMinibatch(sigma=sigma, gradient=gradient, score_batch_size=91)
    pairs = [evaluate(independent, _ScriptedBatches(breast_cancer, [a, b]))
             for a in batches for b in batches]
    torch.testing.assert_close(sum(f for f, _ in pairs) / 25, full_f, rtol=1e-8, atol=1e-6)
    torch.testing.assert_close(sum(d for _, d in pairs) / 25, full_direction, rtol=1e-8,
                               atol=1e-6)
    shared = DFTNSMinibatch(sigma=sigma, gradient=gradient, score_batch_size=91,
                            score_batches="shared")
    singles = [evaluate(shared, _ScriptedBatches(breast_cancer, [a]))[0] for a in batches]
    score = breast_cancer.score(x + sigma * noise)
    bias = sum((breast_cancer.batch_score(x + sigma * noise, a) - score).square().sum(1)
               for a in batches) / 5
    torch.testing.assert_close(sum(singles) / 5 - full_f, bias, rtol=1e-8, atol=1e-6)
    assert bool((bias > 0).all())


@pytest.mark.parametrize("key", REFERENCE_KEYS)
def test_reference_runs_record_their_diagnostics(key):
    path = REFERENCE_DIR / f"{key}.npz"
    assert path.exists(), f"missing reference run {path}"
    with np.load(path) as stored:
        metadata = json.loads(str(stored["metadata"]))
        dim = stored["mean"].shape[0]
        assert stored["std"].shape == stored["ess_bulk"].shape == stored["rhat"].shape == (dim,)
        assert stored["draws"].shape[1] == dim and stored["draws"].shape[0] >= 1000
        assert np.all(stored["std"] > 0)
    # References made before the tools moved record the old module path.
    assert metadata["command"].startswith(("python -m benchmark.tools.blr_reference",
                                           "python -m benchmark.blr_reference"))
    for field in ("num_chains", "num_steps", "num_warmup", "thin", "step_size_whitened",
                  "acceptance_rate", "ess_bulk_min", "ess_tail_min", "rhat_max"):
        assert math.isfinite(float(metadata[field])), field
    # MALA's warm-up steers acceptance to 0.574; ArviZ's split R-hat near 1 and a few hundred
    # effective draws at least in every coordinate (the moments' Monte-Carlo error is then
    # below ~0.06 reference s.d., under the n = 100 evaluation floor of ~0.1).
    assert 0.45 < metadata["acceptance_rate"] < 0.7
    assert metadata["rhat_max"] < 1.1 and metadata["ess_bulk_min"] > 300


def test_matrix_sampler_targets_key_restricts_cells():
    from benchmark.plan.cells import plan_cells
    from benchmark.plan.matrix import parse_matrix
    from benchmark.schema import MatrixError

    data = {"targets": ["gaussian", "mog2"], "seeds": [0],
            "samplers": [{"name": "mala", "budgets": [5], "targets": ["mog2"]},
                         {"name": "svgd", "budgets": [5]}]}
    cells = plan_cells(parse_matrix(data))
    pairs = {(cell.target.label, cell.sampler_label) for cell in cells}
    assert ("mog2", "mala") in pairs and ("gaussian", "mala") not in pairs
    assert ("gaussian", "svgd") in pairs and ("gaussian", "reference") in pairs
    data["samplers"][0]["targets"] = ["donut"]
    with pytest.raises(MatrixError, match="unknown target label 'donut'"):
        parse_matrix(data)


def test_targets_without_data_are_dropped_with_the_reason(tmp_path):
    from benchmark.plan.matrix import parse_matrix
    from benchmark.plan.plan import drop_unavailable_targets

    matrix = parse_matrix({"targets": ["gaussian", {"name": "blr", "label": "covertype",
                                                    "params": {"dataset": "covertype",
                                                               "path": str(tmp_path / "x.npz")}}],
                           "samplers": [{"name": "mala", "budgets": [5]}]})
    kept, reasons = drop_unavailable_targets(matrix)
    assert [spec.label for spec in kept.targets] == ["gaussian"]
    assert "fetch_covtype" in reasons["covertype"]


def test_tiny_blr_matrix_runs_and_gives_table2_and_training_curves(tmp_path, capsys):
    from benchmark.cli import main
    from benchmark.report.plots_blr import training_curves
    from benchmark.store import ResultsStore

    path = tmp_path / "tiny-blr.toml"
    path.write_text("""
seeds = [0, 1]
n = 20
num_threads = 1
metrics = ["accuracy", "test_loglik", "ksd", "mean_error", "std_error"]
targets = [{name = "blr", label = "breast_cancer", params = {dataset = "breast_cancer"}}]

[[samplers]]
name = "mala"
budgets = [5]

[[samplers]]
name = "dft_ns_minibatch"
label = "dft_ns"
budgets = [1]
params = { num_iterations = 4, hidden_width = 8, hidden_depth = 1, batch_size = 16, log_every = 2 }
""")
    code = main(["run", str(path), "--out", str(tmp_path / "out"),
                 "--cache", str(tmp_path / "cache"), "--no-figures"])
    out = capsys.readouterr().out
    assert code == 0, out
    table = (tmp_path / "out" / "tables" / "table2_blr.md").read_text()
    for header in ("Test accuracy", "Posterior mean error", "NFE", "train s"):
        assert header in table
    assert "| breast_cancer | mala@5" in table and "reference (floor)" in table
    history = ResultsStore(tmp_path / "out").load_history()
    curves = training_curves(history, ["accuracy_eval", "mean_error_eval"])
    assert set(curves["iteration"]) == {2, 4} and set(curves["sampler"]) == {"dft_ns"}
    assert (curves["num_seeds"] == 2).all() and curves["se"].notna().all()


def test_minibatch_dft_uses_one_exact_score_when_the_batch_covers_the_data(breast_cancer):
    counting = CountingTarget(breast_cancer)
    x = _theta(breast_cancer, 4, seed=8)
    noise = breast_cancer.randn(4, breast_cancer.dim, generator=make_generator(9))
    full = DFTNSMinibatch(sigma=0.05, score_batch_size=1000)  # 1000 >= N = 455
    f_exact = full.surrogate(x, noise, counting, lambda p: -p, make_generator(0))[1]["f"]
    assert counting.num_evaluations == 4 and counting.num_hvp == 4
    f_plain = DFTNS(sigma=0.05).surrogate(x, noise, breast_cancer, lambda p: -p)[1]["f"]
    torch.testing.assert_close(f_exact, f_plain)
    counting.reset()
    DFTNSMinibatch(sigma=0.05, score_batch_size=91).surrogate(x, noise, counting, lambda p: -p,
                                                             make_generator(0))
    assert counting.num_evaluations == pytest.approx(2 * 4 * 91 / 455)  # two batches of 91


def test_length_scale_is_the_smallest_reference_posterior_sd(breast_cancer):
    # Neural samplers set sigma = sigma_fraction x length_scale on every family; on BLR that
    # is the narrowest posterior direction of the stored reference run.
    std = breast_cancer.reference()["std"]
    assert breast_cancer.length_scale == float(std.min())
    assert 0.5 < breast_cancer.length_scale < 1.0  # 0.694 (log alpha is not the narrowest)
    no_reference = make_target("blr", dataset="synthetic", num_data=200, num_features=3,
                               data_seed=1)
    assert no_reference.reference() is None and no_reference.length_scale is None
