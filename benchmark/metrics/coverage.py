"""Entropic mode coverage (EMC) for targets with known modes (:class:`targets.base.Modes`).

    EMC = −Σ_k p̂_k log p̂_k / log K,

where ``p̂_k`` is the share of the samples assigned to mode ``k`` (the assignment of
:func:`benchmark.metrics.modes.assign_to_modes`: nearest mode location; the target's own
per-factor rule for :class:`targets.standard.FactorisedModes`). As used by Blessing et al.,
"Beyond ELBOs: a large-scale evaluation of variational methods for sampling", ICML 2024.

* 1 when the samples spread evenly over all ``K`` modes, 0 when they all sit in one. For a
  target with unequal weights the ideal is the target's own value ``H(w) / log K`` < 1, which
  the floor row (exact samples at the same ``n``) shows.
* Exact samples of an equal-weight mixture do not score exactly 1: the plug-in entropy is biased
  down. ``2n(log K − Ĥ)`` is the G-test statistic of the counts against uniform shares, so
  ``1 − EMC ≈ χ²_{K−1} / (2n log K)``, mean ``(K − 1) / (2n log K)`` (3.9e-4 for ``gmm40``'s
  ``K = 40`` at ``n = 1000``).
* Non-finite samples are dropped before the shares are normalised (the shares are among the
  finite samples): EMC describes where the finite samples went; missing mass is what mode recall
  and the mode-weight error count. No finite sample at all gives 0.
* :class:`FactorisedModes` (``manywell32``): the mean over the ``G`` factors of each factor's EMC
  over its ``K`` local modes. For independent factors (the target's) this equals the joint
  entropy over ``log K^G``; in general it is an upper bound on the joint value, i.e. it measures
  per-well (marginal) coverage, the only kind a sample of feasible size can estimate for
  ``2¹⁶`` joint modes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from benchmark.metrics.modes import mode_weights
from targets.base import Modes


def entropic_mode_coverage(x: Tensor, modes: Modes) -> Tensor:
    """EMC of samples ``x`` ``(n, dim)`` over the target's modes; 0-dim tensor in ``[0, 1]``.

    A single mode (``K = 1``) is covered by any finite sample: 1, or 0 without one.
    """
    shares = mode_weights(x, modes)  # (K,) or (G, K) for factorised modes
    num_modes = shares.shape[-1]
    total = shares.sum(-1, keepdim=True)
    found = total > 0
    probabilities = shares / torch.where(found, total, 1.0)
    if num_modes == 1:
        coverage = found.squeeze(-1).to(x.dtype)
    else:
        # xlogy gives 0 · log 0 = 0 for modes without samples.
        entropy = -torch.special.xlogy(probabilities, probabilities).sum(-1)
        coverage = entropy / math.log(num_modes)
    return coverage.mean()
