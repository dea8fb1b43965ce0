"""k-NN precision and recall (benchmark/metrics/support.py): exact cases and the registry.

Every test is deterministic (fixed point sets or a fixed generator seed), so none has a
false-failure budget; where a value depends on random points, the bound is far from it and
stated with its reason.
"""

from __future__ import annotations

import torch

from benchmark.metrics.base import MetricContext
from benchmark.metrics.registry import METRICS, reference_floor
from benchmark.metrics.support import knn_precision, knn_radii, knn_recall, share_inside
from targets import make_generator, make_target


def grid(side: int, spacing: float = 1.0) -> torch.Tensor:
    """``side²`` points of a square grid, ``(side², 2)``."""
    axis = torch.arange(side, dtype=torch.float64) * spacing
    return torch.cartesian_prod(axis, axis)


def test_radii_are_the_distance_to_the_kth_other_point():
    # On a unit grid an interior point has 4 neighbours at 1 and 4 at sqrt(2): k = 3 gives 1,
    # k = 5 gives sqrt(2); a corner has 2 at 1 and 1 at sqrt(2), so k = 3 gives sqrt(2).
    points = grid(5)
    centre = 12  # (2, 2)
    assert knn_radii(points, 3)[centre] == 1.0
    torch.testing.assert_close(knn_radii(points, 5)[centre], torch.tensor(2.0).sqrt().double())
    torch.testing.assert_close(knn_radii(points, 3)[0], torch.tensor(2.0).sqrt().double())


def test_identical_sets_score_one_and_far_sets_score_zero():
    points = grid(6)
    assert knn_precision(points, points) == 1.0
    assert knn_recall(points, points) == 1.0
    far = points + 100.0
    assert knn_precision(far, points) == 0.0
    assert knn_recall(far, points) == 0.0


def test_a_narrow_sampler_keeps_precision_and_loses_recall():
    # Samples on the inner 4 x 4 block of a 10 x 10 reference grid: every sample is a
    # reference point (precision 1); the samples' balls (radius 1, and sqrt(2) at the block's
    # four corners) reach the block and the ring of points around it, corners included: the
    # 6 x 6 block around it, 36 of the 100 reference points. Integer coordinates make every
    # distance exact in float64.
    reference = grid(10)
    inner = reference[((reference >= 3) & (reference <= 6)).all(dim=1)]
    assert inner.shape[0] == 16
    assert knn_precision(inner, reference) == 1.0
    assert knn_recall(inner, reference) == 0.36


def test_recall_is_precision_with_the_roles_swapped():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, generator=generator, dtype=torch.float64)
    y = 1.5 * torch.randn(400, 3, generator=generator, dtype=torch.float64)
    assert knn_recall(x, y) == knn_precision(y, x)


def test_non_finite_rows_count_against_precision_and_own_no_ball():
    reference = grid(6)
    broken = reference.clone()
    broken[:9] = float("nan")
    # 27 finite rows, each a reference point, of 36: precision 27 / 36.
    assert knn_precision(broken, reference) == 27 / 36
    assert knn_recall(broken, reference) == knn_recall(reference[9:], reference)
    assert knn_recall(torch.full((5, 2), float("nan"), dtype=torch.float64), reference) == 0.0


def test_blocks_give_the_same_answer_as_one_matrix(monkeypatch):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(700, 2, generator=generator, dtype=torch.float64)
    y = torch.randn(500, 2, generator=generator, dtype=torch.float64)
    whole = (knn_precision(x, y), knn_recall(x, y))
    monkeypatch.setattr("benchmark.metrics.support.CHUNK_SIZE", 64)
    assert (knn_precision(x, y), knn_recall(x, y)) == whole
    assert share_inside(x, y, knn_radii(y)) == whole[0]


def test_registered_metrics_separate_a_narrow_sampler_from_exact_samples():
    # Standard 2-D Gaussian, n = 1000: exact samples against a second exact set score high on
    # both (floor), samples of N(0, 0.3² I) keep precision and lose recall. The bounds (0.85;
    # recall below 0.7) are far from the values seen over seeds 0-2 (floor 0.97-0.99,
    # precision 0.98-1.0, recall 0.39-0.51); the seed is fixed anyway.
    target = make_target("gaussian")
    generator = make_generator(3)
    reference = target.sample(1000, generator)
    narrow = 0.3 * target.sample(1000, generator)
    context = MetricContext(reference=reference, generator=generator)
    floor_precision, _ = reference_floor("knn_precision", target, 1000, generator)
    floor_recall, _ = reference_floor("knn_recall", target, 1000, generator)
    assert min(floor_precision, floor_recall) > 0.85
    assert METRICS["knn_precision"](narrow, target, context) > 0.85
    assert METRICS["knn_recall"](narrow, target, context) < 0.7
    assert not METRICS["knn_recall"].lower_is_better
