"""Gradient identities of the neural samplers' surrogate losses
(docs/methods.md#gradient-identity-tests).

Each sampler's own ``surrogate`` is called with a 1-D affine generator ``x = mu + a z`` (so
``p_theta = N(mu, a^2)`` and ``p_{theta,sigma} = N(mu, a^2 + sigma^2)`` have exact scores, which
are injected as ``score_fn``), and its gradient in ``theta = (mu, a)`` is computed with the
expectation over ``(z, eps)`` replaced by tensor-product Gauss-Hermite quadrature, so there is
no Monte-Carlo error. It must match the central finite-difference gradient of the exact
divergence (itself a 1-D quadrature) for DFT (full), KL and Fisher (full); the biased
variants (DFT partial, DFT without the Hessian-vector product, Fisher location) must not.
Everything is float64; the tolerance 1e-3 is far above the quadrature errors (~1e-6 here).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import hermite_e
from torch import Tensor

from samplers.neural import DFTNS, KLNS, FisherNS, NeuralImplicitSampler
from targets.base import Target

SIGMA = 0.3
THETA = (0.2, 0.9)
WEIGHTS, MEANS, STDS = (0.3, 0.7), (-1.5, 1.0), (0.5, 0.8)
# Gauss-Hermite nodes per axis of the (z, eps) tensor-product rule: the surrogates agree with
# the exact gradients to ~1e-6 at 300 (and only to ~2e-2 at 100); hermegauss overflows near 400.
NUM_NODES = 300
STEP = 1e-5  # central differences: truncation ~ STEP^2, round-off ~ 1e-16 / STEP
TOLERANCE = 1e-3
DFT_TRUE = (-1.762149, -3.034094)  # docs/methods.md#gradient-identity-tests
DFT_PARTIAL = (-1.268278, 0.318147)


class Mixture1D(Target):
    """q = 0.3 N(-1.5, 0.5^2) + 0.7 N(1.0, 0.8^2), normalised, score by autograd."""

    name = "mixture_1d"

    def __init__(self) -> None:
        super().__init__(dim=1, dtype=torch.float64)

    def log_prob(self, x: Tensor) -> Tensor:
        means, stds = self.tensor(MEANS), self.tensor(STDS)
        log_components = (torch.log(self.tensor(WEIGHTS)) - torch.log(stds)
                          - 0.5 * math.log(2 * math.pi) - 0.5 * ((x - means) / stds) ** 2)
        return torch.logsumexp(log_components, dim=-1)


class NoHessianTarget(Mixture1D):
    """The same target whose score ignores ``create_graph``: no Hessian-vector product."""

    def score(self, x: Tensor, create_graph: bool = False) -> Tensor:
        return super().score(x, create_graph=False)


def mixture_log_prob(x: np.ndarray) -> np.ndarray:
    terms = [np.log(w) - np.log(s) - 0.5 * np.log(2 * np.pi) - 0.5 * ((x - m) / s) ** 2
             for w, m, s in zip(WEIGHTS, MEANS, STDS, strict=True)]
    return np.logaddexp(*terms)


def mixture_score(x: np.ndarray) -> np.ndarray:
    log_q = mixture_log_prob(x)
    total = np.zeros_like(x)
    for w, m, s in zip(WEIGHTS, MEANS, STDS, strict=True):
        log_component = np.log(w) - np.log(s) - 0.5 * np.log(2 * np.pi) - 0.5 * ((x - m) / s) ** 2
        total += np.exp(log_component - log_q) * (-(x - m) / s**2)
    return total


def gauss_hermite(num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with ``sum_i w_i h(u_i) ~ E h(U)``, ``U ~ N(0, 1)``."""
    nodes, weights = hermite_e.hermegauss(num_nodes)
    return nodes, weights / math.sqrt(2 * math.pi)


# -- exact divergences by 1-D quadrature -----------------------------------------------------
# Gauss-Hermite converges slowly for these integrands (the mixture score q'/q has complex poles
# near the real axis: 200 nodes are still 1e-4 off), so the exact divergences use the
# trapezoidal rule on a uniform grid, which converges geometrically for smooth integrands that
# decay like Gaussians: with step 1e-3 on [-20, 20] it is exact to round-off here.
GRID = np.linspace(-20.0, 20.0, 40001)
GRID_STEP = GRID[1] - GRID[0]


def gaussian_expectation(values: np.ndarray, mu: float, variance: float) -> float:
    """E h(X), X ~ N(mu, variance), for ``values = h(GRID)``, by the trapezoidal rule."""
    density = np.exp(-0.5 * (GRID - mu) ** 2 / variance) / math.sqrt(2 * math.pi * variance)
    return float(np.sum(density * values) * GRID_STEP)  # end terms are ~1e-80: no halving


def dft_divergence(mu: float, a: float) -> float:
    """D = E_{p_{theta,sigma}} (s_q - s_{theta,sigma})^2, p_{theta,sigma} = N(mu, a^2+sigma^2)."""
    variance = a**2 + SIGMA**2
    return gaussian_expectation((mixture_score(GRID) + (GRID - mu) / variance) ** 2, mu, variance)


def kl_divergence(mu: float, a: float) -> float:
    """KL(N(mu, a^2) || q)."""
    log_p = -0.5 * math.log(2 * math.pi * a**2) - 0.5 * (GRID - mu) ** 2 / a**2
    return gaussian_expectation(log_p - mixture_log_prob(GRID), mu, a**2)


def fisher_divergence(mu: float, a: float) -> float:
    """E_{N(mu, a^2)} (s_theta - s_q)^2."""
    return gaussian_expectation((mixture_score(GRID) + (GRID - mu) / a**2) ** 2, mu, a**2)


