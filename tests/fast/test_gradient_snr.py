"""benchmark.tools.gradient_snr: squeezed draws, exact scores, per-sample surrogate gradients."""

import math

import pytest
import torch

from benchmark.tools import gradient_snr as gs

EPS64 = torch.finfo(torch.float64).eps


@pytest.fixture(scope="module")
def u3():
    return gs.family_target("u3")


def _draws(target, scale, n=2000, seed=0):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    weights = target._stds / target._stds.sum()
    component = torch.multinomial(weights, n, replacement=True, generator=generator)
    return z, component


def test_squeezed_draws_derivative_matches_finite_differences(u3):
    z, component = _draws(u3, 0.6)
    x, dx = gs.squeezed_draws(u3, 0.6, z, component)
    h = 1e-6  # central difference: error ~ h^2 |x'''| + EPS |x| / h, both below 1e-8 here
    plus, _ = gs.squeezed_draws(u3, 0.6 + h, z, component)
    minus, _ = gs.squeezed_draws(u3, 0.6 - h, z, component)
    assert torch.allclose(dx, (plus - minus) / (2 * h), atol=1e-6, rtol=1e-6)


def test_squeezed_law_at_scale_one_is_the_target(u3):
    """At a = 1 the draws follow the target's own sampler: same envelope, same conditional."""
    z, component = _draws(u3, 1.0, n=50_000)
    x, _ = gs.squeezed_draws(u3, 1.0, z, component)
    exact = u3.sample(50_000, torch.Generator().manual_seed(1))
    # x1 ~ N(0, 4): each s.d. estimate has s.e. 2 / sqrt(2n), their difference sqrt(2) times
    # that (0.009 at n = 50,000); 6 of those keep the false-failure rate below 1e-8.
    assert abs(x[:, 0].std() - exact[:, 0].std()) < 6 * math.sqrt(2) * 2 / math.sqrt(100_000)
    residual = (x[:, 1] - u3._component_means(x[:, 0])[0].gather(
        1, component[:, None]).squeeze(1))
    assert torch.allclose(residual, u3._stds[component] * z[:, 1], atol=10 * EPS64)


def test_clean_score_is_the_squeezed_density_gradient(u3):
    z, component = _draws(u3, 0.5, n=200)
    x, _ = gs.squeezed_draws(u3, 0.5, z, component)
    x = x.requires_grad_(True)
    log_density = u3.log_prob(x) + x[:, 0].square() / 8 - x[:, 0].square() / (8 * 0.25)
    (expected,) = torch.autograd.grad(log_density.sum(), x)
    assert torch.allclose(gs.clean_score(u3, 0.5)(x), expected, atol=1e3 * EPS64, rtol=1e-10)


def test_noised_score_tends_to_clean_score_and_is_a_gradient(u3):
    z, component = _draws(u3, 0.7, n=100)
    x, _ = gs.squeezed_draws(u3, 0.7, z, component)
    # Small sigma: the convolution changes the score by O(sigma^2 / s_k^2) (~0.3% here).
    small = gs.noised_score(u3, 0.7, 0.02)(x)
    clean = gs.clean_score(u3, 0.7)(x).detach()
    assert torch.allclose(small, clean, atol=5e-2, rtol=5e-2)
    # Its Jacobian is symmetric (a score is a gradient): a property of the graph DFT-NS uses.
    y = x[:3].detach().requires_grad_(True)
    score = gs.noised_score(u3, 0.7, 0.14)
    jac = torch.stack([torch.autograd.functional.jacobian(score, y[i:i + 1])[0, :, 0, :]
                       for i in range(3)])
    assert torch.allclose(jac, jac.transpose(1, 2), atol=1e4 * EPS64 * jac.abs().max())


def test_kl_gradient_equals_the_closed_form_derivative():
    """KL(p_a || q) = log(1/a) + a^2/2 - 1/2 along the family, so d/da = a - 1/a."""
    target = gs.family_target("u2")
    g = gs.per_sample_gradients("kl_ns", target, 0.5, 0.16, draws=20_000, seed=3)
    se = g.std().item() / math.sqrt(g.numel())
    # 5 standard errors: false-failure probability ~6e-7 (normal approximation, n = 20,000).
    assert abs(g.mean().item() - (0.5 - 1 / 0.5)) < 5 * se
    at_target = gs.per_sample_gradients("kl_ns", target, 1.0, 0.16, draws=1000, seed=3)
    assert at_target.abs().max().item() < 1e3 * EPS64  # exact scores cancel


def test_fisher_gradient_equals_the_closed_form_derivative():
    """Clean Fisher divergence (1 - a^2)^2 / (4 a^2) along the family: d/da = -(1 - a^4)/(2a^3)."""
    target = gs.family_target("u2")
    g = gs.per_sample_gradients("fisher_ns", target, 0.5, 0.16, draws=20_000, seed=4)
    se = g.std().item() / math.sqrt(g.numel())
    assert abs(g.mean().item() + (1 - 0.5**4) / (2 * 0.5**3)) < 5 * se


def test_gradient_table_and_cli(tmp_path, capsys):
    out = tmp_path / "snr.csv"
    assert gs.main(["--target", "u4", "--sampler", "kl_ns", "dft_ns", "--scale", "0.5",
                    "--draws", "400", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| dft_ns" in printed and "snr@512" in printed
    table = __import__("pandas").read_csv(out)
    assert list(table["sampler"]) == ["kl_ns", "dft_ns"]
    assert table["sigma"].iloc[1] == pytest.approx(0.4 * 0.35)


@pytest.mark.parametrize("argv, message", [
    (["--target", "donut"], "unknown target 'donut'; valid: u2, u3, u4"),
    (["--sampler", "svgd"], "unknown sampler 'svgd'; valid: dft_ns, kl_ns, fisher_ns"),
    (["--scale", "0"], "--scale and --sigma-fraction must be positive"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        gs.main(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
