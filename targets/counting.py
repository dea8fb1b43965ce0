"""The counting wrapper: the single place where target evaluations (NFE) are counted.

The NFE rule (docs/methods.md#nfe-counting-rule): a ``score``, ``log_prob`` or fused
``log_prob_and_score`` call counts 1 per particle (row of ``x``); an autograd score that calls
``log_prob`` internally still counts once, because only calls made *through the wrapper* are
counted; a score requested with ``create_graph=True`` (whose graph is then differentiated, i.e.
a Hessian-vector product through the target score) additionally counts 1 per particle in
:attr:`CountingTarget.num_hvp`. Reference sampling is not a target evaluation.

NFE per particle is ``num_evaluations / n`` for ``n`` particles or chains.
"""

from __future__ import annotations

from torch import Tensor

from targets.base import Target


class CountingTarget:
    """Wraps a target and counts evaluations; everything else is delegated unchanged.

    Attributes:
        target: the wrapped target.
        num_evaluations: total rows evaluated (sum over calls of ``x.shape[0]``).
        num_hvp: total rows whose score was requested with ``create_graph=True``.
        num_calls: number of evaluation calls (batched calls count once).
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self.reset()

    def reset(self) -> None:
        self.num_evaluations = 0
        self.num_hvp = 0
        self.num_calls = 0

    def _count(self, x: Tensor, create_graph: bool = False) -> None:
        rows = int(x.shape[0])
        self.num_evaluations += rows
        self.num_calls += 1
        if create_graph:
            self.num_hvp += rows

    def log_prob(self, x: Tensor) -> Tensor:
        self._count(x)
        return self.target.log_prob(x)

    def score(self, x: Tensor, create_graph: bool = False) -> Tensor:
        self._count(x, create_graph)
        return self.target.score(x, create_graph=create_graph)

    def log_prob_and_score(self, x: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
        self._count(x, create_graph)
        return self.target.log_prob_and_score(x, create_graph=create_graph)

    def minibatch_score(self, x: Tensor, batch_size: int, generator,
                        create_graph: bool = False) -> Tensor:
        """A minibatch score (targets that have one, e.g. BLR): each row counts as the
        fraction ``batch_size / num_data`` of one evaluation, the share of the data it reads.
        Targets without a data set give (and count) their exact score."""
        if self.target.num_data is None:
            return self.score(x, create_graph=create_graph)
        fraction = min(1.0, int(batch_size) / self.target.num_data)
        self.num_evaluations += int(x.shape[0]) * fraction
        self.num_calls += 1
        if create_graph:
            self.num_hvp += int(x.shape[0]) * fraction
        return self.target.minibatch_score(x, batch_size, generator, create_graph=create_graph)

    def nfe_per_particle(self, n: int) -> float:
        """Target evaluations per particle so far, for ``n`` particles."""
        return self.num_evaluations / max(int(n), 1)

    def __getattr__(self, attribute: str):
        # Only reached for attributes not defined above: name, dim, device, sample, modes, ...
        return getattr(self.target, attribute)

    def __repr__(self) -> str:
        return f"CountingTarget({self.target!r}, num_evaluations={self.num_evaluations})"
