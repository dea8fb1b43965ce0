"""Mode metrics for mixture targets with known components (:class:`targets.base.Modes`).

KSD and the Fisher divergence are nearly blind to the mixing weights of well-separated modes
(the score inside each mode does not depend on its weight), so mixtures get their own columns:
the per-mode weight error and the mode recall, where mode-seeking (reverse-KL) samplers show.

Each sample is assigned to the nearest mode location (Euclidean), or by the target's own rule
(``LabelledModes``: e.g. the exact component posterior of a mixture of factor analysers).
Non-finite samples belong to no mode: they count in ``n`` but in no mode's share, i.e. as
missing mass.

Product targets (:class:`targets.standard.FactorisedModes`, e.g. ``manywell32`` with ``2¹⁶``
joint modes) are counted per factor instead: the target labels each factor of each sample
(``(n, G)`` assignments), shares are ``(G, K)``, one row per factor, and the same formulas run
over all ``G·K`` (factor, local mode) pairs: the weight error is the largest share error over
the pairs, the recall the fraction of pairs with at least half their expected share.
"""

from __future__ import annotations

import torch
from torch import Tensor

from targets.base import Modes


def assign_to_modes(x: Tensor, modes: Modes) -> Tensor:
    """Mode index per sample, ``-1`` for non-finite rows (the rule of ``modes.assign``).

    Args:
        x: ``(n, dim)`` samples.
        modes: :class:`targets.base.Modes` (nearest location), a ``LabelledModes`` (the
            target's own label, e.g. an exact component posterior) or :class:`FactorisedModes`.

    Returns:
        ``(n,)`` int64 on ``x.device``; ``(n, G)`` local-mode labels per factor for
        :class:`FactorisedModes` (the target's own rule, e.g. the sign of each well's ``x₁``).
    """
    return modes.assign(x)


def mode_weights(x: Tensor, modes: Modes) -> Tensor:
    """Empirical share of samples nearest each mode. ``(n, dim) -> (K,)``, same dtype as ``x``.

    Sums to the fraction of finite samples (1 when all are finite). For
    :class:`FactorisedModes` the shares are ``(G, K)``, each row one factor's (each row sums to
    the fraction of finite samples).
    """
    assignment = assign_to_modes(x, modes)
    num_modes = modes.locations.shape[0]
    if assignment.ndim == 2:  # per-factor labels: count (factor, local mode) pairs
        num_factors = assignment.shape[1]
        offset = num_modes * torch.arange(num_factors, device=assignment.device)
        pairs = (assignment + offset)[assignment >= 0]
        counts = torch.bincount(pairs, minlength=num_factors * num_modes)
        return counts.view(num_factors, num_modes).to(x.dtype) / x.shape[0]
    counts = torch.bincount(assignment[assignment >= 0], minlength=num_modes)
    return counts.to(x.dtype) / x.shape[0]


def mode_weight_error(x: Tensor, modes: Modes) -> Tensor:
    """``max_k |ŵ_k − w_k|``: the largest error of an empirical mode weight. 0-dim tensor.

    For :class:`FactorisedModes` the maximum runs over all (factor, local mode) pairs.
    """
    weights = modes.weights.to(device=x.device, dtype=x.dtype)
    return (mode_weights(x, modes) - weights).abs().max()


def mode_recall(x: Tensor, modes: Modes) -> Tensor:
    """Fraction of modes that receive at least half their expected share, ``ŵ_k ≥ w_k / 2``.

    1 means every mode is found with a reasonable share; a sampler that collapses onto one of
    ``K`` equal modes scores ``1/K``. 0-dim tensor in ``[0, 1]``.

    For :class:`FactorisedModes` the fraction is over the ``G·K`` (factor, local mode) pairs:
    for ``manywell32`` the 32 (well, sign) pairs, so a sampler that never leaves one sign
    pattern scores 0.5 and one that finds both wells of every ``x₁`` in proportion scores 1.
    """
    weights = modes.weights.to(device=x.device, dtype=x.dtype)
    return (mode_weights(x, modes) >= 0.5 * weights).to(x.dtype).mean()
