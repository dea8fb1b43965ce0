"""Bayesian logistic regression metrics (docs/metrics.md#blr-metrics).

* ``accuracy`` / ``test_loglik``: the test-split accuracy and mean log-likelihood of the
  predictive averaged over the samples first, ``p_t = mean_m sigma(y_t w_m^T x_t)``
  (docs/targets.md#predictive-evaluation); they need a target that ``provides`` ``"predictive"``.
* ``mean_error`` / ``std_error``: distance of the samples' per-coordinate moments from the
  stored reference posterior (``"posterior_moments"``), in units of the reference s.d. so that
  ``log alpha`` and the weights weigh alike whatever their scale:

      mean_error = sqrt(mean_i ((mean_hat_i - mean_i) / std_i)^2),
      std_error  = sqrt(mean_i ((std_hat_i - std_i) / std_i)^2).

  Exact samples do not score 0: at ``n`` iid draws their expectations are about
  ``sqrt(1/n)`` and ``sqrt(1/(2n))`` (0.1 and 0.07 at n = 100); the table's floor row shows the
  value on ``n`` reference draws.
"""

from __future__ import annotations

import torch
from torch import Tensor

from benchmark.metrics.base import Metric, MetricContext
from targets.base import Target


def accuracy(samples: Tensor, target: Target, context: MetricContext) -> float:
    """Test accuracy of the posterior-averaged predictive; samples ``(n, d + 1)``."""
    return target.test_accuracy(samples)


def test_log_likelihood(samples: Tensor, target: Target, context: MetricContext) -> float:
    """Mean test log-likelihood of the posterior-averaged predictive."""
    return target.test_log_likelihood(samples)


def standardised_moment_errors(samples: Tensor, mean: Tensor, std: Tensor) -> tuple[float, float]:
    """RMS over coordinates of the mean and s.d. errors, each divided by the reference s.d.

    Args:
        samples: ``(n, dim)``, ``n >= 2``.
        mean: ``(dim,)`` reference mean.
        std: ``(dim,)`` reference standard deviation (positive).

    Returns:
        ``(mean_error, std_error)``.
    """
    samples = samples.to(torch.float64)
    mean, std = mean.to(torch.float64), std.to(torch.float64)
    mean_error = ((samples.mean(dim=0) - mean) / std).square().mean().sqrt()
    std_error = ((samples.std(dim=0) - std) / std).square().mean().sqrt()
    return float(mean_error), float(std_error)


def mean_error(samples: Tensor, target: Target, context: MetricContext) -> float:
    return standardised_moment_errors(samples, *target.posterior_moments())[0]


def std_error(samples: Tensor, target: Target, context: MetricContext) -> float:
    return standardised_moment_errors(samples, *target.posterior_moments())[1]


BLR_METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric.declared("accuracy", "test accuracy of the predictive averaged over samples, "
                                    "mean_t 1[p_t > 0.5], p_t = mean_m sigma(y_t w_m^T x_t)",
                        accuracy),
        Metric.declared("test_loglik", "mean_t log p_t on the test split, p_t = mean_m "
                                       "sigma(y_t w_m^T x_t)",
                        test_log_likelihood),
        Metric.declared("mean_error", "sqrt(mean_i ((mean_hat_i - mean_i) / std_i)^2) against "
                                      "the stored reference MALA run",
                        mean_error),
        Metric.declared("std_error", "sqrt(mean_i ((std_hat_i - std_i) / std_i)^2) against "
                                     "the stored reference MALA run",
                        std_error),
    )
}
