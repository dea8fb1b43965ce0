"""The metric registry: one signature, declared requirements, one plain dict.

Every metric is ``fn(samples, target, context) -> float`` with ``samples`` of shape ``(n, dim)``,
the *unwrapped* target (metric evaluations, e.g. the score inside KSD, are not sampler cost)
and a :class:`MetricContext` carrying the reference samples drawn for this evaluation and a
generator. ``Metric.requires`` is a subset of ``Target.provides``; :func:`supported_metrics`
lists what applies to a target, and :func:`evaluate_metric` raises
:class:`MetricRequirementError` (with the reason, for the result row) when something is missing.

Noise floors: exact samples do not score 0. :func:`reference_floor` evaluates the same statistic
on ``n`` exact reference samples (for sample distances, against a second independent reference
set of the same size), so tables can show the floor row at the evaluation ``n``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.metrics.coverage import entropic_mode_coverage
from benchmark.metrics.distances import energy_distance
from benchmark.metrics.ksd import (
    IMQKernel,
    KernelName,
    ksd,
    ksd_squared,
    score_in_chunks,
)
from benchmark.metrics.modes import mode_recall, mode_weight_error
from benchmark.metrics.transport import (
    NUM_PROJECTIONS,
    W2_MAX_POINTS,
    mmd_squared,
    sliced_wasserstein2,
    wasserstein2,
)
from targets.base import Target
from targets.precision import exact_float32


@dataclass(frozen=True)
class MetricContext:
    """What a metric may use besides the samples and the target.

    Attributes:
        reference: ``(n, dim)`` reference samples drawn for this evaluation, ``None`` if the
            target has no reference sampler.
        generator: for anything random inside a metric.
    """

    reference: Tensor | None
    generator: torch.Generator


@dataclass(frozen=True)
class Metric:
    """A registry entry.

    Attributes:
        name: registry key.
        pretty_name: column header in tables.
        description: one line, stating every rule (kernel, bandwidth, statistic).
        fn: ``(samples (n, dim), target, context) -> value``.
        requires: subset of ``Target.provides`` (``"score"``, ``"reference"``, ``"modes"``).
        lower_is_better: direction for "best" marks and regression checks.
        flag_below_floor: tables flag values below the reference floor. True for the
            discrepancies (KSD, energy distance), where exact samples set a noise floor and
            beating it usually means missed tails or modes
            (docs/metrics.md#below-floor-dagger); False for summaries such as mode weights,
            where a deterministic particle set can beat iid samples.
        floor: ``(target, n, generator) -> value``, the metric's own noise floor at ``n`` for
            targets without exact samples (no ``"reference"``), e.g. image metrics on ``n``
            training images; None where the floor needs exact samples.
    """

    name: str
    pretty_name: str
    description: str
    fn: Callable[[Tensor, Target, MetricContext], float]
    requires: frozenset[str]
    lower_is_better: bool = True
    flag_below_floor: bool = False
    floor: Callable[[Target, int, torch.Generator], float] | None = None

    def __call__(self, samples: Tensor, target: Target, context: MetricContext) -> float:
        """``fn`` in full float32 on CUDA, also where a target allows TF32 (targets.precision)."""
        with exact_float32():
            return self.fn(samples, target, context)


class MetricRequirementError(ValueError):
    """A metric cannot be evaluated for this target/context; the message is the reason."""


def _target_score(samples: Tensor, target: Target) -> Tensor:
    return score_in_chunks(target.score, samples)


def _ksd_metric(kernel: KernelName, statistic: str, root: bool
                ) -> Callable[[Tensor, Target, MetricContext], float]:
    def fn(samples: Tensor, target: Target, context: MetricContext) -> float:
        score = _target_score(samples, target)
        if root:
            return float(ksd(samples, score, kernel=kernel, statistic=statistic))
        return float(ksd_squared(samples, score, kernel=kernel, statistic=statistic))
    return fn


def _energy_distance(samples: Tensor, target: Target, context: MetricContext) -> float:
    return float(energy_distance(samples, context.reference))


def _mode_weight_error(samples: Tensor, target: Target, context: MetricContext) -> float:
    return float(mode_weight_error(samples, target.modes()))


def _mode_recall(samples: Tensor, target: Target, context: MetricContext) -> float:
    return float(mode_recall(samples, target.modes()))


def _entropic_mode_coverage(samples: Tensor, target: Target, context: MetricContext) -> float:
    return float(entropic_mode_coverage(samples, target.modes()))


def _sliced_w2(samples: Tensor, target: Target, context: MetricContext) -> float:
    return float(sliced_wasserstein2(samples, context.reference, context.generator))


def _w2(samples: Tensor, target: Target, context: MetricContext) -> float:
    return float(wasserstein2(samples, context.reference, context.generator))


def _mmd_u(samples: Tensor, target: Target, context: MetricContext) -> float:
    return float(mmd_squared(samples, context.reference))


_IMQ = IMQKernel()
_SCORE = frozenset({"score"})

METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("ksd", "KSD (IMQ)",
               f"sqrt of the V-statistic KSD^2 with the IMQ kernel (c^2 + |x-y|^2)^beta, "
               f"c = {_IMQ.c:g}, beta = {_IMQ.beta:g}",
               _ksd_metric("imq", "v", root=True), _SCORE, flag_below_floor=True),
        Metric("ksd_rbf", "KSD (RBF)",
               "sqrt of the V-statistic KSD^2 with the RBF kernel exp(-|x-y|^2 / (2 h^2)), "
               "h^2 = median of squared pairwise sample distances (lower median; evenly "
               "strided subsample of 2000 points when n > 2000)",
               _ksd_metric("rbf", "v", root=True), _SCORE, flag_below_floor=True),
        Metric("ksd_u", "KSD² (IMQ, U)",
               f"U-statistic KSD^2 (unbiased, signed: may be negative) with the IMQ kernel, "
               f"c = {_IMQ.c:g}, beta = {_IMQ.beta:g}",
               _ksd_metric("imq", "u", root=False), _SCORE),
        Metric("energy_distance", "Energy distance",
               "V-statistic energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| to reference samples; "
               "floor: two independent reference sets at the same n",
               _energy_distance, frozenset({"reference"}), flag_below_floor=True),
        Metric("mode_weight_error", "Mode weight error",
               "max_k |w_hat_k - w_k|, samples assigned to the nearest mode location",
               _mode_weight_error, frozenset({"modes"})),
        Metric("mode_recall", "Mode recall",
               "fraction of modes receiving at least half their expected share (nearest mode)",
               _mode_recall, frozenset({"modes"}), lower_is_better=False),
        Metric("emc", "EMC",
               "entropic mode coverage -sum_k p_k log p_k / log K, p_k the share of finite "
               "samples assigned to mode k (nearest mode location); product targets "
               "(manywell32): mean over factors of the per-factor value over its local modes",
               _entropic_mode_coverage, frozenset({"modes"}), lower_is_better=False),
        Metric("sliced_w2", "Sliced W2",
               f"sliced Wasserstein-2 to reference samples: sqrt of the mean over "
               f"{NUM_PROJECTIONS} random directions (uniform on the sphere, from the context "
               f"generator) of the 1-D W2^2 of the projections (POT); floor: two independent "
               f"reference sets at the same n",
               _sliced_w2, frozenset({"reference"}), flag_below_floor=True),
        Metric("w2", "W2 (exact)",
               f"exact Wasserstein-2 to reference samples, squared Euclidean cost, POT network "
               f"simplex (ot.emd2) on random subsamples of at most {W2_MAX_POINTS} points of "
               f"each set (from the context generator); floor: two independent reference sets "
               f"at the same n",
               _w2, frozenset({"reference"}), flag_below_floor=True),
        Metric("mmd_u", "MMD² (RBF, U)",
               "unbiased U-statistic MMD^2 to reference samples (signed: may be negative) with "
               "the RBF kernel exp(-|x-y|^2 / (2 h^2)), h^2 = median of squared pairwise "
               "distances of the reference samples (lower median; evenly strided subsample of "
               "2000 points when m > 2000)",
               _mmd_u, frozenset({"reference"})),
    )
}


# Family-specific metrics live in their own modules and join the one registry here.
from benchmark.metrics.blr import BLR_METRICS  # noqa: E402 - needs Metric defined above

METRICS.update(BLR_METRICS)
from benchmark.metrics.images import IMAGE_METRICS  # noqa: E402

METRICS.update(IMAGE_METRICS)


def _get(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric '{name}'; valid metrics: "
                         f"{', '.join(sorted(METRICS))}") from None


def supported_metrics(target: Target) -> list[str]:
    """Registry names whose requirements the target provides, in registry order."""
    provides = target.provides
    return [name for name, metric in METRICS.items() if metric.requires <= provides]


def evaluate_metric(name: str, samples: Tensor, target: Target, context: MetricContext) -> float:
    """Evaluate one registered metric.

    Samples are moved to the target's device and dtype first (stored samples may come back on
    the CPU).

    Args:
        name: a key of :data:`METRICS`.
        samples: ``(n, dim)``.
        target: the unwrapped target.
        context: reference samples and generator.

    Raises:
        ValueError: unknown name (the message lists the valid names) or samples of the wrong shape.
        MetricRequirementError: the target does not provide what the metric requires, or the
            metric needs reference samples and ``context.reference`` is ``None``.
    """
    metric = _get(name)
    missing = metric.requires - target.provides
    if missing:
        raise MetricRequirementError(
            f"metric '{name}' requires {', '.join(sorted(missing))}, which target "
            f"'{target.name}' does not provide")
    if "reference" in metric.requires and context.reference is None:
        raise MetricRequirementError(f"metric '{name}' needs reference samples in the context")
    if samples.ndim != 2 or samples.shape[1] != target.dim:
        raise ValueError(f"samples must have shape (n, {target.dim}) for target "
                         f"'{target.name}', got {tuple(samples.shape)}")
    samples = samples.to(device=target.device, dtype=target.dtype)
    if context.reference is not None:
        context = MetricContext(context.reference.to(device=target.device, dtype=target.dtype),
                                context.generator)
    return float(metric(samples, target, context))


def reference_floor(name: str, target: Target, n: int, generator: torch.Generator,
                    num_repeats: int = 1) -> tuple[float, float]:
    """The metric's noise floor: its value on ``n`` exact reference samples.

    Each repeat draws ``n`` samples from ``target.sample`` and, for metrics that need reference
    samples, a second independent set of ``n`` as the context's reference. Everything is drawn
    from ``generator`` in that order, so the floor is reproducible from its seed.

    Args:
        name: a key of :data:`METRICS`.
        target: must provide ``"reference"``.
        n: evaluation sample size (the same ``n`` as the sampler rows it is compared with).
        generator: on the target's device.
        num_repeats: independent repeats.

    Returns:
        ``(mean, std)`` over repeats; ``std`` is the sample standard deviation (ddof = 1), NaN
        when ``num_repeats == 1``.
    """
    metric = _get(name)
    if "reference" not in target.provides:
        raise MetricRequirementError(f"the floor of metric '{name}' needs exact samples, which "
                                     f"target '{target.name}' does not provide")
    if num_repeats < 1:
        raise ValueError(f"num_repeats must be at least 1, got {num_repeats}")
    values = []
    for _ in range(num_repeats):
        samples = target.sample(n, generator)
        reference = target.sample(n, generator) if "reference" in metric.requires else None
        values.append(evaluate_metric(name, samples, target, MetricContext(reference, generator)))
    return statistics.fmean(values), statistics.stdev(values) if num_repeats > 1 else math.nan


__all__ = [
    "METRICS",
    "Metric",
    "MetricContext",
    "MetricRequirementError",
    "evaluate_metric",
    "reference_floor",
    "supported_metrics",
]
