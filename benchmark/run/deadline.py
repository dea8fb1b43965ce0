"""Cell time limits without threads or signals: a deadline checked between units of work.

A cell's :class:`Deadline` is checked between sampler steps, between neural training
iterations (the training driver's ``before_step``) and before each metric. Nothing is
interrupted from outside, so a single step, training iteration or metric always completes: a
cell can overrun its limit by at most one of those. (A thread or ``SIGALRM`` could interrupt
sooner, but would leave CUDA work and autograd state half-done and does not work off the main
thread of a Dask worker.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass


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
