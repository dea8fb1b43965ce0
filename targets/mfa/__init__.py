"""Mixtures of factor analysers (MFA) on images: image targets with exact ground truth.

``q(x) = sum_k pi_k N(x; mu_k, W_k W_k^T + diag(psi_k))`` on flattened images ``x`` of dimension
``d = C*H*W``, with loadings ``W_k`` of shape ``(d, r)`` (small ``r``) and per-pixel noise
variances ``psi_k`` floored at a minimum (constant border pixels would otherwise make
``Sigma_k`` singular). One factor analyser per class, fitted by :mod:`targets.mfa.fit` to the
class's training images, ``pi_k`` the class frequency. Unlike the image EBMs, everything is
exact: the normalised log-density, its score, i.i.d. samples and the class weights.

Cost per call is ``O(n K d r)``: ``Sigma_k^{-1}`` and ``log det Sigma_k`` come from the Woodbury
identity and the matrix determinant lemma,

* ``Sigma^{-1} = D^{-1} - D^{-1} W C^{-1} W^T D^{-1}`` with ``C = I_r + W^T D^{-1} W`` and
  ``D = diag(psi)``;
* ``log det Sigma = sum_j log psi_j + log det C``,

so with ``B = D^{-1} W L^{-T}`` (``L L^T = C``, precomputed in float64 once),
``v^T Sigma^{-1} v = sum_j v_j^2 / psi_j - |B^T v|^2`` and
``Sigma^{-1} v = v / psi - B (B^T v)``: no ``d x d`` matrix is ever formed.

The fitted parameters ship as float32 ``.pt`` files in ``targets/mfa/params/`` (SHA-256 checked
on load; how each was made: ``targets/mfa/README.md``).

References:
    Ghahramani & Hinton (1996), "The EM algorithm for mixtures of factor analyzers", Technical
    Report CRG-TR-96-1, University of Toronto.
    Tipping & Bishop (1999), "Probabilistic principal component analysis", JRSS B 61(3).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from targets.base import AnalyticScoreTarget, LabelledModes
from targets.datasets import DatasetUnavailable, load_dataset, sha256_of

#: Where the shipped parameter files live (package data).
PARAMS_DIR = Path(__file__).resolve().parent / "params"

#: SHA-256 of each shipped parameter file (recorded in ``targets/mfa/README.md`` too).
PARAMS_SHA256: dict[str, str] = {
    "digits.pt": "3458c2462c3e240d8cf53d9e68277283998df0b3a15cb67eb4658d26c440a593",
    "mnist5k.pt": "9f6a9ef7938ae12429602000380835d0c99a73fa8dfe6042b0c47485059bc602",
    "fashion_mnist.pt": "6067a264487e8afb68dde74f9d366dfb0d1b724ff099d2efd53cc73d7d1ce9d7",
}


class ParamsChecksumError(ValueError):
    """A parameter file's SHA-256 differs from the recorded one (corrupt or replaced file)."""