def finite_difference(divergence, theta=THETA) -> np.ndarray:
    gradient = []
    for index in range(2):
        up, down = list(theta), list(theta)
        up[index] += STEP
        down[index] -= STEP
        gradient.append((divergence(*up) - divergence(*down)) / (2 * STEP))
    return np.array(gradient)


# -- the samplers' own surrogates under quadrature -------------------------------------------
def surrogate_gradient(sampler: NeuralImplicitSampler, target: Target, noised: bool) -> np.ndarray:
    """Gradient in (mu, a) of E_{z,eps}[surrogate], by tensor-product Gauss-Hermite.

    The injected score is exact and frozen (built from detached parameters): N(mu, a^2 +
    sigma^2) for DFT (``noised``), N(mu, a^2) for KL and Fisher.
    """
    nodes, weights = gauss_hermite(NUM_NODES)
    z, eps = (torch.tensor(grid.reshape(-1, 1)) for grid in np.meshgrid(nodes, nodes))
    weight = torch.tensor(np.outer(weights, weights).reshape(-1))
    mu = torch.tensor(THETA[0], dtype=torch.float64, requires_grad=True)
    a = torch.tensor(THETA[1], dtype=torch.float64, requires_grad=True)
    variance = a.detach() ** 2 + (SIGMA**2 if noised else 0.0)

    def exact_score(x: Tensor) -> Tensor:
        return -(x - mu.detach()) / variance

    x = mu + a * z
    per_sample, monitors = sampler.surrogate(x, eps, target, exact_score)
    assert per_sample.shape == (x.shape[0],)
    assert all(value.shape == (x.shape[0],) for value in monitors.values())
    (weight * per_sample).sum().backward()
    return np.array([mu.grad.item(), a.grad.item()])


@pytest.fixture(scope="module")
def true_gradients() -> dict[str, np.ndarray]:
    return {"dft": finite_difference(dft_divergence), "kl": finite_difference(kl_divergence),
            "fisher": finite_difference(fisher_divergence)}


def test_dft_full_matches_reference_and_finite_differences(true_gradients):
    gradient = surrogate_gradient(DFTNS(sigma=SIGMA), Mixture1D(), noised=True)
    np.testing.assert_allclose(true_gradients["dft"], DFT_TRUE, atol=TOLERANCE)
    np.testing.assert_allclose(gradient, DFT_TRUE, atol=TOLERANCE)
    np.testing.assert_allclose(gradient, true_gradients["dft"], atol=TOLERANCE)


def test_dft_partial_is_biased(true_gradients):
    gradient = surrogate_gradient(DFTNS(sigma=SIGMA, gradient="partial"), Mixture1D(),
                                  noised=True)
    np.testing.assert_allclose(gradient, DFT_PARTIAL, atol=TOLERANCE)
    assert np.max(np.abs(gradient - true_gradients["dft"])) > 0.3


def test_dft_without_hessian_vector_product_is_wrong(true_gradients):
    gradient = surrogate_gradient(DFTNS(sigma=SIGMA), NoHessianTarget(), noised=True)
    # Without the HVP the location gradient vanishes: E[s_bar + eps/sigma] = 0
    # (docs/methods.md#dft-ns).
    assert abs(gradient[0]) < TOLERANCE
    assert np.max(np.abs(gradient - true_gradients["dft"])) > 0.3


def test_kl_matches_finite_differences(true_gradients):
    gradient = surrogate_gradient(KLNS(), Mixture1D(), noised=False)
    np.testing.assert_allclose(gradient, true_gradients["kl"], atol=TOLERANCE)


def test_fisher_full_matches_finite_differences(true_gradients):
    gradient = surrogate_gradient(FisherNS(), Mixture1D(), noised=False)
    np.testing.assert_allclose(gradient, true_gradients["fisher"], atol=TOLERANCE)


def test_fisher_location_is_biased(true_gradients):
    gradient = surrogate_gradient(FisherNS(gradient="location"), Mixture1D(), noised=False)
    assert np.max(np.abs(gradient - true_gradients["fisher"])) > 0.3


def test_fisher_hutchinson_divergence_is_unbiased_in_expectation(true_gradients):
    """With exact divergences switched off, 1-D Rademacher probes are +-1, so rho^2 = 1 and
    Hutchinson is exact: the same gradient must come out."""
    sampler = FisherNS(exact_divergence_max_dim=0)
    nodes, weights = gauss_hermite(NUM_NODES)
    z = torch.tensor(nodes.reshape(-1, 1))
    weight = torch.tensor(weights)
    mu = torch.tensor(THETA[0], dtype=torch.float64, requires_grad=True)
    a = torch.tensor(THETA[1], dtype=torch.float64, requires_grad=True)
    x = mu + a * z
    generator = torch.Generator().manual_seed(0)
    per_sample, _ = sampler.surrogate(x, torch.zeros_like(z), Mixture1D(),
                                      lambda y: -(y - mu.detach()) / a.detach() ** 2,
                                      generator=generator)
    (weight * per_sample).sum().backward()
    gradient = np.array([mu.grad.item(), a.grad.item()])
    np.testing.assert_allclose(gradient, true_gradients["fisher"], atol=TOLERANCE)


@pytest.mark.parametrize("sampler_class, key, bad", [
    (DFTNS, "gradient", "location"), (DFTNS, "output", "both"),
    (FisherNS, "gradient", "partial"), (KLNS, "activation", "swish"),
])
def test_invalid_choices_name_the_valid_ones(sampler_class, key, bad):
    with pytest.raises(ValueError, match="valid choices"):
        sampler_class(**{key: bad})
