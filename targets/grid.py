"""Reference samples for 2-D densities without an exact sampler: a fine-grid multinomial.

The window ``[a₁, b₁] × [a₂, b₂]`` is cut into ``resolution²`` equal cells; cell ``c`` gets the
mass ``q~(centre_c) · h₁h₂`` (midpoint rule), a cell is drawn with ``torch.multinomial`` and the
point is placed uniformly inside it. The result is an exact sample of the piecewise-constant
density that interpolates ``q~`` at the cell centres, restricted to the window, so two errors
remain and both are controlled:

* discretisation: ``O(h²)`` relative error in the moments when ``h`` is much smaller than the
  density's smallest length scale (the caller's responsibility: choose ``resolution``);
* truncation: the mass outside the window, estimated at construction and required to be below
  ``max_outside_mass`` (1e-4 by default; docs/targets.md#grid-sampler), otherwise construction
  fails.

The outside mass is estimated by evaluating ``q~`` on a second, ``check_scale`` times wider grid
with the same centre (default 3: the window plus one window-width of margin on every side) and
taking the share of its midpoint-rule mass whose cell centres fall outside the window. It misses
mass beyond the wide grid; for densities with at least Gaussian tails that remainder is smaller
than the estimate by orders of magnitude, so the estimate is a practical upper bound.

``torch.multinomial`` accepts at most 2**24 categories, so ``resolution`` may be at most 4096.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Window = tuple[tuple[float, float], tuple[float, float]]

# Grid points evaluated per log_prob call: bounds peak memory on small GPUs / CPUs.
_CHUNK_SIZE = 2**20


def _axis_centres(low: float, high: float, resolution: int, device: torch.device,
                  dtype: torch.dtype) -> tuple[Tensor, float]:
    """Cell centres ``(resolution,)`` of ``[low, high]`` cut into equal cells, and the width."""
    width = (high - low) / resolution
    index = torch.arange(resolution, device=device, dtype=dtype)
    return low + (index + 0.5) * width, width


def _grid_log_prob(log_prob_fn: Callable[[Tensor], Tensor], window: Window, resolution: int,
                   device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``log q~`` at every cell centre, flattened ``(resolution²,)`` row-major in ``x₁``.

    Returns the log-densities (float64, for the normalisation) and the centres ``(resolution², 2)``.
    """
    centres_1, _ = _axis_centres(*window[0], resolution, device, dtype)
    centres_2, _ = _axis_centres(*window[1], resolution, device, dtype)
    points = torch.cartesian_prod(centres_1, centres_2)  # index i·resolution + j ↔ (c₁ᵢ, c₂ⱼ)
    with torch.no_grad():
        log_prob = torch.cat([log_prob_fn(chunk) for chunk in points.split(_CHUNK_SIZE)])
    if torch.isnan(log_prob).any():
        raise ValueError("log_prob returned NaN on the grid")
    return log_prob.to(torch.float64), points


def outside_mass(log_prob_fn: Callable[[Tensor], Tensor], window: Window, check_scale: float = 3.0,
                 resolution: int = 1601, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float64) -> float:
    """Share of the density's mass outside ``window``, from a ``check_scale``-times wider grid.

    Args:
        log_prob_fn: unnormalised log-density ``(m, 2) -> (m,)``.
        window: ``((a₁, b₁), (a₂, b₂))``.
        check_scale: width of the check grid relative to the window (same centre), > 1.
        resolution: cells per axis of the check grid.
        device, dtype: where and in which type the check grid is evaluated.

    Returns:
        The estimated outside mass in ``[0, 1]``.
    """
    if check_scale <= 1.0:
        raise ValueError(f"check_scale must exceed 1, got {check_scale}")
    wide = tuple(((lo + hi) / 2 - check_scale * (hi - lo) / 2,
                  (lo + hi) / 2 + check_scale * (hi - lo) / 2) for lo, hi in window)
    log_prob, points = _grid_log_prob(log_prob_fn, wide, resolution, torch.device(device), dtype)
    inside = ((points[:, 0] >= window[0][0]) & (points[:, 0] <= window[0][1])
              & (points[:, 1] >= window[1][0]) & (points[:, 1] <= window[1][1]))
    # Equal cells, so the cell area cancels in the ratio.
    mass = torch.softmax(log_prob, dim=0)
    return float(mass[~inside].sum())


class GridSampler:
    """Multinomial-over-cells sampler of a 2-D unnormalised density (see the module docstring).

    The grid is evaluated once at construction; :meth:`sample` then costs one multinomial draw
    and one uniform jitter per sample.

    Args:
        log_prob_fn: unnormalised log-density ``(m, 2) -> (m,)`` (e.g. ``target.log_prob``).
        window: ``((a₁, b₁), (a₂, b₂))``, the rectangle sampled from.
        resolution: cells per axis (1601 → 2.56M cells).
        device, dtype: where the grid lives and the type of the returned samples.
        max_outside_mass: construction fails if the estimated outside mass exceeds this.
        check_scale: width of the outside-mass check grid relative to the window.
        check_resolution: cells per axis of the check grid (coarser than the sampling grid:
            a mass share needs no fine cells, only cells finer than the density's features).

    Attributes:
        outside_mass: the estimated mass outside the window.
        cell_width: ``(h₁, h₂)``.

    Raises:
        ValueError: if the outside mass exceeds ``max_outside_mass`` or the grid is too fine.
    """

    def __init__(self, log_prob_fn: Callable[[Tensor], Tensor], window: Window,
                 resolution: int = 1601, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, max_outside_mass: float = 1e-4,
                 check_scale: float = 3.0, check_resolution: int = 801) -> None:
        if not 2 <= resolution <= 4096:
            raise ValueError(f"resolution must be in [2, 4096] (multinomial limit), "
                             f"got {resolution}")
        self.window = window
        self.resolution = int(resolution)
        self.device = torch.device(device)
        self.dtype = dtype
        self.outside_mass = outside_mass(log_prob_fn, window, check_scale, check_resolution,
                                         self.device, dtype)
        if self.outside_mass > max_outside_mass:
            raise ValueError(f"mass outside the grid window {window} is {self.outside_mass:.2e} "
                             f"> {max_outside_mass:.0e}; widen the window")
        log_prob, _ = _grid_log_prob(log_prob_fn, window, self.resolution, self.device, dtype)
        # float64 probabilities: 2.56M cells of mass ~1e-7 each lose digits in float32 sums.
        self._probs = torch.softmax(log_prob, dim=0)
        self.cell_width = tuple((hi - lo) / self.resolution for lo, hi in window)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` samples ``(n, 2)`` in the sampler's dtype, drawn with ``generator``."""
        cell = torch.multinomial(self._probs, n, replacement=True, generator=generator)
        index = torch.stack((cell // self.resolution, cell % self.resolution), dim=1)
        jitter = torch.rand(n, 2, generator=generator, device=self.device, dtype=self.dtype)
        low = torch.tensor([self.window[0][0], self.window[1][0]], device=self.device,
                           dtype=self.dtype)
        width = torch.tensor(self.cell_width, device=self.device, dtype=self.dtype)
        return low + (index.to(self.dtype) + jitter) * width


def grid_sample(log_prob_fn: Callable[[Tensor], Tensor], n: int, generator: torch.Generator,
                window: Window, resolution: int = 1601, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> Tensor:
    """One-off :class:`GridSampler` draw of ``n`` samples ``(n, 2)``; build the class to reuse."""
    return GridSampler(log_prob_fn, window, resolution, device, dtype).sample(n, generator)
