"""Retrain one planned neural cell and trace where its generator's outputs are.

    python -m benchmark.tools.trace_training paper-ebm --target mfa_mnist --sampler dft_ns \\
        --seed 0 --out results/traces/paper-ebm-mfa_mnist-dft_ns-0.csv

The training is the cell's own: the same sampler, parameters (overrides included), target,
cell seed and generator, so it is bit for bit the one behind the stored cell (its held-out
monitor values match the store's history). Every ``log_every`` iterations it also records,
for the live weights and for the weights the sampler reports (the average, when the sampler
keeps one), quantiles of the distance of the generator's outputs at 4,096 fixed latents from
a centre: the mean of 4,096 exact samples when the target has them, else of its initial law.
The exact samples' own median and largest distances are printed for scale.

What it is for: a training whose result is far off while its objective and monitor look
healthy (docs/tuning.md, the ``mfa_mnist`` DFT-NS seed 0). It writes the history rows (losses,
monitor, training seconds) with the traced columns, as a CSV in long form
(``iteration, metric, value``), and prints it wide. One core; nothing is cached or stored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from benchmark.plan.cells import Cell, build_sampler, build_target, plan_cells
from benchmark.plan.matrix import load_matrix
from benchmark.schema import MatrixError
from samplers.base import NeuralSampler, run_training
from targets import CountingTarget, make_generator
from targets.base import Target

#: Latents traced at every check, and draws that set the centre.
TRACE_DRAWS = 4096
QUANTILES = {"median": 0.5, "q99": 0.99, "max": 1.0}


def find_cell(matrix_name: str, target: str, sampler: str, seed: int) -> Cell:
    """The matrix's trained cell for (target label, sampler label, seed); the undenoised twin
    (both twins share one training).

    Raises:
        LookupError: no such neural cell (the message lists the valid labels).
    """
    cells = [cell for cell in plan_cells(load_matrix(matrix_name))
             if cell.sampler is not None and not cell.denoise]
    for cell in cells:
        if (cell.target.label, cell.sampler.label, cell.seed) == (target, sampler, seed):
            return cell
    labels = sorted({(c.target.label, c.sampler.label) for c in cells})
    raise LookupError(f"no cell ({target}, {sampler}, seed {seed}) in matrix '{matrix_name}'; "
                     f"valid (target, sampler): {labels}")


def centre_and_scale(target: Target) -> tuple[Tensor, Tensor | None]:
    """``(centre (d,), distances of exact samples from it (m,) or None)``."""
    generator = make_generator(1, target.device)
    if "reference" in target.provides:
        exact = target.sample(TRACE_DRAWS, generator)
        centre = exact.mean(dim=0)
        return centre, (exact - centre).norm(dim=1)
    return target.initial_positions(TRACE_DRAWS, generator).mean(dim=0), None


def trace(cell: Cell) -> tuple[pd.DataFrame, Tensor | None]:
    """Train the cell's sampler with the traced columns; ``(long history, exact distances)``."""
    target = build_target(cell.target.name, dict(cell.target.params), cell.device, cell.dtype,
                          cell.target.plugin_dir)
    sampler = build_sampler(cell.sampler, cell.params)
    if not isinstance(sampler, NeuralSampler) or not hasattr(sampler, "generator_net"):
        raise LookupError(f"sampler '{cell.sampler.label}' has no generator network to trace")
    centre, exact = centre_and_scale(target)
    latent_generator = make_generator(2, target.device)
    latents: list[Tensor] = []

    def distances(prefix: str) -> dict[str, float]:
        net = sampler.generator_net
        if not latents:  # drawn once the networks exist (their latent width is known then)
            latents.append(torch.randn(TRACE_DRAWS, sampler.latent_dim,
                                       generator=latent_generator, device=target.device,
                                       dtype=target.dtype))
        with torch.no_grad():
            radius = (net(latents[0]) - centre).norm(dim=1)
        return {f"{prefix}_{name}": float(torch.quantile(radius.double(), q))
                for name, q in QUANTILES.items()}

    live: dict[str, float] = {}
    train_step = sampler.train_step

    def traced_step(*args, **kwargs):  # the live weights, between optimiser steps
        state, losses = train_step(*args, **kwargs)
        if state.iteration % sampler.params.log_every == 0:
            live.update(distances("live"))
        return state, losses

    sampler.train_step = traced_step  # this instance only; the class is untouched
    # Callbacks run under the weights the sampler reports (NeuralSampler.sampling_weights).
    history = run_training(sampler, CountingTarget(target),
                           make_generator(cell.cell_seed, target.device),
                           sampler.params.num_iterations,
                           callback=lambda iteration, _: {**distances("reported"), **live})
    return pd.DataFrame(history), exact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.tools.trace_training",
        description="Retrain one planned neural cell and trace its generator's outputs.")
    parser.add_argument("matrix", help="shipped matrix name or path to a TOML file")
    parser.add_argument("--target", required=True, help="target label in the matrix")
    parser.add_argument("--sampler", required=True, help="sampler label (without +dn)")
    parser.add_argument("--seed", type=int, required=True, help="one of the matrix's seeds")
    parser.add_argument("--out", type=Path, help="CSV of the traced history (long form)")
    parser.add_argument("--num-threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    try:
        cell = find_cell(args.matrix, args.target, args.sampler, args.seed)
        print(f"cell {cell.cell_id}, train key {cell.train_key}", flush=True)
        history, exact = trace(cell)
    except (LookupError, MatrixError) as error:
        parser.error(str(error))  # one line, exit status 2
    if exact is not None:
        print(f"exact samples' distance from their mean: median {float(exact.median()):.4g}, "
              f"max {float(exact.max()):.4g}")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(history.pivot_table(index="iteration", columns="metric", values="value"))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        history.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
