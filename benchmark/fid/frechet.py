"""The Fréchet distance between Gaussian fits of two feature sets (the "F" of FID).

For ``N(mu_1, S_1)`` and ``N(mu_2, S_2)``

    d^2 = |mu_1 - mu_2|^2 + tr S_1 + tr S_2 - 2 tr (S_1^{1/2} S_2 S_1^{1/2})^{1/2},

the squared 2-Wasserstein distance between the two Gaussians (Dowson & Landau 1982). FID
(Heusel et al. 2017) is this distance between Gaussian fits of network features.

Numerics. The usual implementation takes ``scipy.linalg.sqrtm(S_1 @ S_2)``: a non-symmetric
product whose square root can come back complex, or NaN, when either covariance is singular
(fewer samples than features, duplicated or dead features). Here only symmetric
eigendecompositions are used. With ``A = S_1^{1/2}`` and ``B = S_2^{1/2}`` (symmetric roots from
``eigh``), ``A S_2 A = (B A)^T (B A)``, so ``tr (S_1^{1/2} S_2 S_1^{1/2})^{1/2}`` is the sum of the
singular values of ``B A`` (its nuclear norm) -- the same number as ``tr sqrtm(S_1 S_2)`` wherever
that is defined, and real, finite and >= 0 everywhere. Two details keep singular covariances
exact. The square root of a matrix is not Lipschitz at a zero eigenvalue: round-off of
``eps * |S|`` in a zero eigenvalue would become ``sqrt(eps * |S|) ~ 1e-8 |S|^{1/2}`` in the root,
per null direction. So eigenvalues below ``d * eps * max eigenvalue`` (the backward-error
bound of a symmetric eigensolver) are set to exactly 0 before the root. And the final step
takes singular values (absolute error ``~eps |BA|``) instead of the square roots of the
eigenvalues of ``A S_2 A`` (error ``~sqrt(eps |A S_2 A|)``). All in float64.

References:
    D. C. Dowson and B. V. Landau, "The Fréchet distance between multivariate normal
    distributions", J. Multivariate Analysis 12(3), 1982.
    M. Heusel et al., "GANs trained by a two time-scale update rule converge to a local Nash
    equilibrium", NeurIPS 2017 (FID).
"""

from __future__ import annotations

import torch
from torch import Tensor

F64 = torch.float64


def gaussian_fit(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance (``ddof = 1``, as ``numpy.cov``) of a feature set.

    Args:
        features: ``(n, d)`` with ``n >= 2``.

    Returns:
        ``(d,)`` mean and ``(d, d)`` covariance, float64 on the input's device.
    """
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must have shape (n, d) with n >= 2, got "
                         f"{tuple(features.shape)}")
    x = features.to(F64)
    mean = x.mean(dim=0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def psd_sqrt(matrix: Tensor) -> Tensor:
    """Symmetric square root of a symmetric PSD matrix.

    Eigenvalues below ``d * eps * max |eigenvalue|`` (round-off of a zero or negative
    eigenvalue, see the module docstring) are set to 0, so null spaces stay exact.

    Args:
        matrix: ``(d, d)``, symmetric up to round-off.

    Returns:
        ``(d, d)`` float64 ``R`` with ``R = R^T``, ``R @ R ~ matrix``.
    """
    symmetric = 0.5 * (matrix + matrix.T).to(F64)
    eigenvalues, eigenvectors = torch.linalg.eigh(symmetric)
    tolerance = matrix.shape[-1] * torch.finfo(F64).eps * eigenvalues.abs().max()
    roots = torch.where(eigenvalues > tolerance, eigenvalues, 0.0).sqrt()
    return (eigenvectors * roots) @ eigenvectors.T


def trace_sqrt_product(cov_1: Tensor, cov_2: Tensor) -> Tensor:
    """``tr (S_1^{1/2} S_2 S_1^{1/2})^{1/2}`` (= ``tr sqrtm(S_1 S_2)``) for PSD ``S_1``, ``S_2``.

    Computed as the nuclear norm of ``S_2^{1/2} S_1^{1/2}`` (module docstring).

    Returns:
        ``()`` float64, >= 0.
    """
    return torch.linalg.svdvals(psd_sqrt(cov_2) @ psd_sqrt(cov_1)).sum()


def frechet_distance(mean_1: Tensor, cov_1: Tensor, mean_2: Tensor, cov_2: Tensor) -> float:
    """Squared Fréchet (2-Wasserstein) distance of ``N(mean_1, cov_1)`` and ``N(mean_2, cov_2)``.

    Args:
        mean_1, mean_2: ``(d,)``.
        cov_1, cov_2: ``(d, d)`` symmetric positive semi-definite (singular is fine).

    Returns:
        The distance ``d^2`` (>= 0; round-off below 0 is clipped to 0).
    """
    d = mean_1.shape[-1]
    shapes = (tuple(mean_1.shape), tuple(mean_2.shape), tuple(cov_1.shape), tuple(cov_2.shape))
    if shapes != ((d,), (d,), (d, d), (d, d)):
        raise ValueError(f"expected means (d,) and covariances (d, d) with one d, got shapes "
                         f"{shapes}")
    difference = (mean_1.to(F64) - mean_2.to(F64)).square().sum()
    traces = torch.trace(cov_1.to(F64)) + torch.trace(cov_2.to(F64))
    value = difference + traces - 2.0 * trace_sqrt_product(cov_1, cov_2)
    return max(float(value), 0.0)


def frechet_distance_of_features(features_1: Tensor, features_2: Tensor) -> float:
    """FID between two feature sets ``(n_1, d)`` and ``(n_2, d)`` (Gaussian fits of each)."""
    if features_1.ndim != 2 or features_2.ndim != 2 or features_1.shape[1] != features_2.shape[1]:
        raise ValueError(f"feature sets must be (n, d) with the same d, got "
                         f"{tuple(features_1.shape)} and {tuple(features_2.shape)}")
    return frechet_distance(*gaussian_fit(features_1), *gaussian_fit(features_2))
