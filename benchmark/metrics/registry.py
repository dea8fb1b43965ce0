"""The metric registry: every metric by name, in one plain dict, and how to evaluate one.

Each :class:`~benchmark.metrics.base.Metric` is its declaration in
:data:`benchmark.metrics.info.METRIC_INFO` plus its function (signature:
:mod:`benchmark.metrics.base`); the family metrics of :mod:`benchmark.metrics.blr` and
:mod:`benchmark.metrics.images` join here. ``Metric.requires`` is a subset of
``Target.provides``; :func:`supported_metrics` lists what applies to a target, and
:func:`evaluate_metric` raises :class:`~benchmark.metrics.base.MetricRequirementError` (with the
reason, for the result row) when something is missing.

Noise floors: exact samples do not score 0. :func:`reference_floor` evaluates the same statistic
on ``n`` exact reference samples (for sample distances, against a second independent reference
set of the same size), so tables can show the floor row at the evaluation ``n``.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable

import torch
from torch import Tensor

from benchmark.metrics.base import Metric, MetricContext, MetricRequirementError
from benchmark.metrics.blr import BLR_METRICS
from benchmark.metrics.coverage import entropic_mode_coverage
from benchmark.metrics.distances import energy_distance
from benchmark.metrics.ess import (
    MIN_TRACE_DRAWS,
    TRACE_CHAINS,
    TRACE_DRAWS,
    ess_per_evaluation,
    iid_trace,
)
from benchmark.metrics.images import IMAGE_METRICS
from benchmark.metrics.info import METRIC_INFO
from benchmark.metrics.ksd import (
    IMQKernel,
    KernelName,
    ksd,
    ksd_squared,
    score_in_chunks,
)
from benchmark.metrics.modes import mode_recall, mode_weight_error
from benchmark.metrics.support import K_NEAREST, knn_precision, knn_recall
from benchmark.metrics.transport import (
    NUM_PROJECTIONS,
    W2_MAX_POINTS,
    mmd_squared,
    sliced_wasserstein2,
    wasserstein2,
)
from targets.base import Target


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


def _knn_precision(samples: Tensor, target: Target, context: MetricContext) -> float:
    return float(knn_precision(samples, context.reference))


def _knn_recall(samples: Tensor, target: Target, context: MetricContext) -> float:
    return float(knn_recall(samples, context.reference))


_IMQ = IMQKernel()

_CORE_METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric.declared(
            "ksd", f"sqrt of the V-statistic KSD^2 with the IMQ kernel (c^2 + |x-y|^2)^beta, "
                   f"c = {_IMQ.c:g}, beta = {_IMQ.beta:g}",
            _ksd_metric("imq", "v", root=True)),
        Metric.declared(
            "ksd_rbf", "sqrt of the V-statistic KSD^2 with the RBF kernel exp(-|x-y|^2 / "
                       "(2 h^2)), h^2 = median of squared pairwise sample distances (lower "
                       "median; evenly strided subsample of 2000 points when n > 2000)",
            _ksd_metric("rbf", "v", root=True)),
        Metric.declared(
            "ksd_u", f"U-statistic KSD^2 (unbiased, signed: may be negative) with the IMQ "
                     f"kernel, c = {_IMQ.c:g}, beta = {_IMQ.beta:g}",
            _ksd_metric("imq", "u", root=False)),
        Metric.declared(
            "energy_distance", "V-statistic energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| to "
                               "reference samples; floor: two independent reference sets at "
                               "the same n",
            _energy_distance),
        Metric.declared(
            "mode_weight_error", "max_k |w_hat_k - w_k|, samples assigned to the nearest mode "
                                 "location",
            _mode_weight_error),
        Metric.declared(
            "mode_recall", "fraction of modes receiving at least half their expected share "
                           "(nearest mode)",
            _mode_recall),
        Metric.declared(
            "emc", "entropic mode coverage -sum_k p_k log p_k / log K, p_k the share of finite "
                   "samples assigned to mode k (nearest mode location); product targets "
                   "(manywell32): mean over factors of the per-factor value over its local "
                   "modes",
            _entropic_mode_coverage),
        Metric.declared(
            "sliced_wasserstein",
            f"sliced Wasserstein-2 to reference samples: sqrt of the mean over "
                         f"{NUM_PROJECTIONS} random directions (uniform on the sphere, from the "
                         f"context generator) of the 1-D W2^2 of the projections (POT); floor: "
                         f"two independent reference sets at the same n",
            _sliced_w2),
        Metric.declared(
            "w2", f"exact Wasserstein-2 to reference samples, squared Euclidean cost, POT "
                  f"network simplex (ot.emd2) on random subsamples of at most {W2_MAX_POINTS} "
                  f"points of each set (from the context generator); floor: two independent "
                  f"reference sets at the same n",
            _w2),
        Metric.declared(
            "mmd", "unbiased U-statistic MMD^2 to reference samples (signed: may be negative) "
                     "with the RBF kernel exp(-|x-y|^2 / (2 h^2)), h^2 = median of squared "
                     "pairwise distances of the reference samples (lower median; evenly strided "
                     "subsample of 2000 points when m > 2000)",
            _mmd_u),
        Metric.declared(
            "knn_precision", f"share of the samples inside the union of balls around the "
                             f"reference samples, each of radius the distance to its "
                             f"k-th nearest reference neighbour, k = {K_NEAREST} (Kynkaanniemi "
                             f"et al. 2019); floor: two independent reference sets at the same n",
            _knn_precision),
        Metric.declared(
            "knn_recall", f"share of the reference samples inside the union of balls around the "
                          f"samples, each of radius the distance to its k-th nearest sample "
                          f"neighbour, k = {K_NEAREST} (Kynkaanniemi et al. 2019); floor: two "
                          f"independent reference sets at the same n",
            _knn_recall),
        Metric.declared(
            "ess", f"min over coordinates of ArviZ bulk ESS (rank-normalised, split chains) of "
                   f"the first min({TRACE_CHAINS}, n) chains over the second half of the run "
                   f"(warm-up discarded; thinned to at most {TRACE_DRAWS} draws per chain, at "
                   f"least {MIN_TRACE_DRAWS}), divided by chains x target evaluations per chain "
                   f"over those transitions; Markov-chain samplers only (ula, mala, hmc, pt, "
                   f"pyro_nuts), NaN with the reason for the others; floor: an i.i.d. trace of "
                   f"exact samples charged one evaluation per draw",
            ess_per_evaluation),
    )
}


def _registry(*families: dict[str, Metric]) -> dict[str, Metric]:
    """One dict of every family's metrics, in the order of ``METRIC_INFO``; each declared
    metric has exactly one function."""
    built = {name: metric for family in families for name, metric in family.items()}
    if set(built) != set(METRIC_INFO) or sum(map(len, families)) != len(built):
        raise RuntimeError(f"metrics declared in benchmark.metrics.info and metrics with a "
                           f"function differ: {sorted(set(built) ^ set(METRIC_INFO))}")
    return {name: built[name] for name in METRIC_INFO}


#: Every metric by name: the core metrics above, then the BLR and image families.
METRICS: dict[str, Metric] = _registry(_CORE_METRICS, BLR_METRICS, IMAGE_METRICS)


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
    if "trace" in metric.sampler_requires and context.trace is None:
        raise MetricRequirementError(f"metric '{name}' needs the chain trace of a Markov-chain "
                                     f"sampler in the context")
    if samples.ndim != 2 or samples.shape[1] != target.dim:
        raise ValueError(f"samples must have shape (n, {target.dim}) for target "
                         f"'{target.name}', got {tuple(samples.shape)}")
    samples = samples.to(device=target.device, dtype=target.dtype)
    if context.reference is not None:
        context = dataclasses.replace(
            context, reference=context.reference.to(device=target.device, dtype=target.dtype))
    return float(metric(samples, target, context))


def reference_floor(name: str, target: Target, n: int, generator: torch.Generator,
                    num_repeats: int = 1) -> tuple[float, float]:
    """The metric's noise floor: its value on ``n`` exact reference samples.

    Each repeat draws ``n`` samples from ``target.sample`` and, for metrics that need reference
    samples, a second independent set of ``n`` as the context's reference, and for metrics of
    the chain trace (``ess``) an i.i.d. trace (:func:`benchmark.metrics.ess.iid_trace`).
    Everything is drawn from ``generator`` in that order, so the floor is reproducible from
    its seed.

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
        context = MetricContext(reference, generator)
        if "trace" in metric.sampler_requires:
            trace = iid_trace(target, n, generator)
            context = dataclasses.replace(context, trace=trace.positions, trace_nfe=trace.nfe)
        values.append(evaluate_metric(name, samples, target, context))
    return statistics.fmean(values), statistics.stdev(values) if num_repeats > 1 else math.nan


__all__ = ["METRICS", "evaluate_metric", "reference_floor", "supported_metrics"]
