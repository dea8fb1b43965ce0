"""Reference posteriors for Bayesian logistic regression: a long seeded MALA run per dataset.

``python -m benchmark.tools.blr_reference --dataset breast_cancer`` (see ``--help``) writes
``targets/blr_references/<reference_key>.npz`` (package data, which the BLR target reads),
holding

* ``mean``, ``std`` ``(d + 1,)``: posterior moments over the thinned post-warm-up draws of all
  chains (every ``thin``-th state);
* ``draws`` ``(num_draws, d + 1)`` float32: a random subset of those, the target's reference
  samples;
* ``ess_bulk``, ``ess_tail``, ``rhat`` ``(d + 1,)``: ArviZ's rank-normalised bulk/tail ESS and
  split R-hat per coordinate (Vehtari et al. 2021) over the thinned chains;
* ``laplace_mean``, ``laplace_std`` ``(d + 1,)``: the pilot Laplace approximation;
* ``metadata``: JSON with the command, lengths, step size, acceptance rate, diagnostics summary.

The chain is the project's :class:`samplers.langevin.MALA` (dual-averaging warm-up, then a
fixed step) run on whitened coordinates ``u`` with ``theta = mu + L u`` — i.e. MALA with the
constant preconditioner ``L L^T``, still exact (Metropolis-corrected) for the posterior.
``L L^T`` is first the Laplace covariance ``(-Hessian at the MAP)^{-1}`` (pilot run), then the
pilot run's empirical covariance (main run; see :func:`run`). Without it, the
``log alpha`` coordinate (posterior s.d. ~0.2) would mix ``(0.2 / s.d. of w)^2`` times slower
than the weights (s.d. ~1e-2 at N = 16,000), because one step size serves all coordinates.
The pilot chains start overdispersed, ``u ~ N(0, 2^2 I)`` around the Laplace approximation.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from samplers.base import drive_chain
from samplers.langevin import MALA, MALAState
from targets.base import AnalyticScoreTarget, make_generator
from targets.blr import REFERENCE_DIR, BayesianLogisticRegression

#: A pilot chain whose mean log posterior is this far below the best chain's is in a region
#: of negligible mass (see :func:`run`).
POOR_CHAIN_NATS = 50.0


class WhitenedTarget(AnalyticScoreTarget):
    """``log p(mu + L u)`` over ``u``; score ``L^T s(mu + L u)`` (the Jacobian is constant)."""

    name = "whitened"

    def __init__(self, target: BayesianLogisticRegression, mean: Tensor,
                 cholesky: Tensor) -> None:
        super().__init__(dim=target.dim, device=target.device, dtype=target.dtype)
        self.target, self.mean, self.cholesky = target, mean, cholesky

    def to_theta(self, u: Tensor) -> Tensor:
        return self.mean + u @ self.cholesky.T

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_prob, score = self.target.log_prob_and_score(self.to_theta(x))
        return log_prob, score @ self.cholesky

    def log_prob(self, x: Tensor) -> Tensor:
        return self.log_prob_and_score(x)[0]


def laplace(target: BayesianLogisticRegression, max_iterations: int = 200) -> tuple[Tensor, Tensor]:
    """MAP by Newton's method with backtracking, and the Laplace covariance.

    The log posterior in ``theta`` is not concave everywhere (the ``log alpha`` coupling), so
    each Newton step is damped until the log posterior increases; the start ``w = 0``,
    ``log alpha = 0`` is a safe interior point.

    Returns:
        ``(mean (d+1,), covariance (d+1, d+1))``.
    """
    theta = torch.zeros(target.dim, dtype=target.dtype, device=target.device)

    def objective(point: Tensor) -> Tensor:
        return target.log_prob(point.unsqueeze(0))[0]

    value = objective(theta)
    for _ in range(max_iterations):
        gradient = target.score(theta.unsqueeze(0))[0]
        hessian = torch.autograd.functional.hessian(objective, theta)
        try:
            direction = torch.linalg.solve(-hessian, gradient)
        except RuntimeError:
            direction = gradient
        if float(direction @ gradient) <= 0:  # not an ascent direction: use the gradient
            direction = gradient
        step = 1.0
        while step > 1e-10:
            candidate = theta + step * direction
            new_value = objective(candidate)
            if torch.isfinite(new_value) and new_value >= value:
                break
            step *= 0.5
        theta, value = candidate, new_value
        if float(gradient.abs().max()) < 1e-8 * max(1.0, float(value.abs())):
            break
    hessian = torch.autograd.functional.hessian(objective, theta)
    covariance = torch.linalg.inv(-hessian)
    covariance = 0.5 * (covariance + covariance.T)
    return theta, covariance


def diagnostics(chains: np.ndarray) -> dict[str, np.ndarray]:
    """ArviZ bulk/tail ESS and rank-normalised split R-hat per coordinate.

    Args:
        chains: ``(num_chains, num_draws, dim)`` post-warm-up states.
    """
    import arviz as az

    dataset = az.convert_to_dataset({"theta": chains})
    return {"ess_bulk": az.ess(dataset, method="bulk")["theta"].values,
            "ess_tail": az.ess(dataset, method="tail")["theta"].values,
            "rhat": az.rhat(dataset, method="rank")["theta"].values}


def _mala(whitened: WhitenedTarget, u: Tensor, num_warmup: int, num_steps: int,
          generator: torch.Generator, progress: bool, label: str, thin: int = 1
          ) -> tuple[np.ndarray, list[float], float]:
    """Run MALA from ``u``: ``num_warmup`` adapting steps, then ``num_steps`` more, keeping
    every ``thin``-th state.

    Returns ``(chains (num_chains, num_steps // thin, dim) in theta, acceptance rates of the
    post-warm-up steps, final h)``.
    """
    total = num_warmup + num_steps
    sampler = MALA(step_size=1.0, warmup_fraction=num_warmup / total)
    kept, acceptance = [], []

    def record(state: MALAState, info: dict[str, Tensor]) -> None:
        index = state.step_index - 1  # transitions taken before this one
        if index >= num_warmup:
            acceptance.append(float(info["acceptance_rate"]))
        if index >= num_warmup and (index - num_warmup + 1) % thin == 0:
            kept.append(whitened.to_theta(state.x).cpu().numpy())
        if progress and (index + 1) % max(1, total // 10) == 0:
            print(f"  {label}: step {index + 1}/{total}, step size "
                  f"{float(info['step_size']):.3g}", file=sys.stderr, flush=True)

    state = drive_chain(sampler, whitened, u, total, generator, on_step=record)
    return np.stack(kept, axis=1), acceptance, float(state.log_step_size.exp())


def run(target: BayesianLogisticRegression, num_chains: int, num_steps: int, num_warmup: int,
        thin: int, num_draws: int, seed: int, progress: bool = True) -> dict:
    """Laplace, a pilot MALA run, then the main preconditioned MALA run.

    The hierarchical posterior is far from its Laplace approximation (on breast_cancer the
    posterior s.d. of ``w`` is ~4x the Laplace one and ``log alpha`` sits ~2.8 lower: the joint
    MAP of ``(w, log alpha)`` is a poor centre), so the Laplace whitening only starts a pilot
    run of ``num_warmup`` steps from ``u ~ N(0, 2^2 I)``; the main run is whitened with the
    mean and covariance of the pilot's second half (chains stuck in a negligible local mode
    dropped) and starts from random draws of it.
    """
    start = time.perf_counter()
    mean, covariance = laplace(target)
    generator = make_generator(seed, target.device)
    laplace_view = WhitenedTarget(target, mean, torch.linalg.cholesky(covariance))
    u = 2.0 * laplace_view.randn(num_chains, target.dim, generator=generator)
    pilot, _, _ = _mala(laplace_view, u, num_warmup // 2, num_warmup - num_warmup // 2,
                        generator, progress, "pilot")
    second_half = torch.as_tensor(pilot[:, pilot.shape[1] // 2:], dtype=target.dtype,
                                  device=target.device)  # (chains, draws, dim)
    # Chains left in a local mode of negligible mass are dropped: on breast_cancer the joint
    # MAP (log alpha ~ 2.1, |w| ~ 3) is such a mode, ~170 nats below the typical set (log
    # alpha ~ -0.9, |w| ~ 9.5), and a chain started there stays for 10^5 steps. Typical-set
    # fluctuations of log p are ~sqrt(dim / 2) (4 nats for dim 32), so a chain whose mean log
    # p is more than POOR_CHAIN_NATS below the best chain's is not in the same region.
    chain_log_prob = target.log_prob(second_half.reshape(-1, target.dim)).reshape(
        second_half.shape[:2]).mean(dim=1)
    good = chain_log_prob >= chain_log_prob.max() - POOR_CHAIN_NATS
    pilot_flat = second_half[good].reshape(-1, target.dim)
    pilot_mean = pilot_flat.mean(dim=0)
    pilot_covariance = torch.cov(pilot_flat.T)
    main_view = WhitenedTarget(target, pilot_mean, torch.linalg.cholesky(pilot_covariance))
    starts = pilot_flat[torch.randperm(len(pilot_flat), generator=generator,
                                       device=target.device)[:num_chains]]
    u = torch.linalg.solve_triangular(main_view.cholesky, (starts - pilot_mean).T,
                                      upper=False).T
    chains, acceptance, step_size = _mala(main_view, u, num_warmup, num_steps, generator,
                                          progress, "main", thin)
    flat = chains.reshape(-1, target.dim)
    thinned = flat
    rows = np.random.default_rng(seed).permutation(len(thinned))[:num_draws]
    summary = diagnostics(chains)
    seconds = time.perf_counter() - start
    metadata = {
        "command": "python -m benchmark.tools.blr_reference " + shlex.join(sys.argv[1:]),
        "dataset": target.dataset, "options": target.options, "reference_key":
        target.reference_key, "dim": target.dim, "num_train": target.num_data,
        "sampler": "MALA (samplers.langevin.MALA) on whitened coordinates: preconditioner = "
                   "covariance of a pilot MALA run (itself whitened by the Laplace "
                   "approximation); the step size is adapted in warm-up, then fixed",
        "num_chains": num_chains, "num_pilot": num_warmup,
        "pilot_chains_dropped": int((~good).sum()),
        "pilot_chain_mean_log_prob": [round(float(v), 2) for v in chain_log_prob],
        "num_warmup": num_warmup,
        "num_steps": num_steps,
        "thin": thin, "num_draws_stored": int(len(rows)), "seed": seed,
        "step_size_whitened": step_size,
        "acceptance_rate": float(np.mean(acceptance)),
        "ess_bulk_min": float(summary["ess_bulk"].min()),
        "ess_tail_min": float(summary["ess_tail"].min()),
        "rhat_max": float(summary["rhat"].max()),
        "diagnostics": "arviz.ess(method='bulk'|'tail'), arviz.rhat(method='rank')",
        "arviz_version": __import__("arviz").__version__, "torch_version": torch.__version__,
        "seconds": seconds, "num_threads": torch.get_num_threads(),
    }
    return {"mean": flat.mean(axis=0), "std": flat.std(axis=0, ddof=1),
            "draws": thinned[rows].astype(np.float32),
            "laplace_mean": mean.cpu().numpy(),
            "laplace_std": covariance.diagonal().sqrt().cpu().numpy(),
            **summary, "metadata": np.array(json.dumps(metadata, sort_keys=True))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.tools.blr_reference",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="breast_cancer")
    parser.add_argument("--num-data", type=int, help="synthetic: rows before the split")
    parser.add_argument("--num-features", type=int, help="synthetic: raw features")
    parser.add_argument("--data-seed", type=int, help="synthetic: data seed")
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20_000, help="post-warm-up steps")
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--thin", type=int, default=20)
    parser.add_argument("--draws", type=int, default=2_000, help="thinned draws stored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REFERENCE_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    target = BayesianLogisticRegression(args.dataset, num_data=args.num_data,
                                        num_features=args.num_features,
                                        data_seed=args.data_seed, dtype=torch.float64)
    stored = run(target, args.chains, args.steps, args.warmup, args.thin, args.draws,
                 args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{target.reference_key}.npz"
    np.savez_compressed(path, **stored)
    metadata = json.loads(str(stored["metadata"]))
    print(f"wrote {path}: acceptance {metadata['acceptance_rate']:.3f}, min bulk ESS "
          f"{metadata['ess_bulk_min']:.0f}, min tail ESS {metadata['ess_tail_min']:.0f}, "
          f"max split R-hat {metadata['rhat_max']:.4f}, {metadata['seconds']:.0f} s")
    return 0 if math.isfinite(metadata["rhat_max"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
