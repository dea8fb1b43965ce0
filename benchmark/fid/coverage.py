"""Class coverage: does a sampler produce every class in the data's proportions?

A sampler can reach a fair FID while over-producing one class (docs/metrics.md#class-coverage;
a CPU prototype's neural samplers put 34% of their samples in one digit class). With the FID
classifier's arg-max predictions of the samples and of the test split:

* ``class_tv``: total-variation distance ``(1/2) sum_k |p_k - r_k|`` between the samples'
  predicted-class histogram ``p`` and the test split's ``r``, in ``[0, 1]``;
* ``class_max_share``: ``max_k p_k``, the largest class share (``1 / K`` at best for balanced
  data; 1 for a collapse onto one class).

The test split's histogram uses the classifier's *predictions*, not the true labels, so both
sides pass through the same classifier and its confusions largely cancel; the two differ by at
most the test error.
"""

from __future__ import annotations

import torch
from torch import Tensor


def class_histogram(classes: Tensor, num_classes: int) -> Tensor:
    """Shares of each class. ``(n,)`` int labels in ``[0, K)`` -> ``(K,)`` float64 summing to 1."""
    if classes.ndim != 1 or classes.numel() == 0:
        raise ValueError(f"classes must be a non-empty (n,) tensor, got {tuple(classes.shape)}")
    if int(classes.min()) < 0 or int(classes.max()) >= num_classes:
        raise ValueError(f"class labels must lie in [0, {num_classes}), got range "
                         f"[{int(classes.min())}, {int(classes.max())}]")
    counts = torch.bincount(classes, minlength=num_classes).to(torch.float64)
    return counts / counts.sum()


def total_variation(p: Tensor, r: Tensor) -> float:
    """``(1/2) sum_k |p_k - r_k|`` of two ``(K,)`` histograms."""
    if p.shape != r.shape:
        raise ValueError(f"histograms must have the same shape, got {tuple(p.shape)} and "
                         f"{tuple(r.shape)}")
    return 0.5 * float((p.to(torch.float64) - r.to(torch.float64)).abs().sum())


def max_share(p: Tensor) -> float:
    """Largest entry of a ``(K,)`` histogram."""
    return float(p.max())
