"""Reference samplers against known moments: closed forms, or midpoint-rule quadrature.

Every check is a mean of some function ``f(x)`` compared with its expectation; the tolerance is
``z · sd(f) / √n`` with ``sd`` the sample standard deviation and ``z`` the two-sided normal
quantile at ``ALPHA = 1e-3`` per check (CLT; the functions used have finite variance). Where one
test makes ``m`` checks of one kind across coordinates it says so and uses ``ALPHA / m``.
Quadrature is float64 on a grid whose boundary density is below ``e^{-20}`` of the peak
(asserted), so its truncation and O(h²) errors are far below the Monte Carlo tolerances.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from targets import make_generator, make_target
from targets.grid import GridSampler

ALPHA = 1e-3
N = 200_000


def _z(alpha: float = ALPHA) -> float:
    return float(stats.norm.isf(alpha / 2))


def assert_mean(values: torch.Tensor, expected: float, label: str, alpha: float = ALPHA) -> None:
    """``|mean(values) − expected| ≤ z_{α/2} · sd(values)/√n``."""
    values = values.double()
    error = abs(float(values.mean()) - expected)
    tolerance = _z(alpha) * float(values.std()) / math.sqrt(values.numel())
    assert error <= tolerance, f"{label}: |mean − {expected:.5f}| = {error:.5f} > {tolerance:.5f}"


def assert_same_mean(a: torch.Tensor, b: torch.Tensor, label: str, alpha: float = ALPHA) -> None:
    """Two-sample z-test for equal means of independent samples ``a`` and ``b``."""
    a, b = a.double(), b.double()
    error = abs(float(a.mean() - b.mean()))
    tolerance = _z(alpha) * math.sqrt(float(a.var()) / a.numel() + float(b.var()) / b.numel())
    assert error <= tolerance, f"{label}: difference {error:.5f} > {tolerance:.5f}"


def _moment_functions(x: torch.Tensor) -> dict[str, torch.Tensor]:
    x1, x2 = x[..., 0], x[..., 1]
    return {"x1": x1, "x2": x2, "x1^2": x1**2, "x2^2": x2**2, "x1*x2": x1 * x2}


def quadrature_moments(name: str, window, resolution: int = 1001) -> dict[str, float]:
    """E[f] of ``_moment_functions`` under ``q~`` by the midpoint rule on ``window`` (float64)."""
    target = make_target(name, dtype=torch.float64)
    axes = [np.linspace(lo, hi, resolution) for lo, hi in window]
    grid = torch.as_tensor(np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1))
    log_q = target.log_prob(grid.reshape(-1, 2)).reshape(resolution, resolution)
    boundary = torch.cat((log_q[0], log_q[-1], log_q[:, 0], log_q[:, -1]))
    assert float(boundary.max() - log_q.max()) < -20, f"{name}: quadrature window too small"
    weights = torch.softmax(log_q.flatten(), dim=0).reshape(resolution, resolution)
    return {key: float((weights * f).sum()) for key, f in _moment_functions(grid).items()}


def test_gaussian_moments():
    x = make_target("gaussian").sample(N, make_generator(10))
    for key, f in _moment_functions(x).items():
        assert_mean(f, {"x1^2": 1.0, "x2^2": 1.0}.get(key, 0.0), f"gaussian {key}")


@pytest.mark.parametrize("name", ["mog2", "mog2w", "mog8"])
def test_mixture_moments_and_weights(name):
    target = make_target(name, dtype=torch.float64)
    x = target.sample(N, make_generator(11))
    means, weights, var = target.means.numpy(), target.weights.numpy(), target.std**2
    expected = {"x1": weights @ means[:, 0], "x2": weights @ means[:, 1],
                "x1^2": weights @ means[:, 0] ** 2 + var, "x2^2": weights @ means[:, 1] ** 2 + var,
                "x1*x2": weights @ (means[:, 0] * means[:, 1])}
    for key, f in _moment_functions(x).items():
        assert_mean(f, float(expected[key]), f"{name} {key}")
    nearest = torch.cdist(x, target.means).argmin(dim=1)
    if name == "mog8":
        # Equal weights and rotational symmetry: each nearest-mode share is exactly 1/8.
        shares = np.full(8, 1 / 8)
    else:
        # Modes ±(2,2), σ = 1: a component lands nearer the other mode with probability
        # p = Φ(−2√2) (its distance to the bisector x₁ + x₂ = 0 is 2√2).
        p = stats.norm.cdf(-2 * math.sqrt(2))
        shares = np.array([weights[0] * (1 - p) + weights[1] * p,
                           weights[1] * (1 - p) + weights[0] * p])
    for k, share in enumerate(shares):  # K checks: Bonferroni over the modes
        assert_mean((nearest == k).double(), float(share), f"{name} share {k}",
                    alpha=ALPHA / len(shares))


def test_donut_radius_against_quadrature():
    x = make_target("donut").sample(N, make_generator(12))
    density = lambda r: r * math.exp(-((r - 2.6) ** 2) / 0.033)  # noqa: E731
    # The radius density is negligible outside [1.6, 3.6] (exponent below −30).
    mass = integrate.quad(density, 1.6, 3.6, epsabs=0, epsrel=1e-12)[0]
    r_mean = integrate.quad(lambda r: r * density(r), 1.6, 3.6, epsrel=1e-12)[0] / mass
    r_square = integrate.quad(lambda r: r * r * density(r), 1.6, 3.6, epsrel=1e-12)[0] / mass
    r = torch.linalg.vector_norm(x, dim=1)
    assert_mean(r, r_mean, "donut E[r]")
    assert_mean(r**2, r_square, "donut E[r^2]")
    # Uniform angle: E[x] = 0 and E[x₁²] = E[r²]/2.
    assert_mean(x[:, 0], 0.0, "donut E[x1]")
    assert_mean(x[:, 1], 0.0, "donut E[x2]")
    assert_mean(x[:, 0] ** 2, r_square / 2, "donut E[x1^2]")


def test_rosenbrock_closed_form():
    x = make_target("rosenbrock").sample(N, make_generator(13)).double()
    x1, x2 = x[:, 0], x[:, 1]
    assert_mean(x1, 1.0, "rosenbrock E[x1]")
    assert_mean((x1 - 1) ** 2, 10.0, "rosenbrock Var[x1]")
    assert_mean(x2, 11.0, "rosenbrock E[x2] = E[x1^2]")
    assert_mean((x2 - x1**2) ** 2, 0.1, "rosenbrock Var[x2 | x1]")


@pytest.mark.parametrize("name, dim", [("funnel", 2), ("funnel_d", 10)])
def test_funnel_closed_form(name, dim):
    params = {"dim": dim} if name == "funnel_d" else {}
    x = make_target(name, **params).sample(N, make_generator(14)).double()
    neck, rest = x[:, -1], x[:, :-1]
    assert_mean(neck, 0.0, f"{name} E[x_d]")
    assert_mean(neck**2, 9.0, f"{name} E[x_d^2]")
    # x_i / e^{x_d/2} is N(0, 1) given x_d: its square has mean 1 (finite variance, unlike x_i²).
    assert_mean((rest**2 * torch.exp(-neck)[:, None]).mean(1), 1.0, f"{name} E[x_i^2 e^-x_d]")
    assert_mean(torch.sign(rest).mean(1), 0.0, f"{name} symmetry")


def test_correlated_gaussian_moments():
    target = make_target("gaussian_d", dim=10, dtype=torch.float64)
    x = target.sample(N, make_generator(15))
    # Whitened coordinates are iid N(0, 1): 2·d checks, Bonferroni over them.
    white = (x - target.mean) @ target.rotation / target.eigenvalues.sqrt()
    alpha = ALPHA / (2 * target.dim)
    for i in range(target.dim):
        assert_mean(white[:, i], 0.0, f"whitened mean {i}", alpha)
        assert_mean(white[:, i] ** 2, 1.0, f"whitened variance {i}", alpha)
    i, j = np.unravel_index(int((target.covariance - torch.diag(torch.diagonal(
        target.covariance))).abs().argmax()), (target.dim, target.dim))
    assert_mean(x[:, i] * x[:, j], float(target.covariance[i, j]), f"covariance ({i}, {j})")


QUADRATURE_WINDOWS = {
    "squiggle": ((-9.0, 9.0), (-6.0, 6.0)),
    "banana": ((-13.0, 13.0), (-40.0, 6.0)),
    "u2": ((-13.0, 13.0), (-5.0, 5.0)),
    "u3": ((-13.0, 13.0), (-8.0, 5.0)),
    "u4": ((-13.0, 13.0), (-8.0, 5.0)),
}


@pytest.mark.parametrize("name", sorted(QUADRATURE_WINDOWS))
def test_exact_sampler_against_quadrature(name):
    resolution = 1601 if name == "banana" else 1001  # banana's window is 46 long in x₂
    expected = quadrature_moments(name, QUADRATURE_WINDOWS[name], resolution)
    if name == "banana":  # closed form of the quadrature itself: x₂ = y₂/2 − 0.8y₁² − 0.8
        assert expected["x2"] == pytest.approx(0.4, abs=1e-4)
    x = make_target(name).sample(N, make_generator(16))
    for key, f in _moment_functions(x).items():
        assert_mean(f, expected[key], f"{name} {key}")


def test_u1_grid_sampler_mass_and_moments():
    target = make_target("u1")
    x = target.sample(N, make_generator(17))
    assert target._grid is not None and target._grid.outside_mass < 1e-4
    expected = quadrature_moments("u1", ((-6.0, 6.0), (-6.0, 6.0)), 1001)
    for key, f in _moment_functions(x).items():
        assert_mean(f, expected[key], f"u1 {key}")


GRID_CHECKS = {
    "gaussian": ((-6.0, 6.0), (-6.0, 6.0)),
    "mog2": ((-8.0, 8.0), (-8.0, 8.0)),
    "banana": ((-10.0, 10.0), (-25.0, 6.0)),
}


@pytest.mark.parametrize("name", sorted(GRID_CHECKS))
def test_grid_sampler_agrees_with_exact_sampler(name):
    target = make_target(name)
    grid = GridSampler(target.log_prob, GRID_CHECKS[name], resolution=1601)
    assert grid.outside_mass < 1e-4
    from_grid = grid.sample(N, make_generator(18))
    exact = target.sample(N, make_generator(19))
    assert from_grid.dtype == exact.dtype
    grid_moments, exact_moments = _moment_functions(from_grid), _moment_functions(exact)
    for key in grid_moments:
        assert_same_mean(grid_moments[key], exact_moments[key], f"{name} grid vs exact {key}")
