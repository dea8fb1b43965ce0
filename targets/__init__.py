"""Targets: unnormalised densities the samplers query, and their registry.

``TARGETS`` maps each registry name to its class; :func:`make_target` builds one by name.
"""

from __future__ import annotations

import inspect

import torch

from targets.base import LabelledModes, Modes, Target, make_generator
from targets.blr import BayesianLogisticRegression
from targets.counting import CountingTarget
from targets.ebm.target import EBMDigits, EBMMnist5k, EBMMnist16
from targets.intermediate import CorrelatedGaussian, FunnelD
from targets.mfa import MFADigits, MFAFashion, MFAMnist
from targets.rezende_mohamed import (
    RezendeMohamedU1,
    RezendeMohamedU2,
    RezendeMohamedU3,
    RezendeMohamedU4,
)
from targets.standard import GMM40, FactorisedModes, ManyWell32
from targets.toy2d import (
    Banana,
    Donut,
    Funnel,
    MoG2,
    MoG2Weighted,
    MoG8,
    Rosenbrock,
    Squiggle,
    StandardGaussian,
)

TARGETS: dict[str, type[Target]] = {
    "gaussian": StandardGaussian,
    "mog2": MoG2,
    "mog2w": MoG2Weighted,
    "mog8": MoG8,
    "donut": Donut,
    "rosenbrock": Rosenbrock,
    "funnel": Funnel,
    "squiggle": Squiggle,
    "banana": Banana,
    "u1": RezendeMohamedU1,
    "u2": RezendeMohamedU2,
    "u3": RezendeMohamedU3,
    "u4": RezendeMohamedU4,
    "gaussian_d": CorrelatedGaussian,
    "funnel_d": FunnelD,
    "blr": BayesianLogisticRegression,
    "ebm_digits": EBMDigits,
    "ebm_mnist5k": EBMMnist5k,
    "ebm_mnist16": EBMMnist16,
    "mfa_digits": MFADigits,
    "mfa_mnist": MFAMnist,
    "mfa_fashion": MFAFashion,
    "gmm40": GMM40,
    "manywell32": ManyWell32,
}


def target_parameters(name: str) -> list[str]:
    """The keyword parameters (besides ``device``, ``dtype``) that target ``name`` accepts."""
    signature = inspect.signature(TARGETS[name].__init__)
    return [p for p in signature.parameters if p not in ("self", "device", "dtype")]


def make_target(name: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                **params) -> Target:
    """Build the registered target ``name`` on ``device`` with ``dtype``.

    Args:
        name: a key of :data:`TARGETS`.
        device: where the target's tensors live.
        dtype: floating-point type.
        **params: target parameters (e.g. ``dim`` for ``gaussian_d`` and ``funnel_d``).

    Raises:
        ValueError: unknown target name or unknown parameter (one line naming the valid ones).
    """
    if name not in TARGETS:
        raise ValueError(f"unknown target '{name}'; valid targets: {', '.join(TARGETS)}")
    valid = target_parameters(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter '{unknown[0]}' for target '{name}'; "
                         f"valid parameters: {', '.join(valid) or '(none)'}")
    return TARGETS[name](device=device, dtype=dtype, **params)


__all__ = ["TARGETS", "CountingTarget", "FactorisedModes", "LabelledModes", "Modes", "Target",
           "make_generator", "make_target", "target_parameters"]
