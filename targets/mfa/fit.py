"""Fit one factor analyser per class of an image dataset and save an MFA parameter file.

Usage (the commands that made the shipped files are in ``targets/mfa/README.md``)::

    python -m targets.mfa.fit --dataset digits --rank 8 --out targets/mfa/params/digits.pt

Each class's training images are fitted separately by maximum likelihood (the MFA EM of
Ghahramani & Hinton (1996) with known component labels reduces to one factor analysis per
class): initialised by closed-form PPCA (Tipping & Bishop 1999: top-``r`` eigenvectors of the
class covariance, isotropic noise = mean discarded eigenvalue), then EM for factor analysis with
per-pixel ``psi`` (Rubin & Thayer 1982), each ``psi_j`` clamped below at ``psi_floor``. The clamp
is the exact constrained M-step (the expected complete-data log-likelihood is unimodal in each
``psi_j``), so EM stays monotone. Nothing is random: the fit is a deterministic function of the
training split. Mixing weights are the class frequencies of the training split.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

#: Default lower bound on the per-pixel noise variance (pixels in [0, 1]): keeps Sigma_k
#: non-singular on pixels that are constant in a class (image borders, MNIST's zero padding).
DEFAULT_PSI_FLOOR = 1e-3


@dataclass(frozen=True)
class FactorAnalyser:
    """One fitted factor analyser ``N(mu, W W^T + diag(psi))``.

    Attributes:
        mean: ``(d,)``.
        loadings: ``(d, r)``.
        psi: ``(d,)``, all ``>= psi_floor``.
        log_likelihood: average training log-likelihood per example (nats).
        iterations: EM iterations run.
    """

    mean: Tensor
    loadings: Tensor
    psi: Tensor
    log_likelihood: float
    iterations: int


def gaussian_log_likelihood(covariance: Tensor, loadings: Tensor, psi: Tensor) -> float:
    """Average log-likelihood of data with sample covariance ``covariance`` ``(d, d)`` (about
    their mean) under ``N(mean, W W^T + diag(psi))``, via Woodbury and the determinant lemma."""
    dim, rank = loadings.shape
    scaled = loadings / psi[:, None]                                        # D^{-1} W
    capacitance = torch.eye(rank, dtype=loadings.dtype) + loadings.T @ scaled
    log_det = psi.log().sum() + torch.linalg.slogdet(capacitance)[1]
    # tr(Sigma^{-1} S) = tr(D^{-1} S) - tr(C^{-1} (D^{-1}W)^T S (D^{-1}W)).
    trace = (covariance.diagonal() / psi).sum() \
        - torch.trace(torch.linalg.solve(capacitance, scaled.T @ covariance @ scaled))
    return float(-0.5 * (dim * math.log(2.0 * math.pi) + log_det + trace))


def fit_factor_analyser(x: Tensor, rank: int, psi_floor: float = DEFAULT_PSI_FLOOR,
                        max_iterations: int = 500, tolerance: float = 1e-8) -> FactorAnalyser:
    """Maximum-likelihood factor analysis of ``x`` ``(N, d)`` (float64), PPCA-initialised.

    EM in terms of the sample covariance ``S`` (every step is ``O(d^2 r)``):
    ``beta = W^T Sigma^{-1}``, ``E = I - beta W + beta S beta^T``, ``W' = S beta^T E^{-1}``,
    ``psi' = max(diag(S - W' beta S), psi_floor)``. Stops when the average log-likelihood gains
    less than ``tolerance`` (nats per example) or after ``max_iterations``.
    """
    x = x.to(torch.float64)
    mean = x.mean(0)
    centred = x - mean
    covariance = centred.T @ centred / x.shape[0]                           # ML estimate S
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)               # ascending
    top_values, top_vectors = eigenvalues.flip(0)[:rank], eigenvectors.flip(1)[:, :rank]
    noise = max(float(eigenvalues.flip(0)[rank:].clamp_min(0).mean()), psi_floor)
    # PPCA's ML solution (Tipping & Bishop 1999, eq. 7) with rotation R = I.
    loadings = top_vectors * (top_values - noise).clamp_min(0).sqrt()
    psi = torch.full_like(mean, noise)
    identity = torch.eye(rank, dtype=torch.float64)
    previous = gaussian_log_likelihood(covariance, loadings, psi)
    iterations = 0
    for iteration in range(1, max_iterations + 1):
        iterations = iteration
        scaled = loadings / psi[:, None]
        capacitance = identity + loadings.T @ scaled
        beta = torch.linalg.solve(capacitance, scaled.T)                    # W^T Sigma^{-1}
        s_beta = covariance @ beta.T                                         # S beta^T (d, r)
        second_moment = identity - beta @ loadings + beta @ s_beta          # E[z z^T] average
        loadings = torch.linalg.solve(second_moment, s_beta.T).T            # S beta^T E^{-1}
        psi = (covariance.diagonal() - (loadings * s_beta).sum(1)).clamp_min(psi_floor)
        current = gaussian_log_likelihood(covariance, loadings, psi)
        if current - previous < tolerance:
            previous = current
            break
        previous = current
    return FactorAnalyser(mean, loadings, psi, previous, iterations)


def fit_class_mfa(images: Tensor, labels: Tensor, rank: int,
                  psi_floor: float = DEFAULT_PSI_FLOOR, **options) -> dict[str, Tensor | list]:
    """One factor analyser per class of ``images`` ``(N, C, H, W)`` with ``labels`` ``(N,)``.

    Returns:
        float64 ``means (K, d)``, ``loadings (K, d, r)``, ``psi (K, d)``, ``weights (K,)``
        (class frequencies), int64 ``component_classes (K,)``, and per-class ``iterations`` and
        ``log_likelihood`` lists.
    """
    flat = images.reshape(len(images), -1).to(torch.float64)
    classes = torch.unique(labels).tolist()
    fits = [fit_factor_analyser(flat[labels == c], rank, psi_floor, **options) for c in classes]
    counts = torch.tensor([int((labels == c).sum()) for c in classes], dtype=torch.float64)
    return {
        "means": torch.stack([fit.mean for fit in fits]),
        "loadings": torch.stack([fit.loadings for fit in fits]),
        "psi": torch.stack([fit.psi for fit in fits]),
        "weights": counts / counts.sum(),
        "component_classes": torch.tensor(classes, dtype=torch.long),
        "iterations": [fit.iterations for fit in fits],
        "log_likelihood": [fit.log_likelihood for fit in fits],
    }


def average_log_prob(target, images: Tensor, chunk: int = 1000) -> float:
    """Mean exact ``log q`` of flattened ``images`` under an MFA target (nats per image)."""
    flat = images.reshape(len(images), -1).to(dtype=target.dtype)
    total = sum(float(target.log_prob(part).sum()) for part in flat.split(chunk))
    return total / len(flat)


def main(argv: list[str] | None = None) -> int:
    """Command line: fit, report train/test log-likelihoods, save float32 parameters."""
    parser = argparse.ArgumentParser(prog="python -m targets.mfa.fit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="dataset registry name, e.g. digits")
    parser.add_argument("--rank", type=int, required=True, help="factors per class (r)")
    parser.add_argument("--psi-floor", type=float, default=DEFAULT_PSI_FLOOR)
    parser.add_argument("--max-iterations", type=int, default=500)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from targets.datasets import load_dataset
    from targets.mfa import MFATarget

    start = time.perf_counter()
    data = load_dataset(args.dataset)
    fitted = fit_class_mfa(data.x_train, data.y_train, args.rank, args.psi_floor,
                           max_iterations=args.max_iterations)
    stored = {key: value.to(torch.float32) if value.is_floating_point() else value
              for key, value in fitted.items() if isinstance(value, Tensor)}
    # Evaluate the float32 parameters that ship, as the target will use them.
    target = MFATarget(stored["means"], stored["loadings"], stored["psi"], stored["weights"],
                       dtype=torch.float64)
    train_ll = average_log_prob(target, data.x_train)
    test_ll = average_log_prob(target, data.x_test)
    stored.update({
        "format": "mfa-v1",
        "dataset": args.dataset,
        "image_shape": [int(v) for v in data.shape],
        "num_classes": int(data.num_classes),
        "rank": args.rank,
        "psi_floor": args.psi_floor,
        "em_iterations": fitted["iterations"],
        "train_log_prob": train_ll,
        "test_log_prob": test_ll,
        "command": "python -m targets.mfa.fit " + " ".join(sys.argv[1:] if argv is None
                                                           else argv),
        "torch_version": str(torch.__version__),
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(stored, args.out)
    from targets.datasets import sha256_of

    print(f"{args.dataset}: K={len(stored['weights'])} d={target.dim} r={args.rank} "
          f"EM iterations {fitted['iterations']}; mean log q: train {train_ll:.2f}, "
          f"test {test_ll:.2f} nats/image; min psi {float(stored['psi'].min()):.3g}; "
          f"{time.perf_counter() - start:.1f} s")
    print(f"{args.out}: {args.out.stat().st_size} bytes, sha256 {sha256_of(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
