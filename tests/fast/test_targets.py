"""Contract tests over every registered target (a new registry entry is tested for free)."""

from __future__ import annotations

import pytest
import torch

from targets import TARGETS, CountingTarget, make_generator, make_target
from targets.grid import GridSampler

# Image EBMs (d = 64, 1024) have their own contract tests in test_ebm.py: coordinate-wise finite
# differences over all d would take minutes, and they have no reference sampler.
# Image targets have their own tests (test_ebm.py, test_mfa.py): their log-densities reach
# ~1e6 at this file's N(0, 2.25) test points, where float64 finite differences lose the
# precision its tolerances assume, and mfa_fashion needs a dataset that may be absent.
NAMES = sorted(name for name in TARGETS if not name.startswith(("ebm_", "mfa_")))
MIXTURES = ("mog2", "mog2w", "mog8")


def _points(target, n: int = 16, seed: int = 0, scale: float = 1.5) -> torch.Tensor:
    """Random inputs in the target's dtype: N(0, scale² I), off any special point (x = 0)."""
    return scale * target.randn(n, target.dim, generator=make_generator(seed))


def finite_difference_score(target, x: torch.Tensor, step: float = 1e-5) -> torch.Tensor:
    """Central differences of log_prob, one coordinate at a time (loop over d, not samples)."""
    columns = []
    for j in range(target.dim):
        shift = torch.zeros_like(x)
        shift[:, j] = step
        columns.append((target.log_prob(x + shift) - target.log_prob(x - shift)) / (2 * step))
    return torch.stack(columns, dim=1)


def test_registry_entries_are_named_and_described():
    for name, cls in TARGETS.items():
        assert cls.name == name
        assert cls.pretty_name and cls.description and "\n" not in cls.description


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtype_and_finiteness(name, dtype):
    target = make_target(name, dtype=dtype)
    x = _points(target, n=32, scale=2.0)
    log_prob = target.log_prob(x)
    score = target.score(x)
    fused_log_prob, fused_score = target.log_prob_and_score(x)
    assert log_prob.shape == fused_log_prob.shape == (32,)
    assert score.shape == fused_score.shape == (32, target.dim)
    for value in (log_prob, score, fused_log_prob, fused_score):
        assert value.dtype == dtype and value.device == target.device
        assert torch.isfinite(value).all()


@pytest.mark.parametrize("name", NAMES)
def test_sample_shape_dtype_and_determinism(name):
    target = make_target(name, dtype=torch.float32)
    first = target.sample(64, make_generator(3))
    again = target.sample(64, make_generator(3))
    other = target.sample(64, make_generator(4))
    assert first.shape == (64, target.dim) and first.dtype == torch.float32
    assert torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert "reference" in target.provides


@pytest.mark.parametrize("name", NAMES)
def test_score_matches_central_finite_differences(name):
    target = make_target(name, dtype=torch.float64)
    x = _points(target, seed=1)
    expected = finite_difference_score(target, x)
    # FD error: truncation ~ step²·|f'''|/6 ~ 1e-10, rounding ~ 1e-16·|f|/step ~ 1e-9 here.
    torch.testing.assert_close(target.score(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_fused_call_matches_separate_calls(name):
    target = make_target(name, dtype=torch.float64)
    x = _points(target, seed=2).requires_grad_(True)
    log_prob, score = target.log_prob_and_score(x)
    assert not log_prob.requires_grad and not score.requires_grad
    torch.testing.assert_close(log_prob, target.log_prob(x).detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(score, target.score(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_score_with_create_graph_gives_hessian_vector_products(name):
    target = make_target(name, dtype=torch.float64)
    x = _points(target, seed=5).requires_grad_(True)
    v = target.randn(*x.shape, generator=make_generator(6))
    score = target.score(x, create_graph=True)
    (hvp,) = torch.autograd.grad((score * v).sum(), x)
    step = 1e-5
    with torch.no_grad():
        expected = (target.score(x + step * v) - target.score(x - step * v)) / (2 * step)
    torch.testing.assert_close(hvp, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_counting_wrapper_counts_each_particle_once(name):
    counting = CountingTarget(make_target(name))
    x = _points(counting.target, n=7)
    counting.log_prob(x)
    counting.score(x)
    counting.log_prob_and_score(x)
    assert (counting.num_evaluations, counting.num_hvp, counting.num_calls) == (21, 0, 3)
    counting.score(x.clone().requires_grad_(True), create_graph=True)
    assert (counting.num_evaluations, counting.num_hvp, counting.num_calls) == (28, 7, 4)
    counting.sample(5, make_generator(0))  # reference sampling is not an evaluation
    assert counting.num_evaluations == 28 and counting.name == name


@pytest.mark.parametrize("name", MIXTURES)
def test_mixtures_expose_modes(name):
    target = make_target(name, dtype=torch.float64)
    modes = target.modes()
    assert modes.locations.shape == (modes.weights.shape[0], 2)
    assert float(modes.weights.sum()) == pytest.approx(1.0)
    assert "modes" in target.provides
    # Each mode is a local maximum of the density: the score vanishes there (up to the others'
    # pull, below 1e-3 for these separations).
    assert target.score(modes.locations).abs().max() < 1e-3


def test_make_target_rejects_unknown_names_and_parameters():
    with pytest.raises(ValueError, match=r"unknown target 'nope'.*gaussian.*funnel_d") as error:
        make_target("nope")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"unknown parameter 'dim' for target 'gaussian'.*none"):
        make_target("gaussian", dim=3)
    with pytest.raises(ValueError, match=r"unknown parameter 'scale'.*valid parameters: dim"):
        make_target("gaussian_d", scale=2.0)
    with pytest.raises(ValueError, match="dim >= 2"):
        make_target("funnel_d", dim=1)


@pytest.mark.parametrize("dim", [2, 10, 50])
def test_correlated_gaussian_structure(dim):
    target = make_target("gaussian_d", dim=dim, dtype=torch.float64)
    covariance = target.covariance
    eigenvalues = torch.linalg.eigvalsh(covariance)
    assert float(eigenvalues.max() / eigenvalues.min()) == pytest.approx(100.0, rel=1e-10)
    torch.testing.assert_close(covariance, covariance.T)
    torch.testing.assert_close(covariance @ target.precision, torch.eye(dim, dtype=torch.float64))
    # Deterministic: a second build (e.g. on another machine) gives the same rotation.
    rebuilt = make_target("gaussian_d", dim=dim, dtype=torch.float64)
    assert torch.equal(rebuilt.covariance, covariance)
    assert not torch.allclose(covariance, torch.diag(torch.diagonal(covariance)))


def test_funnel_d_reduces_to_funnel_in_two_dimensions():
    funnel = make_target("funnel", dtype=torch.float64)
    funnel_2 = make_target("funnel_d", dim=2, dtype=torch.float64)
    x = _points(funnel)
    torch.testing.assert_close(funnel.log_prob(x), funnel_2.log_prob(x))


def test_grid_sampler_refuses_a_window_that_cuts_off_mass():
    gaussian = make_target("gaussian", dtype=torch.float64)
    with pytest.raises(ValueError, match="mass outside"):
        GridSampler(gaussian.log_prob, ((-2.0, 2.0), (-2.0, 2.0)), resolution=101,
                    check_resolution=101)
    sampler = GridSampler(gaussian.log_prob, ((-6.0, 6.0), (-6.0, 6.0)), resolution=101,
                          dtype=torch.float64, check_resolution=101)
    samples = sampler.sample(1000, make_generator(0))
    assert sampler.outside_mass < 1e-4
    assert samples.shape == (1000, 2) and samples.abs().max() <= 6.0
