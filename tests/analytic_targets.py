"""Small targets with closed-form densities and scores, shared by the sampler tests.

They keep the sampler tests independent of the target registry (a change to a registered
target never moves a sampler test). Every score is written in plain torch ops, so autograd
through it works too. Imported by name (``from analytic_targets import Gaussian``): pytest puts
this folder, the one holding ``conftest.py``, on ``sys.path``.
"""

from __future__ import annotations

import math

import torch

from targets.base import Target


class Gaussian(Target):
    """``N(mean, diag(scale^2))`` with an analytic score."""

    name = "test_gaussian"

    def __init__(self, mean, scale, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(len(mean), dtype=dtype)
        self.mean, self.scale = self.tensor(mean), self.tensor(scale)

    def log_prob(self, x):
        return -0.5 * ((x - self.mean) / self.scale).square().sum(-1)

    def score(self, x, create_graph=False):
        return -(x - self.mean) / self.scale.square()

    def log_prob_and_score(self, x, create_graph=False):
        return self.log_prob(x), self.score(x)


class HalfLineGaussian(Gaussian):
    """``N(0, 1)`` whose log-density and score are NaN for ``x > 1`` (a broken region)."""

    def log_prob(self, x):
        value = super().log_prob(x)
        return torch.where(x[:, 0] > 1.0, torch.full_like(value, math.nan), value)

    def score(self, x, create_graph=False):
        value = super().score(x)
        return torch.where(x > 1.0, torch.full_like(value, math.nan), value)


class CorrelatedGaussian(Target):
    """``N(mean, covariance)`` with an analytic score; chains start in a tight cloud (spread
    0.1) around ``start``, usually far out, so a test sees the chain travel."""

    name = "test_correlated_gaussian"

    def __init__(self, mean, covariance, start) -> None:
        super().__init__(len(mean), dtype=torch.float64)
        self.mean, self.covariance = self.tensor(mean), self.tensor(covariance)
        self.precision = torch.linalg.inv(self.covariance)
        self.cholesky = torch.linalg.cholesky(self.covariance)
        self.start = self.tensor(start)

    def log_prob(self, x):
        centred = x - self.mean
        return -0.5 * ((centred @ self.precision) * centred).sum(-1)

    def score(self, x, create_graph=False):
        return -(x - self.mean) @ self.precision

    def log_prob_and_score(self, x, create_graph=False):
        return self.log_prob(x), self.score(x)

    def initial_positions(self, n, generator):
        return self.start + 0.1 * self.randn(n, self.dim, generator=generator)

    def whiten(self, x):
        """``L^{-1} (x - mean)``: iid ``N(0, I)`` rows for an iid sample of this target."""
        return torch.linalg.solve_triangular(self.cholesky, (x - self.mean).T, upper=False).T
