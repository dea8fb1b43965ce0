"""What each metric is, without computing it: table header, direction, floor mark, needs.

:data:`METRIC_INFO` is the one declaration of a metric's name, pretty name, requirements and
direction. The computing side (:data:`benchmark.metrics.registry.METRICS`) builds every
:class:`~benchmark.metrics.base.Metric` from its entry here, adding the function, the
description and the optional floor. This module imports nothing but the standard library, so
reports (tables, captions, ``compare``) and matrix validation read it without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass

SCORE = frozenset({"score"})
REFERENCE = frozenset({"reference"})
MODES = frozenset({"modes"})
PREDICTIVE = frozenset({"predictive"})
MOMENTS = frozenset({"posterior_moments"})
IMAGES = frozenset({"images"})
#: An image target whose reference is a stored long MCMC run (the image EBMs); targets with
#: exact samples (the MFA image targets) do not need one and do not provide it.
MCMC_REFERENCE = frozenset({"images", "mcmc_reference"})
EXACT_IMAGES = frozenset({"images", "reference"})
#: What the sampler's run must record besides its samples: the chain trace (the positions of
#: the first chains after every transition of the run's second half), which the runner records
#: only for Markov-chain samplers and only when a metric of the cell needs it
#: (:mod:`benchmark.metrics.ess`).
TRACE = frozenset({"trace"})
NOTHING: frozenset[str] = frozenset()
#: The chain trace's shape (its rationale: :mod:`benchmark.metrics.ess`): the first
#: ``min(TRACE_CHAINS, n)`` chains, at most ``TRACE_DRAWS`` draws per chain. Declared here so
#: that reports can state them without loading torch.
TRACE_CHAINS = 32
TRACE_DRAWS = 1000


@dataclass(frozen=True)
class MetricInfo:
    """A metric as reports and validation see it.

    Attributes:
        name: registry key.
        pretty_name: column header in tables.
        requires: subset of ``Target.provides`` (``"score"``, ``"reference"``, ``"modes"``, ...).
        lower_is_better: direction for "best" marks and regression checks.
        flag_below_floor: tables flag values below the reference floor. True for the
            discrepancies (KSD, energy distance), where exact samples set a noise floor and
            beating it usually means missed tails or modes
            (docs/metrics.md#below-floor-dagger); False for summaries such as mode weights,
            where a deterministic particle set can beat iid samples.
        sampler_requires: what the cell's sampler run must provide besides its samples:
            ``"trace"`` (:data:`TRACE`) for metrics of the chain itself (``ess``). Target
            capabilities stay in ``requires``; a metric the sampler cannot serve gets NaN with
            the reason (docs/metrics.md#effective-sample-size).
    """

    name: str
    pretty_name: str
    requires: frozenset[str]
    lower_is_better: bool = True
    flag_below_floor: bool = False
    sampler_requires: frozenset[str] = NOTHING


#: Every metric, in registry order (the order of ``list`` and of ``supported_metrics``).
METRIC_INFO: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo("ksd", "KSD (IMQ)", SCORE, flag_below_floor=True),
        MetricInfo("ksd_rbf", "KSD (RBF)", SCORE, flag_below_floor=True),
        MetricInfo("ksd_u", "KSD² (IMQ, U)", SCORE),
        MetricInfo("energy_distance", "Energy distance", REFERENCE, flag_below_floor=True),
        MetricInfo("mode_weight_error", "Mode weight error", MODES),
        MetricInfo("mode_recall", "Mode recall", MODES, lower_is_better=False),
        MetricInfo("emc", "EMC", MODES, lower_is_better=False),
        MetricInfo("sliced_wasserstein", "Sliced W2", REFERENCE, flag_below_floor=True),
        MetricInfo("w2", "W2 (exact)", REFERENCE, flag_below_floor=True),
        MetricInfo("mmd", "MMD² (RBF, U)", REFERENCE),
        MetricInfo("knn_precision", "k-NN precision", REFERENCE, lower_is_better=False),
        MetricInfo("knn_recall", "k-NN recall", REFERENCE, lower_is_better=False),
        # Chain efficiency of Markov-chain samplers (benchmark/metrics/ess.py)
        MetricInfo("ess", "min ESS / evaluation", NOTHING, lower_is_better=False,
                   sampler_requires=TRACE),
        # Bayesian logistic regression (benchmark/metrics/blr.py)
        MetricInfo("accuracy", "Test accuracy", PREDICTIVE, lower_is_better=False),
        MetricInfo("test_loglik", "Test log-likelihood", PREDICTIVE, lower_is_better=False),
        MetricInfo("mean_error", "Posterior mean error", MOMENTS),
        MetricInfo("std_error", "Posterior std error", MOMENTS),
        # Image EBMs (benchmark/metrics/images.py)
        MetricInfo("fid_data", "FID (data)", IMAGES),
        MetricInfo("fid_ref", "FID (EBM ref.)", MCMC_REFERENCE),
        MetricInfo("fid_exact", "FID (exact)", EXACT_IMAGES),
        MetricInfo("class_tv", "Class TV", IMAGES),
        MetricInfo("class_max_share", "Max class share", IMAGES),
    )
}


def needs_trace(metrics) -> bool:
    """Whether any of ``metrics`` (names; unknown ones ignored) needs the chain trace."""
    return any("trace" in METRIC_INFO[name].sampler_requires
               for name in metrics if name in METRIC_INFO)


def lower_is_better(metric: str) -> bool | None:
    """Direction of a metric; ``None`` for a name outside :data:`METRIC_INFO`."""
    info = METRIC_INFO.get(metric)
    return None if info is None else info.lower_is_better


__all__ = ["METRIC_INFO", "TRACE", "TRACE_CHAINS", "TRACE_DRAWS", "MetricInfo", "lower_is_better",
           "needs_trace"]
