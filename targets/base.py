"""The target protocol: an unnormalised density on R^d that samplers query.

Conventions (shared by every spec file):

* ``x`` has shape ``(n, dim)``; ``log_prob(x)`` returns ``(n,)``, the *unnormalised*
  log-density ``log q~(x)``; ``score(x)`` returns ``(n, dim)``, ``grad_x log q~(x)``.
* Every tensor a target creates lives on ``target.device`` with ``target.dtype``.  A target is
  cheap to build, so moving it means building it again (``make_target(..., device=...)``).
* Randomness is an argument: a ``torch.Generator`` on the target's device.
* ``score`` defaults to autograd through ``log_prob``; analytic overrides are plain torch ops on
  ``x``, so ``create_graph=True`` (needed by DFT-NS, whose gradient contains a Hessian-vector
  product through the target score) works for both.

What a target provides is declared in :attr:`Target.provides`; metrics declare what they need
(see ``benchmark.metrics``), so the metrics that make sense for a target follow from it:

* ``"score"``: ``log_prob`` / ``score`` (every target);
* ``"reference"``: exact or grid reference samples through :meth:`Target.sample`;
* ``"modes"``: known mixture components through :meth:`Target.modes`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded generator on ``device`` (CUDA generators differ from CPU ones)."""
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(int(seed) % (2**63))
    return generator


@dataclass(frozen=True)
class Modes:
    """Known components of a mixture target.

    Attributes:
        locations: ``(num_modes, dim)`` component centres; samples are assigned to the nearest.
        weights: ``(num_modes,)`` mixing weights summing to one.
    """

    locations: Tensor
    weights: Tensor

    def assign(self, x: Tensor) -> Tensor:
        """Mode index per sample (nearest location; subclasses override ``_label_finite``),
        ``-1`` for non-finite rows.

        Args:
            x: ``(n, dim)`` samples.

        Returns:
            ``(n,)`` int64 on ``x.device``.
        """
        if x.ndim != 2 or x.shape[1] != self.locations.shape[1]:
            raise ValueError(f"samples of shape {tuple(x.shape)} do not match mode locations of "
                             f"shape {tuple(self.locations.shape)}")
        finite = torch.isfinite(x).all(dim=1)
        labels = self._label_finite(torch.where(finite[:, None], x, 0.0))
        return torch.where(finite, labels, -1)

    def _label_finite(self, x: Tensor) -> Tensor:
        """Nearest location of each (finite) row, ``(n, dim) -> (n,)`` int64."""
        locations = self.locations.to(device=x.device, dtype=x.dtype)
        # (n, K) squared distances: K is small (a handful of mixture components).
        return torch.cdist(x, locations).square_().argmin(dim=1)


@dataclass(frozen=True)
class LabelledModes(Modes):
    """Mixture components assigned by the target's own rule instead of the nearest centre.

    In high dimension the nearest component mean is a poor classifier (an image of one class
    can lie nearer another class's mean image than its own); a target that can evaluate its
    component posterior ``p(k | x)`` exactly labels each sample with its most probable
    component, so mode shares are judged by the target itself.

    Attributes:
        label: ``(n, dim) -> (n,)`` int64 component index of each finite sample (for example
            the argmax of the exact responsibilities of a mixture of factor analysers).
    """

    label: Callable[[Tensor], Tensor]

    def _label_finite(self, x: Tensor) -> Tensor:
        """The target's label of each (finite) row, ``(n, dim) -> (n,)`` int64."""
        return self.label(x).long()