class MFATarget(AnalyticScoreTarget):
    """A mixture of factor analysers with exact, normalised log-density, score and sampler.

    Args:
        means: ``(K, d)`` component means ``mu_k``.
        loadings: ``(K, d, r)`` factor loadings ``W_k``.
        psi: ``(K, d)`` positive per-coordinate noise variances ``psi_k``.
        weights: ``(K,)`` positive mixing weights (normalised here).
        device: where every tensor of this target lives.
        dtype: floating-point type of inputs and constants; the precomputation is done in float64
            and then cast, so a float32 target loses nothing to the inversion.
    """

    name = "mfa"
    pretty_name = "MFA"
    description = "Mixture of factor analysers with exact density, score and samples."

    def __init__(self, means: Tensor, loadings: Tensor, psi: Tensor, weights: Tensor,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        means64 = torch.as_tensor(means, dtype=torch.float64).cpu()
        loadings64 = torch.as_tensor(loadings, dtype=torch.float64).cpu()
        psi64 = torch.as_tensor(psi, dtype=torch.float64).cpu()
        weights64 = torch.as_tensor(weights, dtype=torch.float64).cpu()
        num_components, dim = means64.shape
        if loadings64.shape[:2] != (num_components, dim) or psi64.shape != (num_components, dim) \
                or weights64.shape != (num_components,):
            raise ValueError(f"inconsistent MFA shapes: means {tuple(means64.shape)}, loadings "
                             f"{tuple(loadings64.shape)}, psi {tuple(psi64.shape)}, weights "
                             f"{tuple(weights64.shape)}")
        if not bool((psi64 > 0).all()) or not bool((weights64 > 0).all()):
            raise ValueError("MFA noise variances psi and weights must be positive")
        super().__init__(dim, device, dtype)
        weights64 = weights64 / weights64.sum()
        rank = loadings64.shape[2]

        # Woodbury / determinant-lemma precomputation, in float64 (see the module docstring).
        scaled = loadings64 / psi64[:, :, None]                               # D^{-1} W  (K, d, r)
        capacitance = torch.eye(rank, dtype=torch.float64) \
            + loadings64.transpose(1, 2) @ scaled                             # C         (K, r, r)
        cholesky = torch.linalg.cholesky(capacitance)                         # L L^T = C
        # B = D^{-1} W L^{-T}: solve L B^T = (D^{-1} W)^T.
        whitened = torch.linalg.solve_triangular(cholesky, scaled.transpose(1, 2),
                                                 upper=False).transpose(1, 2)  # B  (K, d, r)
        log_det = psi64.log().sum(1) + 2.0 * cholesky.diagonal(dim1=1, dim2=2).log().sum(1)
        # log pi_k - d/2 log 2 pi - 1/2 log det Sigma_k: everything but the quadratic form.
        log_norm = weights64.log() - 0.5 * (dim * math.log(2.0 * math.pi) + log_det)

        self.rank = rank
        self.num_components = num_components
        self.means = self.tensor(means64)
        self.loadings = self.tensor(loadings64)
        self.psi = self.tensor(psi64)
        self.weights = self.tensor(weights64)
        self._inv_psi = self.tensor(1.0 / psi64)
        self._sqrt_psi = self.tensor(psi64.sqrt())
        self._whitened = self.tensor(whitened)
        self._log_norm = self.tensor(log_norm)

    # -- the density --------------------------------------------------------------------------
    def _component_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Component log-densities ``(n, K)`` (weights included) and ``B_k^T (x - mu_k)``
        ``(n, K, r)``.

        Loops over the K components: ``x - mu_k`` is formed one component at a time, so memory
        stays ``O(n d)`` (not ``O(n K d)``) and the quadratic form is computed from the
        difference directly rather than by expanding ``|x|^2 - 2 x.mu + |mu|^2``, which
        cancels badly in float32 when ``1/psi`` is ~1e3.
        """
        log_probs, projections = [], []
        for k in range(self.num_components):
            v = x - self.means[k]                                           # (n, d)
            projection = v @ self._whitened[k]                              # (n, r)
            quadratic = (v.square() * self._inv_psi[k]).sum(-1) - projection.square().sum(-1)
            log_probs.append(self._log_norm[k] - 0.5 * quadratic)
            projections.append(projection)
        return torch.stack(log_probs, dim=-1), torch.stack(projections, dim=1)

    def component_log_probs(self, x: Tensor) -> Tensor:
        """``log pi_k + log N(x; mu_k, Sigma_k)``, ``(n, d) -> (n, K)``."""
        return self._component_terms(x)[0]

    def log_prob(self, x: Tensor) -> Tensor:
        """The exact, normalised ``log q(x)``. ``(n, d) -> (n,)``."""
        return torch.logsumexp(self.component_log_probs(x), dim=-1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities ``p(k | x)``, ``(n, d) -> (n, K)``."""
        return torch.softmax(self.component_log_probs(x), dim=-1)

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        components, projections = self._component_terms(x)
        log_prob = torch.logsumexp(components, dim=-1)
        responsibilities = torch.exp(components - log_prob[:, None])      # (n, K)
        # score = -sum_k r_k Sigma_k^{-1} (x - mu_k), Sigma_k^{-1} v = v / psi_k - B_k (B_k^T v).
        score = torch.zeros_like(x)
        for k in range(self.num_components):
            precision_v = (x - self.means[k]) * self._inv_psi[k] \
                - projections[:, k] @ self._whitened[k].T
            score = score - responsibilities[:, k, None] * precision_v
        return log_prob, score

    # -- exact sampling -----------------------------------------------------------------------
    def sample_with_components(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` exact samples ``(n, d)`` and their components ``(n,)`` (int64).

        Ancestral sampling: ``k ~ pi``, then ``mu_k + W_k z + sqrt(psi_k) * eps`` with
        ``z ~ N(0, I_r)``, ``eps ~ N(0, I_d)``. All randomness is drawn up front, so the result
        depends only on the generator's state.
        """
        components = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        latent = self.randn(n, self.rank, generator=generator)
        noise = self.randn(n, self.dim, generator=generator)
        samples = torch.empty(n, self.dim, device=self.device, dtype=self.dtype)
        for k in range(self.num_components):
            # Per component: gathering W[components] would be (n, d, r) in memory.
            rows = (components == k).nonzero(as_tuple=True)[0]
            samples[rows] = self.means[k] + latent[rows] @ self.loadings[k].T \
                + self._sqrt_psi[k] * noise[rows]
        return samples, components

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` exact samples ``(n, d)`` (see :meth:`sample_with_components`)."""
        return self.sample_with_components(n, generator)[0]

    def modes(self) -> LabelledModes:
        """The components: means, weights, and the exact label rule ``argmax_k p(k | x)``.

        Mode metrics label each sample with its most probable component under the target
        itself rather than with the nearest mean: in pixel space an image of one class is often
        nearer another class's mean image, while the exact posterior classifies exact samples
        almost perfectly (``tests/fast/test_mfa.py``), so mode shares, recall and EMC measure
        coverage of the components at their exact weights.
        """
        return LabelledModes(locations=self.means, weights=self.weights,
                             label=self.most_probable_component)

    def most_probable_component(self, x: Tensor) -> Tensor:
        """``argmax_k p(k | x)``, ``(n, d) -> (n,)`` int64."""
        return self.component_log_probs(x).argmax(dim=-1)

    def component_covariance_diagonal(self) -> Tensor:
        """``diag(W_k W_k^T + diag(psi_k))`` per component, ``(K, d)``."""
        return self.loadings.square().sum(-1) + self.psi


# -- parameter files ---------------------------------------------------------------------------
def load_params(path: Path | str, sha256: str | None) -> dict:
    """Load a parameter file written by :mod:`targets.mfa.fit`, checking its SHA-256 first.

    Args:
        path: the ``.pt`` file.
        sha256: expected hex SHA-256 of the file; ``None`` skips the check (own fits).

    Raises:
        FileNotFoundError: no such file (the message gives the fitting command).
        ParamsChecksumError: the checksum differs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MFA parameter file '{path}' is missing; fit it with the "
                                f"command in {PARAMS_DIR.parent / 'README.md'}")
    if sha256 is not None and (actual := sha256_of(path)) != sha256:
        raise ParamsChecksumError(f"MFA parameter file '{path}' has SHA-256 {actual}, expected "
                                  f"{sha256}: the file is corrupt or was replaced; restore it "
                                  f"or refit it with the command in "
                                  f"{PARAMS_DIR.parent / 'README.md'}")
    return torch.load(path, map_location="cpu", weights_only=True)


class ImageMFATarget(MFATarget):
    """An MFA fitted to an image dataset: exact image target on ``R^{C*H*W}``.

    Args:
        params: parameter file (default: the class's shipped one).
        sha256: its expected SHA-256; default: the recorded one for the shipped file, no check
            for a caller's own file.
        device: where every tensor lives.
        dtype: the target's dtype.

    Attributes:
        dataset: registry name of the dataset fitted (its test split is the data side of FID and
            class coverage; its classifier in ``benchmark/fid/checkpoints`` gives the classes).
        image_shape: ``(C, H, W)``; samples are flattened images of this shape.
        class_weights: ``(num_classes,)`` exact class probabilities, ``pi`` summed per class.
        component_classes: ``(K,)`` int64 class label of each component.
        denoise_sigma: ``sqrt(min psi)`` (see the comment in ``__init__``).
        info: the file's provenance (everything but the parameter tensors).
    """

    params_name: ClassVar[str] = ""
    dataset_name: ClassVar[str] = ""

    @classmethod
    def unavailable_reason(cls, params: Path | str | None = None, **kwargs) -> str | None:
        """Why this target cannot be built here, or ``None``: its parameter file is missing
        (and, to fit it, its data set). The harness skips such a target with this reason
        instead of failing every cell."""
        if params is not None or (PARAMS_DIR / cls.params_name).is_file():
            return None  # a shipped or given file: build errors are real errors
        try:
            load_dataset(cls.dataset_name)
        except DatasetUnavailable as error:
            return str(error)
        return (f"no parameter file {cls.params_name} in {PARAMS_DIR}; fit it with the command "
                f"in targets/mfa/README.md")

    def __init__(self, params: Path | str | None = None, sha256: str | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if params is None:
            path = PARAMS_DIR / self.params_name
            if not path.is_file():
                # No parameter file: say how to get the data first, if that is missing.
                load_dataset(self.dataset_name)
            sha256 = sha256 if sha256 is not None else PARAMS_SHA256.get(self.params_name) or None
        else:
            path = Path(params)
        stored = load_params(path, sha256)
        super().__init__(stored["means"], stored["loadings"], stored["psi"], stored["weights"],
                         device, dtype)
        self.dataset: str = str(stored["dataset"])
        self.image_shape: tuple[int, int, int] = tuple(int(v) for v in stored["image_shape"])
        if math.prod(self.image_shape) != self.dim:
            raise ValueError(f"image_shape {self.image_shape} does not match d = {self.dim}")
        self.component_classes: Tensor = stored["component_classes"].to(self.device, torch.long)
        self.num_classes = int(stored["num_classes"])
        self.class_weights: Tensor = torch.zeros(
            self.num_classes, device=self.device, dtype=self.dtype).index_add_(
            0, self.component_classes, self.weights)
        # Every component covariance is (W W^T + diag(psi - s^2)) + s^2 I with s^2 = min psi and
        # the bracket positive semi-definite, so q is exactly another MFA smoothed by N(0, s^2 I):
        # Tweedie's step x + s^2 score(x) is then the exact posterior-mean denoiser (as sigma_0
        # is for the MDSM energies), and nothing in q is narrower than s (the smallest
        # eigenvalue of every Sigma_k is at least s^2, attained where W_k has no weight).
        smallest = float(self.psi.min().sqrt())
        self.denoise_sigma: float = smallest
        self.length_scale: float = smallest
        self.info = {key: value for key, value in stored.items()
                     if not isinstance(value, Tensor)}
        self.info["path"] = str(path)

    @property
    def provides(self) -> frozenset[str]:
        """``score``, ``reference`` (exact sampler), ``modes`` and ``images`` (samples are
        flattened images of :attr:`dataset`, so FID and class coverage apply)."""
        return super().provides | {"images"}

    def sample_classes(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` exact samples ``(n, d)`` and their true class labels ``(n,)``."""
        samples, components = self.sample_with_components(n, generator)
        return samples, self.component_classes[components]

    def initial_positions(self, n: int, generator: torch.Generator) -> Tensor:
        """``0.5 + N(0, I)`` in pixel space, as for the image EBMs, shape ``(n, d)``."""
        return 0.5 + self.randn(n, self.dim, generator=generator)


class MFADigits(ImageMFATarget):
    """One rank-8 factor analyser per class of scikit-learn's 8×8 digits (d = 64)."""

    name = "mfa_digits"
    pretty_name = "MFA digits"
    description = ("Mixture of factor analysers (one per class, rank 8) on sklearn 8x8 digits, "
                   "d = 64.")
    params_name = "digits.pt"
    dataset_name = "digits"


class MFAMnist(ImageMFATarget):
    """One rank-10 factor analyser per class of MNIST-5k at 32×32 (d = 1024).

    The resolution is the zero-padded 32×32 of ``load_dataset("mnist5k")``, the input size of
    the shipped mnist5k FID classifier, so ``fid_data`` and the class metrics apply unchanged.
    """

    name = "mfa_mnist"
    pretty_name = "MFA MNIST-5k"
    description = ("Mixture of factor analysers (one per class, rank 10) on MNIST-5k 32x32, "
                   "d = 1024.")
    params_name = "mnist5k.pt"
    dataset_name = "mnist5k"


class MFAFashion(ImageMFATarget):
    """One rank-10 factor analyser per class of Fashion-MNIST at 32×32 (d = 1024).

    Its parameter file is shipped; the data (the Debian package ``dataset-fashion-mnist``) is
    needed only by what compares with test images (FID against data, the dataset panel):
    without it those raise :class:`~targets.datasets.DatasetUnavailable`.
    """

    name = "mfa_fashion"
    pretty_name = "MFA Fashion-MNIST"
    description = "Mixture of factor analysers (one per class, rank 10) on Fashion-MNIST 32x32."
    params_name = "fashion_mnist.pt"
    dataset_name = "fashion_mnist"


__all__ = ["PARAMS_DIR", "PARAMS_SHA256", "DatasetUnavailable", "ImageMFATarget", "MFADigits",
           "MFAFashion", "MFAMnist", "MFATarget", "ParamsChecksumError", "load_params"]
