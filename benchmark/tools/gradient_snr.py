"""Signal and noise of a neural sampler's training gradient along a target's wide direction.

    python -m benchmark.tools.gradient_snr --target u2 --scale 0.5 0.75 1.0

Why: on u2, u3 and u4 one-step DFT-NS keeps ``x₁`` within about half the target's spread
(docs/tuning.md). This tool asks whether its training gradient can see that. It takes the
one-parameter family of laws that squeeze the target's ``x₁`` envelope ``N(0, 4)`` to
``N(0, 4a²)`` and keep the exact conditional ``q(x₂ | x₁)``,

    x₁ = 2 a z₁,    x₂ = m_k(x₁) + s_k z₂    (component k drawn with the target's weights),

so ``a = 1`` is the target, and feeds each sampler's own ``surrogate`` (the code its training
runs) these draws with the *exact* sampler score in place of its score network:

- KL-NS and Fisher-NS (clean scores): ``s_a(x) = s_q(x) + (x₁/4 − x₁/(4a²), 0)``, closed form;
- DFT-NS (score of the noised law ``p_a * N(0, σ² I)``): by quadrature over ``x₁``, since
  ``x₂ | x₁`` is a Gaussian mixture whose convolution with ``N(0, σ²)`` is closed form.

The per-sample derivative ``c_b · dx_b/da`` (``c`` the surrogate's frozen direction) is what
the optimiser receives for the parameter ``a``; its mean over many draws is the derivative of
the sampler's divergence along the family, and ``mean / (s.d. / √batch)`` is the
signal-to-noise ratio of one training batch. With exact scores this is the best case: a score
network only adds error.

Prints a Markdown table (sampler, σ, a, mean gradient ± s.e., per-sample s.d., SNR at the
batch size); ``--out`` writes it as CSV. One core; the DFT-NS rows take about a minute per
200,000 draws.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from samplers import SAMPLERS
from targets import make_target
from targets.rezende_mohamed import _RezendeMohamedConditional

#: Targets of the form ``q~(x) = Σ_k exp(−½((x₂ − m_k(x₁))/s_k)²) · exp(−x₁²/8)``.
FAMILY_TARGETS = ("u2", "u3", "u4")
SAMPLER_CHOICES = ("dft_ns", "kl_ns", "fisher_ns")
#: The x₁ envelope's variance in every family target (``−x₁²/8`` in the log density).
ENVELOPE_VARIANCE = 4.0
# Draws per pass: the quadrature holds CHUNK x (grid points) values with a graph. At 5,000 a
# pass's tensors are fresh mappings and page faults cost more than the arithmetic (measured).
CHUNK = 500
GRID_POINTS = 1201

Score = Callable[[Tensor], Tensor]


def family_target(name: str, dtype: torch.dtype = torch.float64) -> _RezendeMohamedConditional:
    """The target ``name`` (one of :data:`FAMILY_TARGETS`), in ``dtype``.

    Raises:
        ValueError: ``name`` is not a family target.
    """
    if name not in FAMILY_TARGETS:
        raise ValueError(f"unknown target {name!r}; valid: "
                         f"{', '.join(FAMILY_TARGETS)}")
    return make_target(name, dtype=dtype)


def squeezed_draws(target: _RezendeMohamedConditional, scale: float, z: Tensor,
                   component: Tensor) -> tuple[Tensor, Tensor]:
    """Draws of the squeezed law and their derivative in ``a``.

    Args:
        target: a family target.
        scale: ``a``, the envelope's s.d. as a fraction of the target's (2).
        z: ``(n, 2)`` standard normal.
        component: ``(n,)`` mixture components, drawn with weights ``∝ s_k``.

    Returns:
        ``x`` and ``dx/da``, each ``(n, 2)``.
    """
    x1 = math.sqrt(ENVELOPE_VARIANCE) * scale * z[:, 0]
    dx1 = math.sqrt(ENVELOPE_VARIANCE) * z[:, 0]
    means, slopes = target._component_means(x1)  # (n, K) each
    mean = means.gather(1, component[:, None]).squeeze(1)
    slope = slopes.gather(1, component[:, None]).squeeze(1)
    x2 = mean + target._stds[component] * z[:, 1]
    return torch.stack((x1, x2), dim=1), torch.stack((dx1, slope * dx1), dim=1)


def clean_score(target: _RezendeMohamedConditional, scale: float) -> Score:
    """Score of the squeezed law, differentiable in its input (Fisher-NS needs its divergence)."""
    shift = 1.0 / ENVELOPE_VARIANCE - 1.0 / (ENVELOPE_VARIANCE * scale * scale)

    def score(x: Tensor) -> Tensor:
        envelope = torch.stack((shift * x[:, 0], torch.zeros_like(x[:, 1])), dim=1)
        return target.score(x, create_graph=True) + envelope
    return score


def noised_score(target: _RezendeMohamedConditional, scale: float, sigma: float) -> Score:
    """Score of ``p_a * N(0, σ² I)`` by quadrature over ``x₁``, differentiable in its input.

    ``p_{a,σ}(y) ∝ ∫ N(x₁; 0, 4a²) N(y₁; x₁, σ²) Σ_k w_k N(y₂; m_k(x₁), s_k² + σ²) dx₁`` on a
    grid over ``±10`` envelope s.d. with at least :data:`GRID_POINTS` points and spacing at most
    ``σ/2``: the sum over a grid of spacing ``h`` of a Gaussian of s.d. ``σ`` is exact up to
    ``~exp(−2π²σ²/h²)``, far below float64's epsilon at ``h = σ/2``.
    """
    dtype = target._stds.dtype
    half_width = 10 * math.sqrt(ENVELOPE_VARIANCE) * scale
    points = max(GRID_POINTS, math.ceil(2 * half_width / (sigma / 2)) + 1)
    grid = torch.linspace(-half_width, half_width, points, dtype=dtype)
    means, _ = target._component_means(grid)  # (G, K)
    stds = target._stds
    variances = stds.square() + sigma**2
    log_weights = torch.log(stds / stds.sum()) - 0.5 * torch.log(variances)  # (K,)
    log_prior = -grid.square() / (2 * ENVELOPE_VARIANCE * scale * scale)  # (G,)

    def score(y: Tensor) -> Tensor:
        with torch.enable_grad():
            y = y if y.requires_grad else y.detach().requires_grad_(True)
            along = -(y[:, :1] - grid).square() / (2 * sigma**2)  # (n, G)
            across = torch.logsumexp(
                log_weights - (y[:, 1, None, None] - means).square() / (2 * variances), dim=-1)
            log_density = torch.logsumexp(log_prior + along + across, dim=1)
            (gradient,) = torch.autograd.grad(log_density.sum(), y, create_graph=True)
        return gradient
    return score


def per_sample_gradients(sampler_name: str, target: _RezendeMohamedConditional, scale: float,
                         sigma: float, draws: int, seed: int) -> Tensor:
    """``(draws,)`` per-sample derivatives in ``a`` of ``sampler_name``'s surrogate.

    ``sigma`` is DFT-NS's noise level (its output is ``x + σε``); the clean-score samplers
    ignore it. Draws come in chunks of :data:`CHUNK` from ``torch.Generator(seed)``.
    """
    sampler = SAMPLERS[sampler_name]()
    sampler.sigma = float(sigma)  # what build() would set; the surrogate reads only this
    generator = torch.Generator().manual_seed(seed)
    dtype = target._stds.dtype
    weights = target._stds / target._stds.sum()
    score = (noised_score(target, scale, sigma) if sampler_name == "dft_ns"
             else clean_score(target, scale))
    out = []
    for start in range(0, draws, CHUNK):
        n = min(CHUNK, draws - start)
        z = torch.randn(n, 2, generator=generator, dtype=dtype)
        noise = torch.randn(n, 2, generator=generator, dtype=dtype)
        component = torch.multinomial(weights, n, replacement=True, generator=generator)
        x, dx = squeezed_draws(target, scale, z, component)
        x = x.requires_grad_(True)
        surrogate, _ = sampler.surrogate(x, noise, target, score, generator)
        (direction,) = torch.autograd.grad(surrogate.sum(), x)
        out.append((direction * dx).sum(dim=1).detach())
    return torch.cat(out)


def gradient_table(target_name: str, samplers: Sequence[str], scales: Sequence[float],
                   sigma_fractions: Sequence[float], draws: int, batch: int,
                   seed: int) -> pd.DataFrame:
    """One row per (sampler, σ, a): mean gradient, its s.e., per-sample s.d., batch SNR."""
    target = family_target(target_name)
    rows = []
    for name in samplers:
        fractions = sigma_fractions if name == "dft_ns" else [float("nan")]
        for fraction in fractions:
            sigma = fraction * float(target.length_scale)
            for scale in scales:
                g = per_sample_gradients(name, target, scale, sigma, draws, seed)
                mean, sd = g.mean().item(), g.std().item()
                # Exact scores can cancel exactly (KL-NS, Fisher-NS at a = 1): a spread at
                # rounding level is no noise, and the ratio is left undefined.
                rounding = math.sqrt(torch.finfo(g.dtype).eps) * (1.0 + g.abs().max().item())
                snr = mean / (sd / math.sqrt(batch)) if sd > rounding else float("nan")
                rows.append({"sampler": name, "sigma": sigma, "a": scale, "mean": mean,
                             "se": sd / math.sqrt(draws), "sd": sd, f"snr@{batch}": snr})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.tools.gradient_snr",
        description="Per-sample training gradients of neural samplers along the x1 scale of "
                    "u2/u3/u4, with exact sampler scores.")
    parser.add_argument("--target", default="u2", help=f"one of {', '.join(FAMILY_TARGETS)}")
    parser.add_argument("--sampler", nargs="+", default=["kl_ns", "dft_ns"],
                        help=f"any of {', '.join(SAMPLER_CHOICES)} (default: kl_ns dft_ns)")
    parser.add_argument("--scale", nargs="+", type=float, default=[0.5, 0.75, 1.0],
                        help="envelope scales a > 0 (1 = the target)")
    parser.add_argument("--sigma-fraction", nargs="+", type=float, default=[0.4],
                        help="DFT-NS sigma as fractions of the target's length scale")
    parser.add_argument("--draws", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=512, help="batch size for the SNR column")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="CSV of the table")
    args = parser.parse_args(argv)
    bad = [name for name in args.sampler if name not in SAMPLER_CHOICES]
    if bad:
        parser.error(f"unknown sampler {bad[0]!r}; valid: {', '.join(SAMPLER_CHOICES)}")
    if min(args.scale) <= 0 or min(args.sigma_fraction) <= 0:
        parser.error("--scale and --sigma-fraction must be positive")
    if args.draws < 2 or args.batch < 1:
        parser.error("--draws must be at least 2 and --batch at least 1")
    torch.set_num_threads(1)
    try:
        table = gradient_table(args.target, args.sampler, args.scale, args.sigma_fraction,
                               args.draws, args.batch, args.seed)
    except ValueError as error:  # an unknown target: one line, exit status 2
        parser.error(str(error))
    print(f"{args.target}: derivative in a of each sampler's surrogate, {args.draws} draws "
          f"per row, seed {args.seed}\n\n{table.to_markdown(index=False, floatfmt='.4g')}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
