"""Cell time limits without threads or signals: a deadline checked between units of work.

A cell's :class:`Deadline` is checked between sampler steps, before each target evaluation
during neural training (through :class:`DeadlineTarget`) and before each metric. Nothing is
interrupted from outside, so a single step, target evaluation or metric always completes: a
cell can overrun its limit by at most one of those. (A thread or ``SIGALRM`` could interrupt
sooner, but would leave CUDA work and autograd state half-done and does not work off the main
thread of a Dask worker.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from targets.counting import CountingTarget


class CellTimeout(TimeoutError):
    """A cell ran past its time limit; the message is ``exceeded N s``."""


@dataclass(frozen=True)
class Deadline:
    """A wall-clock limit checked cooperatively (no threads, no signals).

    Attributes:
        seconds: the limit, ``None`` for none.
        start: ``time.monotonic()`` when the cell started.
    """

    seconds: float | None
    start: float

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls(seconds, time.monotonic())

    def check(self) -> None:
        """Raise :class:`CellTimeout` if the limit has passed."""
        if self.seconds is not None and time.monotonic() - self.start > self.seconds:
            raise CellTimeout(f"exceeded {self.seconds:g} s")


class DeadlineTarget:
    """Checks a deadline before each target evaluation, delegating everything else.

    The neural training loop belongs to the sampler, so the harness cannot check between its
    iterations; every iteration evaluates the target, so checking there bounds the overrun by
    one iteration without changing the sampler.
    """

    def __init__(self, target: CountingTarget, deadline: Deadline) -> None:
        self.target = target
        self.deadline = deadline

    def log_prob(self, x: Tensor) -> Tensor:
        self.deadline.check()
        return self.target.log_prob(x)

    def score(self, x: Tensor, create_graph: bool = False) -> Tensor:
        self.deadline.check()
        return self.target.score(x, create_graph=create_graph)

    def log_prob_and_score(self, x: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
        self.deadline.check()
        return self.target.log_prob_and_score(x, create_graph=create_graph)

    def minibatch_score(self, x: Tensor, batch_size: int, generator,
                        create_graph: bool = False) -> Tensor:
        self.deadline.check()
        return self.target.minibatch_score(x, batch_size, generator, create_graph=create_graph)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.target, attribute)
