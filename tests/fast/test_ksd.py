"""Unit tests of the metrics package: KSD against brute force, energy distance, modes, registry."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from benchmark.metrics.base import MetricContext, MetricRequirementError
from benchmark.metrics.distances import energy_distance, mean_pairwise_distance
from benchmark.metrics.ksd import (
    IMQKernel,
    RBFKernel,
    ksd,
    ksd_squared,
    median_bandwidth_squared,
    signed_sqrt,
    stein_kernel_diagonal,
    stein_kernel_matrix,
)
from benchmark.metrics.modes import assign_to_modes, mode_recall, mode_weight_error, mode_weights
from benchmark.metrics.registry import (
    METRICS,
    evaluate_metric,
    reference_floor,
    supported_metrics,
)
from targets.base import Modes, Target, make_generator

F64 = torch.float64


# -- local test targets (the real 2-D targets live in targets/toy2d.py) -------------------------
class Gaussian(Target):
    """``N(mean, I)`` with an exact sampler."""

    name = "test_gaussian"

    def __init__(self, dim: int, mean: float = 0.0, dtype: torch.dtype = F64) -> None:
        super().__init__(dim, dtype=dtype)
        self.mean = mean

    def log_prob(self, x):
        return -0.5 * (x - self.mean).square().sum(dim=1)

    def sample(self, n, generator):
        return self.randn(n, self.dim, generator=generator) + self.mean


class NoReference(Gaussian):
    """Same density, but without a reference sampler (so it provides only ``score``)."""

    name = "test_no_reference"
    sample = Target.sample


class TwoModes(Gaussian):
    """Unequal mixture ``0.25 N((-3, 0), I) + 0.75 N((3, 0), I)`` in 2-D."""

    name = "test_two_modes"

    def __init__(self) -> None:
        super().__init__(2)
        self._modes = Modes(self.tensor([[-3.0, 0.0], [3.0, 0.0]]), self.tensor([0.25, 0.75]))

    def log_prob(self, x):
        sq = torch.cdist(x, self._modes.locations).square()
        return torch.logsumexp(self._modes.weights.log() - 0.5 * sq, dim=1)

    def sample(self, n, generator):
        which = torch.multinomial(self._modes.weights, n, replacement=True, generator=generator)
        return self._modes.locations[which] + self.randn(n, 2, generator=generator)

    def modes(self):
        return self._modes


# -- brute force Stein kernel through autograd -----------------------------------------------------
def imq_kernel(x, y):
    return (1.0 + (x - y).square().sum()) ** -0.5


def rbf_kernel_fn(h2):
    return lambda x, y: torch.exp(-(x - y).square().sum() / (2.0 * h2))


def brute_stein_matrix(kernel_fn, x, score):
    """``u(x_i, x_j)`` by a double loop, derivatives of ``k`` by autograd (float64)."""
    n, d = x.shape
    u = torch.empty(n, n, dtype=F64)
    for i, j in itertools.product(range(n), range(n)):
        xi = x[i].clone().requires_grad_(True)
        yj = x[j].clone().requires_grad_(True)
        k = kernel_fn(xi, yj)
        grad_x, grad_y = torch.autograd.grad(k, (xi, yj), create_graph=True)
        trace = sum(torch.autograd.grad(grad_y[m], xi, retain_graph=True)[0][m] for m in range(d))
        u[i, j] = (score[i] @ score[j] * k + score[i] @ grad_y + score[j] @ grad_x + trace).detach()
    return u


def random_points(n, d, seed):
    generator = make_generator(seed)
    x = torch.randn(n, d, generator=generator, dtype=F64)
    # Any vector field works for the algebra; a non-Gaussian one avoids accidental symmetries.
    score = torch.randn(n, d, generator=generator, dtype=F64) - 0.3 * x**3
    return x, score


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
@pytest.mark.parametrize(("n", "d"), [(7, 1), (12, 2), (9, 3)])
def test_ksd_matches_brute_force(kernel, n, d):
    x, score = random_points(n, d, seed=n * 10 + d)
    if kernel == "imq":
        kernel_fn = imq_kernel
    else:
        kernel_fn = rbf_kernel_fn(median_bandwidth_squared(x))
    brute = brute_stein_matrix(kernel_fn, x, score)
    torch.testing.assert_close(stein_kernel_matrix(x, score, kernel), brute, rtol=1e-10, atol=1e-10)
    v = ksd_squared(x, score, kernel, statistic="v")
    u = ksd_squared(x, score, kernel, statistic="u")
    torch.testing.assert_close(v, brute.sum() / n**2, rtol=1e-10, atol=1e-12)
    off_diagonal = brute.sum() - brute.diagonal().sum()
    torch.testing.assert_close(u, off_diagonal / (n * (n - 1)), rtol=1e-10, atol=1e-12)


def test_general_imq_parameters_match_brute_force():
    x, score = random_points(8, 2, seed=3)
    kernel = IMQKernel(c=0.7, beta=-0.3)
    brute = brute_stein_matrix(lambda a, b: (0.49 + (a - b).square().sum()) ** -0.3, x, score)
    torch.testing.assert_close(ksd_squared(x, score, kernel), brute.mean(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
@pytest.mark.parametrize("statistic", ["v", "u"])
def test_chunked_equals_unchunked(kernel, statistic):
    x, score = random_points(53, 2, seed=1)
    full = ksd_squared(x, score, kernel, statistic, chunk_size=10_000)
    for chunk_size in (1, 7, 52):
        chunked = ksd_squared(x, score, kernel, statistic, chunk_size=chunk_size)
        torch.testing.assert_close(chunked, full, rtol=1e-12, atol=1e-14)


def test_stein_diagonals_closed_form():
    x, score = random_points(30, 3, seed=2)
    sq_norm = score.square().sum(dim=1)
    h2 = median_bandwidth_squared(x)
    torch.testing.assert_close(stein_kernel_diagonal(x, score, "rbf"), sq_norm + 3 / h2)
    torch.testing.assert_close(stein_kernel_diagonal(x, score, RBFKernel(2.0)), sq_norm + 1.5)
    torch.testing.assert_close(stein_kernel_diagonal(x, score, "imq"), sq_norm + 3)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_u_v_relation(kernel):
    # V = ((n − 1)/n) U + mean(diag)/n, exactly.
    n = 40
    x, score = random_points(n, 2, seed=4)
    v = ksd_squared(x, score, kernel, "v")
    u = ksd_squared(x, score, kernel, "u")
    diagonal = stein_kernel_diagonal(x, score, kernel)
    torch.testing.assert_close(v, (n - 1) / n * u + diagonal.mean() / n, rtol=1e-12, atol=1e-14)
    assert v >= 0


def test_signed_root_is_never_nan():
    # Exact N(0, 1) samples with their exact score: U-KSD² has mean 0, so it is often negative.
    values = []
    for seed in range(6):
        x = torch.randn(50, 1, generator=make_generator(seed), dtype=F64)
        values.append(ksd_squared(x, -x, statistic="u"))
        root = ksd(x, -x, statistic="u")
        assert torch.isfinite(root)
        torch.testing.assert_close(root, values[-1].sign() * values[-1].abs().sqrt())
    assert min(values) < 0  # the case the signed root exists for actually occurred
    torch.testing.assert_close(signed_sqrt(-4.0), torch.tensor(-2.0))
    assert float(signed_sqrt(0.0)) == 0.0


def test_v_root_and_dtype_float32():
    x, score = random_points(200, 2, seed=5)
    exact = ksd_squared(x, score)
    approx = ksd_squared(x.float(), score.float())
    assert approx.dtype == F64  # float64 accumulation of float32 blocks
    torch.testing.assert_close(approx, exact, rtol=1e-5, atol=0.0)
    torch.testing.assert_close(ksd(x, score), exact.sqrt())


def test_median_bandwidth_exact_and_subsampled():
    x, _ = random_points(41, 2, seed=6)
    rows, cols = torch.triu_indices(41, 41, offset=1)
    pairs = (x[rows] - x[cols]).square().sum(dim=1).sort().values
    assert median_bandwidth_squared(x) == pytest.approx(float(pairs[(pairs.numel() - 1) // 2]))
    big, _ = random_points(3000, 2, seed=7)
    first = median_bandwidth_squared(big, max_points=500)
    assert first == median_bandwidth_squared(big, max_points=500)  # deterministic
    # The median of ‖X − X'‖² for N(0, I_2) is 2 χ²₂ median = 4 ln 2; 500 points are plenty.
    assert first == pytest.approx(4 * math.log(2), rel=0.1)
    assert median_bandwidth_squared(torch.zeros(5, 2, dtype=F64)) == 1.0  # collapsed samples


def test_input_validation():
    x, score = random_points(5, 2, seed=0)
    with pytest.raises(ValueError, match="shape"):
        ksd_squared(x, score[:, :1])
    with pytest.raises(ValueError, match="statistic"):
        ksd_squared(x, score, statistic="w")
    with pytest.raises(ValueError, match="valid kernels: imq, rbf"):
        ksd_squared(x, score, kernel="gauss")


# -- energy distance -------------------------------------------------------------------------------
def brute_energy(x, y):
    def mean_distance(a, b):
        return sum(float((a[i] - b[j]).norm()) for i in range(len(a)) for j in range(len(b))) / (
            len(a) * len(b))
    return 2 * mean_distance(x, y) - mean_distance(x, x) - mean_distance(y, y)


def test_energy_distance_matches_brute_force():
    x, _ = random_points(23, 3, seed=8)
    y, _ = random_points(17, 3, seed=9)
    y = y + 0.5
    value = energy_distance(x, y, chunk_size=5)
    assert float(value) == pytest.approx(brute_energy(x, y), rel=1e-10)
    assert float(energy_distance(x, y, chunk_size=1000)) == pytest.approx(float(value), rel=1e-12)
    assert float(energy_distance(y, x)) == pytest.approx(float(value), rel=1e-12)
    assert value > 0


def test_energy_distance_of_identical_sets_is_zero():
    x, _ = random_points(31, 2, seed=10)
    assert abs(float(energy_distance(x, x, chunk_size=4))) < 1e-13
    assert abs(float(energy_distance(x.float(), x.float()))) < 1e-6
    # Within-set mean over all n² pairs (zero diagonal included) matches the cross form.
    torch.testing.assert_close(mean_pairwise_distance(x, None, chunk_size=6),
                               mean_pairwise_distance(x, x.clone(), chunk_size=6))


# -- modes -----------------------------------------------------------------------------------------
def test_mode_metrics_hand_built():
    modes = Modes(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=F64),
                  torch.tensor([0.5, 0.3, 0.2], dtype=F64))
    x = torch.tensor([[0.1, 0.2], [-1.0, 1.0], [4.0, 0.0], [9.0, 1.0], [6.0, 0.0],
                      [0.0, 5.1], [8.0, 8.5], [0.0, -3.0], [1.0, 1.0],
                      [float("nan"), 0.0]], dtype=F64)
    assert assign_to_modes(x, modes).tolist() == [0, 0, 0, 1, 1, 2, 2, 0, 0, -1]
    torch.testing.assert_close(mode_weights(x, modes), torch.tensor([0.5, 0.2, 0.2], dtype=F64))
    assert float(mode_weight_error(x, modes)) == pytest.approx(0.1)
    assert float(mode_recall(x, modes)) == 1.0
    collapsed = torch.zeros(8, 2, dtype=F64)
    assert float(mode_recall(collapsed, modes)) == pytest.approx(1 / 3)
    assert float(mode_weight_error(collapsed, modes)) == pytest.approx(0.5)
    # Exactly half the expected share still counts as recalled (≥), just below does not.
    half = torch.tensor([[0.0, 0.0]] * 7 + [[10.0, 0.0]] * 2 + [[0.0, 10.0]], dtype=F64)
    half_modes = Modes(modes.locations, torch.tensor([0.5, 0.4, 0.1], dtype=F64))
    assert float(mode_recall(half, half_modes)) == 1.0
    below = Modes(modes.locations, torch.tensor([0.5, 0.3, 0.2 + 1e-9], dtype=F64))
    assert float(mode_recall(half, below)) == pytest.approx(2 / 3)


# -- registry --------------------------------------------------------------------------------------
#: The sample-quality metrics of this module; family modules (BLR, EBM) add their own entries.
CORE_METRICS = {"ksd", "ksd_rbf", "ksd_u", "energy_distance", "mode_weight_error", "mode_recall"}


def test_registry_entries():
    assert CORE_METRICS <= set(METRICS)
    for name, metric in METRICS.items():
        assert metric.name == name and metric.pretty_name and metric.description
    for name in CORE_METRICS:
        assert METRICS[name].requires <= {"score", "reference", "modes"}
    assert not METRICS["mode_recall"].lower_is_better
    assert "median" in METRICS["ksd_rbf"].description


def test_supported_metrics_follow_provides():
    # ESS asks nothing of the target (it needs the sampler's chain trace instead), so every
    # target supports it.
    assert supported_metrics(NoReference(2)) == ["ksd", "ksd_rbf", "ksd_u", "ess"]
    # Sample-distance metrics need exact reference samples; mode metrics need modes.
    assert supported_metrics(Gaussian(2)) == ["ksd", "ksd_rbf", "ksd_u", "energy_distance",
                                              "sliced_wasserstein", "w2", "mmd",
                                              "knn_precision", "knn_recall", "ess"]
    assert set(supported_metrics(TwoModes())) >= CORE_METRICS


def test_evaluate_metric_errors():
    target = NoReference(2)
    context = MetricContext(reference=None, generator=make_generator(0))
    x = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match="unknown metric 'kds'.*valid metrics: .*energy_distance"):
        evaluate_metric("kds", x, target, context)
    with pytest.raises(MetricRequirementError, match="requires reference"):
        evaluate_metric("energy_distance", x, target, context)
    with pytest.raises(MetricRequirementError, match="requires modes"):
        evaluate_metric("mode_recall", x, target, context)
    with pytest.raises(MetricRequirementError, match="needs reference samples"):
        evaluate_metric("energy_distance", x, Gaussian(2), context)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        evaluate_metric("ksd", torch.zeros(4, 3), target, context)
    with pytest.raises(MetricRequirementError, match="needs exact samples"):
        reference_floor("ksd", target, 10, make_generator(0))


def test_evaluate_metric_values_and_context():
    target = TwoModes()
    generator = make_generator(11)
    x = target.sample(300, generator)
    reference = target.sample(200, generator)
    context = MetricContext(reference=reference, generator=generator)
    score = target.score(x)
    # Samples are cast to the target's dtype; the KSD uses the target's own score.
    assert evaluate_metric("ksd", x.float(), target, context) == pytest.approx(
        float(ksd(x, score)), rel=1e-5)
    assert evaluate_metric("ksd_rbf", x, target, context) == pytest.approx(
        float(ksd(x, score, "rbf")), rel=1e-12)
    assert evaluate_metric("ksd_u", x, target, context) == pytest.approx(
        float(ksd_squared(x, score, statistic="u")), rel=1e-12)
    assert evaluate_metric("energy_distance", x, target, context) == pytest.approx(
        float(energy_distance(x, reference)), rel=1e-12)
    assert evaluate_metric("mode_weight_error", x, target, context) == pytest.approx(
        float(mode_weight_error(x, target.modes())))
    assert evaluate_metric("mode_recall", x, target, context) == 1.0


def test_reference_floor_is_reproducible_and_draws_two_sets():
    target = Gaussian(2)
    mean, std = reference_floor("energy_distance", target, 50, make_generator(3), num_repeats=3)
    again = reference_floor("energy_distance", target, 50, make_generator(3), num_repeats=3)
    assert (mean, std) == again and mean > 0 and std > 0
    # One repeat = samples then an independent reference set, both from the generator in order.
    generator = make_generator(4)
    x, reference = target.sample(50, generator), target.sample(50, generator)
    single, single_std = reference_floor("energy_distance", target, 50, make_generator(4))
    assert single == pytest.approx(float(energy_distance(x, reference)), rel=1e-12)
    assert math.isnan(single_std)