class Target(abc.ABC):
    """Base class of every target.

    Subclasses set the class attributes, implement :meth:`log_prob`, and may override
    :meth:`score` / :meth:`log_prob_and_score` with analytic forms, :meth:`sample` with an
    exact sampler, :meth:`modes` and :meth:`initial_positions`.

    Args:
        dim: dimension ``d`` of the sample space.
        device: where every tensor of this target lives.
        dtype: floating-point type of inputs and constants.
    """

    name: ClassVar[str] = ""
    pretty_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Optional abilities, declared here so that callers read them instead of probing with
    # getattr; a target that has one sets it (as a class or an instance attribute).
    #: The narrowest local standard deviation of ``q``; neural samplers set ``sigma`` from it.
    length_scale: float | None = None
    #: ``sigma_0`` of a smoothed energy: the scale of the final denoising step.
    denoise_sigma: float | None = None
    #: ``(C, H, W)`` for image targets (convolutional networks and image metrics use it).
    image_shape: tuple[int, int, int] | None = None
    #: Image targets: the registered image data set they model (``targets.datasets``), whose
    #: test split and feature classifier the image metrics use; ``None`` otherwise.
    dataset: str | None = None
    #: ``N``, the data rows of a target whose log-density is a sum over rows (Bayesian
    #: logistic regression); ``None`` without a data set. Such a target overrides
    #: :meth:`minibatch_score`, and a minibatch of ``m`` rows costs ``m / N`` of an evaluation.
    num_data: int | None = None

    @classmethod
    def unavailable_reason(cls, **params: Any) -> str | None:
        """Why this configuration cannot be built on this machine (missing data or
        checkpoint), or ``None``; the harness skips such targets with the reason."""
        return None

    def __init__(self, dim: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.dim = int(dim)
        self.device = torch.device(device)
        self.dtype = dtype

    # -- helpers --------------------------------------------------------------------------
    def tensor(self, value) -> Tensor:
        """``value`` as a tensor on this target's device and dtype."""
        return torch.as_tensor(value, device=self.device, dtype=self.dtype)

    def randn(self, *shape: int, generator: torch.Generator) -> Tensor:
        return torch.randn(*shape, generator=generator, device=self.device, dtype=self.dtype)

    def rand(self, *shape: int, generator: torch.Generator) -> Tensor:
        return torch.rand(*shape, generator=generator, device=self.device, dtype=self.dtype)

    # -- the density ----------------------------------------------------------------------
    @abc.abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        """Unnormalised log-density. ``(n, dim) -> (n,)``."""

    def score(self, x: Tensor, create_graph: bool = False) -> Tensor:
        """``grad_x log q~(x)``. ``(n, dim) -> (n, dim)``.

        Args:
            x: points.
            create_graph: keep the graph so the returned score can be differentiated again
                (Hessian-vector products); ``x`` must then be part of the caller's graph.
        """
        return self.log_prob_and_score(x, create_graph=create_graph)[1]

    def log_prob_and_score(self, x: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
        """Both at once, for the cost of one evaluation. Returns ``(n,)`` and ``(n, dim)``."""
        with torch.enable_grad():
            leaf = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
            log_prob = self.log_prob(leaf)
            (score,) = torch.autograd.grad(log_prob.sum(), leaf, create_graph=create_graph)
        if not create_graph:
            log_prob = log_prob.detach()
        return log_prob, score

    def minibatch_score(self, x: Tensor, batch_size: int, generator: torch.Generator,
                        create_graph: bool = False) -> Tensor:
        """An unbiased score estimate from ``batch_size`` data rows. ``(n, dim) -> (n, dim)``.

        Targets without a data set (``num_data is None``) have nothing to subsample: the exact
        score, drawing nothing from ``generator``.
        """
        return self.score(x, create_graph=create_graph)

    # -- what else the target offers ------------------------------------------------------
    @property
    def provides(self) -> frozenset[str]:
        """Capabilities the metrics rely on: ``score`` always, ``reference``, ``modes``."""
        caps = {"score"}
        if type(self).sample is not Target.sample:
            caps.add("reference")
        if self.modes() is not None:
            caps.add("modes")
        return frozenset(caps)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` reference samples ``(n, dim)``, exact (or from a fine grid where stated)."""
        raise NotImplementedError(f"target '{self.name}' has no reference sampler")

    def modes(self) -> Modes | None:
        """Mixture components, for mode-weight error and mode recall; ``None`` if not a mixture."""
        return None

    #: The narrowest feature of ``q`` a sampler must resolve: the smallest local standard
    #: deviation (a mixture component's, a ring's radial width, a ridge's cross-section), in
    #: ``x``'s units; ``None`` when unknown. Samplers that smooth the target or their own
    #: samples tie their noise level to it (DFT-NS keeps ``sigma`` below it, so
    #: ``p_theta * N(0, sigma^2 I) = q`` stays reachable).
    length_scale: float | None = None

    def initial_positions(self, n: int, generator: torch.Generator) -> Tensor:
        """Where iterative samplers start: ``N(0, I)`` unless a target knows better."""
        return self.randn(n, self.dim, generator=generator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={self.device})"


class AnalyticScoreTarget(Target):
    """A target whose score is written out in torch ops on ``x``.

    Subclasses implement :meth:`_log_prob_and_score`. Without ``create_graph`` it runs under
    ``no_grad`` (no graph is kept, as for the autograd default); with it, the ops stay on the
    caller's graph through ``x`` so Hessian-vector products work.
    """

    @abc.abstractmethod
    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(n,)`` log-density and ``(n, dim)`` score of ``x`` ``(n, dim)``."""

    def log_prob_and_score(self, x: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
        if create_graph:
            return self._log_prob_and_score(x)
        with torch.no_grad():
            return self._log_prob_and_score(x)
