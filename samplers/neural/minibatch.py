"""Neural samplers trained on minibatch target scores (large-N Bayesian models;
docs/targets.md#minibatch-scores).

A target with a data set (``num_data``; Bayesian logistic regression) gives, through
``minibatch_score(x, batch_size, generator, create_graph)``, an unbiased estimate of its score
from ``m`` of its ``N`` rows. The two losses use it differently:

* KL-NS's sampler loss is *linear* in ``s_q``, so one minibatch estimate keeps its gradient
  unbiased (:class:`KLNSMinibatch`).
* DFT-NS's ``f`` is *quadratic* in ``s_q``: the same estimate in both factors adds its
  variance to ``f`` (a bias that grows with ``N/m``). :class:`DFTNSMinibatch` draws two
  independent minibatches for the two factors (``score_batches = "independent"``, unbiased);
  ``"shared"`` (one batch in both factors) is the biased variant, kept to measure the bias.

Targets without a data set (or with ``N <= batch size``) get their exact score, so
these samplers reduce to DFT-NS / KL-NS there. Separate registry entries, rather than new
fields of :class:`DFTParams` / :class:`KLParams`, leave the resolved parameters (and so the
stored cell identities) of the full-batch samplers unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from samplers.neural.dft import DFTNS, DFTParams
from samplers.neural.kl import KLNS, KLParams
from samplers.neural.training import ScoreFunction, check_choice
from targets.base import Target


def minibatch_score(target: Target, x: Tensor, batch_size: int,
                    generator: torch.Generator | None, create_graph: bool = False) -> Tensor:
    """``target.minibatch_score`` (the exact score on a target without a data set); the exact
    score when no generator is given. ``(n, d) -> (n, d)``."""
    if generator is None:
        return target.score(x, create_graph=create_graph)
    return target.minibatch_score(x, int(batch_size), generator, create_graph=create_graph)


class _MinibatchView:
    """A target whose ``score`` is a minibatch estimate; everything else is delegated."""

    def __init__(self, target: Target, batch_size: int, generator: torch.Generator | None):
        self._target, self._batch_size, self._generator = target, batch_size, generator

    def score(self, x: Tensor, create_graph: bool = False) -> Tensor:
        return minibatch_score(self._target, x, self._batch_size, self._generator, create_graph)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._target, attribute)


@dataclass(frozen=True)
class DFTMinibatchParams(DFTParams):
    """:class:`DFTParams` plus the minibatch estimator.

    Attributes:
        score_batch_size: rows per minibatch score estimate ``m``.
        score_batches: ``"independent"`` (two batches, unbiased) or ``"shared"`` (one batch in
            both factors of ``f``: biased, for measuring the bias).
    """

    score_batch_size: int = 1000
    score_batches: str = "independent"

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.score_batch_size) < 1:
            raise ValueError("parameter 'score_batch_size' must be a positive integer")
        check_choice("score_batches", self.score_batches, ("independent", "shared"))


class DFTNSMinibatch(DFTNS):
    """DFT-NS with minibatch target scores: independent batches for the two factors of ``f``.

    With independent unbiased estimates ``A``, ``B`` of ``s_q``, ``E[<A + e, B + e>] =
    ||s_q + e||^2``, so ``f`` (see :class:`DFTNS`) and, the batches not depending on
    ``theta``, its gradient are unbiased; both estimates carry the Hessian-vector product.
    Costs two minibatch evaluations (each ``m/N`` of a full one) per sample and iteration.
    """

    name: ClassVar[str] = "dft_ns_minibatch"
    pretty_name: ClassVar[str] = "DFT-NS (minibatch)"
    description: ClassVar[str] = ("DFT-NS with minibatch target scores, independent batches "
                                  "for the two factors of its quadratic loss")
    Params: ClassVar[type] = DFTMinibatchParams

    def target_scores(self, target: Target, x_noised: Tensor,
                      generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        size = self.params.score_batch_size
        first = minibatch_score(target, x_noised, size, generator, create_graph=True)
        # No data set, or N <= m: both factors are the exact score.
        exact = target.num_data is None or size >= target.num_data
        if self.params.score_batches == "shared" or exact:
            return first, first
        return first, minibatch_score(target, x_noised, size, generator, create_graph=True)


@dataclass(frozen=True)
class KLMinibatchParams(KLParams):
    """:class:`KLParams` plus ``score_batch_size``, the rows per minibatch score estimate."""

    score_batch_size: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.score_batch_size) < 1:
            raise ValueError("parameter 'score_batch_size' must be a positive integer")


class KLNSMinibatch(KLNS):
    """KL-NS with one minibatch target score per iteration (its loss is linear in ``s_q``)."""

    name: ClassVar[str] = "kl_ns_minibatch"
    pretty_name: ClassVar[str] = "KL-NS (minibatch)"
    description: ClassVar[str] = "KL-NS with minibatch target scores (unbiased: linear loss)"
    Params: ClassVar[type] = KLMinibatchParams

    def surrogate(self, x: Tensor, noise: Tensor, target: Target, score_fn: ScoreFunction,
                  generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        view = _MinibatchView(target, self.params.score_batch_size, generator)
        return super().surrogate(x, noise, view, score_fn, generator)
