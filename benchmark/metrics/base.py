"""The metric signature: :class:`Metric`, the :class:`MetricContext` it is called with, and
:class:`MetricRequirementError`.

Every metric is ``fn(samples, target, context) -> float`` with ``samples`` of shape
``(n, dim)``, the *unwrapped* target (metric evaluations, e.g. the score inside KSD, are not
sampler cost) and a :class:`MetricContext` carrying the reference samples drawn for this
evaluation and a generator. The family modules (:mod:`benchmark.metrics.blr`,
:mod:`benchmark.metrics.images`) and the registry (:mod:`benchmark.metrics.registry`) build on
this module; it imports none of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.metrics.info import METRIC_INFO, MetricInfo
from targets.base import Target
from targets.precision import exact_float32


@dataclass(frozen=True)
class MetricContext:
    """What a metric may use besides the samples and the target.

    Attributes:
        reference: ``(n, dim)`` reference samples drawn for this evaluation, ``None`` if the
            target has no reference sampler.
        generator: for anything random inside a metric.
        trace: ``(chains, draws, dim)`` chain trace of the run (positions of the first chains
            after the kept transitions of its second half, on the CPU), for metrics with
            ``sampler_requires = {"trace"}`` (:mod:`benchmark.metrics.ess`); ``None`` when
            the sampler is not a Markov chain or no metric of the cell needs it.
        trace_nfe: target evaluations per chain over the transitions the trace spans.
    """

    reference: Tensor | None
    generator: torch.Generator
    trace: Tensor | None = None
    trace_nfe: float | None = None


@dataclass(frozen=True, kw_only=True)
class Metric(MetricInfo):
    """A registry entry: the metric's :class:`~benchmark.metrics.info.MetricInfo` and how to
    compute it.

    Attributes:
        description: one line, stating every rule (kernel, bandwidth, statistic).
        fn: ``(samples (n, dim), target, context) -> value``.
        floor: ``(target, n, generator) -> value``, the metric's own noise floor at ``n`` for
            targets without exact samples (no ``"reference"``), e.g. image metrics on ``n``
            training images; None where the floor needs exact samples.
    """

    description: str
    fn: Callable[[Tensor, Target, MetricContext], float]
    floor: Callable[[Target, int, torch.Generator], float] | None = None

    @classmethod
    def declared(cls, name: str, description: str,
                 fn: Callable[[Tensor, Target, MetricContext], float],
                 floor: Callable[[Target, int, torch.Generator], float] | None = None) -> Metric:
        """The metric ``name`` of :data:`~benchmark.metrics.info.METRIC_INFO` with its function."""
        info = METRIC_INFO[name]
        fields = {item.name: getattr(info, item.name) for item in dataclasses.fields(MetricInfo)}
        return cls(**fields, description=description, fn=fn, floor=floor)

    def __call__(self, samples: Tensor, target: Target, context: MetricContext) -> float:
        """``fn`` in full float32 on CUDA, also where a target allows TF32 (targets.precision)."""
        with exact_float32():
            return self.fn(samples, target, context)


class MetricRequirementError(ValueError):
    """A metric cannot be evaluated for this target/context; the message is the reason."""


__all__ = ["Metric", "MetricContext", "MetricRequirementError"]
