"""Bayesian logistic regression (the paper's Table 2 / Figure 4 family;
docs/targets.md#bayesian-logistic-regression).

Model of Gershman, Hoffman & Blei (2012) as used in the SVGD paper: ``p(y = 1 | x, w) =
sigma(w^T x)`` with the ones column already appended to ``x`` (``d`` counts it),
``w | alpha ~ N(0, alpha^{-1} I_d)``, ``alpha ~ Gamma(shape 1, rate 0.01)``. The sampled vector
is ``theta = (w, log alpha)`` of dimension ``d + 1``; with ``y in {-1, +1}`` and the log-Jacobian
``log alpha`` of ``alpha = exp(log alpha)``,

    log p(theta | D) = sum_t log sigma(y_t w^T x_t) + (d/2) log alpha - (alpha/2) ||w||^2
                       - 0.01 alpha + log alpha + const

(the Gamma shape is 1, so its ``(a0 - 1) log alpha`` term vanishes). Scores are analytic:

    d/dw       = sum_t y_t sigma(-y_t w^T x_t) x_t - alpha w
    d/dlog a   = d/2 - (alpha/2) ||w||^2 - 0.01 alpha + 1.

Minibatch scores replace the likelihood sum over the ``N`` training rows by ``N/m`` times the
sum over ``m`` rows (unbiased). Evaluation averages the predictive over posterior samples first
(docs/targets.md#predictive-evaluation): ``p_t = mean_m sigma(y_t w_m^T x_t)``, accuracy
``mean 1[p_t > 0.5]``, test log-likelihood ``mean log p_t``.

Reference posterior: a long seeded MALA run per dataset (``benchmark.tools.blr_reference``)
stored as ``targets/blr_references/<reference_key>.npz``, package data (summary moments,
thinned draws, diagnostics and the command); the target offers its draws as reference samples
when the file exists.

References:
    S. Gershman, M. Hoffman, D. Blei, "Nonparametric variational inference", ICML 2012.
    Q. Liu, D. Wang, "Stein Variational Gradient Descent", NeurIPS 2016 (sec. 5.2).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from targets.base import AnalyticScoreTarget
from targets.datasets import Dataset, DatasetUnavailable, load_dataset

#: Gamma(shape 1, rate 0.01) hyper-prior on the weight precision alpha (SVGD paper).
PRIOR_RATE = 0.01
#: Stored reference posteriors (one ``.npz`` per dataset configuration).
#: Reference posteriors ship inside the package (package data), so an installed copy has them.
REFERENCE_DIR = Path(__file__).resolve().parent / "blr_references"
# Rows x particles per chunk of the likelihood pass: bounds memory at O(n * chunk) instead of
# O(n * N) (N = 465k training rows and 512 particles would be ~1 GB in one piece).
_CHUNK_ELEMENTS = 1 << 22


@functools.lru_cache(maxsize=4)
def _cached_dataset(name: str, options: tuple[tuple[str, Any], ...]) -> Dataset:
    # Targets are rebuilt for every cell; the data (up to 581k rows) is loaded once per process.
    return load_dataset(name, **dict(options))


def predictive_probability(weights: Tensor, x: Tensor, y: Tensor,
                           chunk: int = _CHUNK_ELEMENTS) -> Tensor:
    """Posterior-averaged probability of the observed labels.

    Args:
        weights: ``(M, d)`` posterior draws of ``w``.
        x: ``(T, d)`` design (ones column included).
        y: ``(T,)`` labels in ``{-1, +1}``.
        chunk: rows per pass are ``chunk // M``.

    Returns:
        ``(T,)`` ``p_t = mean_m sigma(y_t w_m^T x_t)``.
    """
    rows = max(1, chunk // max(1, weights.shape[0]))
    parts = []
    for start in range(0, x.shape[0], rows):
        margins = (weights @ x[start:start + rows].T) * y[start:start + rows]
        parts.append(torch.sigmoid(margins).mean(dim=0))
    return torch.cat(parts)


def predictive_accuracy(weights: Tensor, x: Tensor, y: Tensor) -> float:
    """``mean_t 1[p_t > 0.5]`` for ``p_t`` of :func:`predictive_probability`."""
    return float((predictive_probability(weights, x, y) > 0.5).double().mean())


def predictive_log_likelihood(weights: Tensor, x: Tensor, y: Tensor,
                              chunk: int = _CHUNK_ELEMENTS) -> float:
    """``mean_t log p_t``, computed as ``logsumexp_m log sigma(y_t w_m^T x_t) - log M``.

    The log-sum-exp form stays finite when every draw is confidently wrong (``p_t`` below the
    float range), where ``log(mean(sigmoid))`` would give ``-inf``.
    """
    rows = max(1, chunk // max(1, weights.shape[0]))
    total = 0.0
    for start in range(0, x.shape[0], rows):
        margins = (weights @ x[start:start + rows].T) * y[start:start + rows]
        total += float(torch.logsumexp(F.logsigmoid(margins), dim=0).double().sum())
    return total / x.shape[0] - math.log(weights.shape[0])


class BayesianLogisticRegression(AnalyticScoreTarget):
    """Posterior of Bayesian logistic regression over ``theta = (w, log alpha)``.

    Args:
        dataset: a tabular dataset of :data:`targets.datasets.DATASETS` (``breast_cancer``,
            ``covertype``, ``synthetic``).
        num_data: ``synthetic`` only: rows before the 80/20 split.
        num_features: ``synthetic`` only: raw features (``d = num_features + 1``).
        data_seed: ``synthetic`` only: the data seed.
        split_seed: seed of the 80/20 split.
        data_home: ``covertype`` only: scikit-learn's data directory.
        path: ``covertype`` only: a local data file (see
            :func:`targets.datasets.tabular.covertype`).
        device: where the data and every tensor live.
        dtype: floating-point type of the data and of ``theta``.

    Attributes:
        x_train, x_test: ``(N, d)`` and ``(T, d)`` standardised designs with the ones column.
        y_train, y_test: ``(N,)`` and ``(T,)`` labels in ``{-1, +1}``.
        num_data: ``N``; num_features: ``d``; ``dim = d + 1``.
        length_scale: the smallest posterior s.d. over the coordinates of ``theta``, from the
            stored reference run (breast_cancer 0.694, synthetic N = 20,000 0.0190), so the
            neural samplers set ``sigma`` by the same rule as on every other family; ``None``
            for a configuration without a reference run (a matrix then sets ``sigma``).
    """

    name: ClassVar[str] = "blr"
    pretty_name: ClassVar[str] = "Bayesian logistic regression"
    description: ClassVar[str] = ("Bayesian logistic regression over (w, log alpha), Gamma(1, "
                                  "0.01) hyper-prior (SVGD paper); dataset= breast_cancer, "
                                  "synthetic, covertype")

    def __init__(self, dataset: str = "breast_cancer", num_data: int | None = None,
                 num_features: int | None = None, data_seed: int | None = None,
                 split_seed: int = 0, data_home: str | None = None, path: str | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        options = {"num_data": num_data, "num_features": num_features, "seed": data_seed,
                   "data_home": data_home, "path": path}
        options = {key: value for key, value in options.items() if value is not None}
        options["split_seed"] = int(split_seed)
        try:
            data = _cached_dataset(dataset, tuple(sorted(options.items())))
        except TypeError as error:  # an option the loader does not take
            raise ValueError(f"dataset '{dataset}' does not accept these options "
                             f"({', '.join(sorted(options))}): {error}") from None
        if len(data.shape) != 1 or data.num_classes > 2:
            raise ValueError(f"dataset '{dataset}' is not a binary tabular dataset")
        super().__init__(dim=data.shape[0] + 1, device=device, dtype=dtype)
        self.dataset = dataset
        self.dataset_info = data.info
        self.options = options
        self.x_train = data.x_train.to(device=self.device, dtype=dtype)
        self.y_train = (2 * data.y_train - 1).to(device=self.device, dtype=dtype)
        self.x_test = data.x_test.to(device=self.device, dtype=dtype)
        self.y_test = (2 * data.y_test - 1).to(device=self.device, dtype=dtype)
        self.num_data, self.num_features = self.x_train.shape
        self._reference: dict[str, np.ndarray] | None = None
        reference = self.reference()
        self.length_scale = None if reference is None else float(np.min(reference["std"]))

    @classmethod
    def unavailable_reason(cls, dataset: str = "breast_cancer", **params: Any) -> str | None:
        """Why this configuration cannot be built here (its data is missing), else ``None``.

        The harness skips such targets with this reason instead of failing every cell
        (Covertype cannot be downloaded on offline machines).
        """
        try:
            cls(dataset, **params)
        except DatasetUnavailable as error:
            return str(error)
        return None

    # -- the density ----------------------------------------------------------------------
    def _likelihood(self, w: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``sum_t log sigma(y_t w^T x_t)`` ``(n,)`` and its gradient in ``w`` ``(n, d)``.

        Over all training rows, or over ``rows`` ``(m,)`` (indices, repeats allowed).
        """
        x, y = self.x_train, self.y_train
        if rows is not None:
            x, y = x[rows], y[rows]
        size = max(1, _CHUNK_ELEMENTS // max(1, w.shape[0]))
        log_likelihood = w.new_zeros(w.shape[0])
        gradient = torch.zeros_like(w)
        for start in range(0, x.shape[0], size):
            x_chunk, y_chunk = x[start:start + size], y[start:start + size]
            margins = (w @ x_chunk.T) * y_chunk  # (n, chunk): y_t w^T x_t
            log_likelihood = log_likelihood + F.logsigmoid(margins).sum(dim=1)
            # d/dw log sigma(y w^T x) = y sigma(-y w^T x) x
            gradient = gradient + (torch.sigmoid(-margins) * y_chunk) @ x_chunk
        return log_likelihood, gradient

    def _prior(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Log hyper-prior, prior and Jacobian ``(n,)`` and their score ``(n, d + 1)``."""
        d = self.num_features
        w, log_alpha = theta[:, :d], theta[:, d]
        alpha = log_alpha.exp()
        half_norm = 0.5 * w.square().sum(dim=1)
        log_prior = ((0.5 * d + 1.0) * log_alpha - alpha * half_norm - PRIOR_RATE * alpha)
        score = torch.cat([-alpha.unsqueeze(1) * w,
                           (0.5 * d + 1.0 - alpha * half_norm - PRIOR_RATE * alpha)
                           .unsqueeze(1)], dim=1)
        return log_prior, score

    def _with_likelihood(self, theta: Tensor, rows: Tensor | None,
                         scale: float) -> tuple[Tensor, Tensor]:
        log_prior, score = self._prior(theta)
        log_likelihood, gradient = self._likelihood(theta[:, :self.num_features], rows)
        gradient = torch.cat([gradient, gradient.new_zeros(gradient.shape[0], 1)], dim=1)
        return log_prior + scale * log_likelihood, score + scale * gradient

    def _log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._with_likelihood(x, None, 1.0)

    def log_prob(self, x: Tensor) -> Tensor:
        """Unnormalised log posterior ``(n,)`` of ``theta`` ``(n, d + 1)``."""
        return self.log_prob_and_score(x, create_graph=x.requires_grad)[0]

    def batch_score(self, x: Tensor, rows: Tensor, create_graph: bool = False) -> Tensor:
        """Score with the likelihood over ``rows`` ``(m,)`` scaled by ``N/m``. ``(n, d + 1)``.

        Averaged over the batches of any partition of the training rows into equal parts, it
        equals :meth:`score` exactly (the prior part is always exact).
        """
        scale = self.num_data / int(rows.shape[0])
        if create_graph:
            return self._with_likelihood(x, rows, scale)[1]
        with torch.no_grad():
            return self._with_likelihood(x, rows, scale)[1]

    def minibatch_score(self, x: Tensor, batch_size: int, generator: torch.Generator,
                        create_graph: bool = False) -> Tensor:
        """Unbiased score estimate from ``batch_size`` rows drawn uniformly with replacement.

        Args:
            x: ``(n, d + 1)`` points.
            batch_size: ``m``; ``m >= N`` gives the exact full-batch score.
            generator: draws the rows (on this target's device).
            create_graph: keep the graph for Hessian-vector products.

        Returns:
            ``(n, d + 1)``.
        """
        if int(batch_size) >= self.num_data:
            return self.score(x, create_graph=create_graph)
        rows = torch.randint(0, self.num_data, (int(batch_size),), generator=generator,
                             device=self.device)
        return self.batch_score(x, rows, create_graph=create_graph)

    # -- evaluation -----------------------------------------------------------------------
    def test_accuracy(self, theta: Tensor) -> float:
        """Accuracy of the posterior-averaged predictive on the test split."""
        return predictive_accuracy(theta[:, :self.num_features].to(self.dtype), self.x_test,
                                   self.y_test)

    def test_log_likelihood(self, theta: Tensor) -> float:
        """Mean log posterior-averaged predictive probability of the test labels."""
        return predictive_log_likelihood(theta[:, :self.num_features].to(self.dtype),
                                         self.x_test, self.y_test)

    # -- initialisation and reference -----------------------------------------------------
    def initial_positions(self, n: int, generator: torch.Generator) -> Tensor:
        """Prior draws: BLR chains start from the prior
        (docs/methods.md#budgets-and-initial-positions).

        ``alpha ~ Exponential(rate 0.01)`` (Gamma with shape 1) by inversion, ``w ~ N(0, I /
        alpha)``; returns ``(n, d + 1)`` rows ``(w, log alpha)``.
        """
        uniform = self.rand(n, generator=generator).clamp_min(torch.finfo(self.dtype).tiny)
        log_alpha = torch.log(-torch.log(uniform) / PRIOR_RATE)
        scale = (-0.5 * log_alpha).exp()[:, None]  # prior s.d. of w given alpha
        w = self.randn(n, self.num_features, generator=generator) * scale
        return torch.cat([w, log_alpha[:, None]], dim=1)

    @property
    def reference_key(self) -> str:
        """File stem of this configuration's reference posterior."""
        parts = [self.dataset]
        for key in ("num_data", "num_features", "seed", "split_seed"):
            value = self.options.get(key)
            if value is not None and not (key == "split_seed" and value == 0):
                parts.append(f"{key}{value}")
        return "_".join(parts)

    @property
    def reference_path(self) -> Path:
        return REFERENCE_DIR / f"{self.reference_key}.npz"

    def reference(self) -> dict[str, np.ndarray] | None:
        """The stored reference posterior (``mean``, ``std``, ``draws`` ...) or ``None``."""
        if self._reference is None and self.reference_path.exists():
            with np.load(self.reference_path) as stored:
                self._reference = {key: stored[key] for key in stored.files}
        return self._reference

    def reference_metadata(self) -> dict[str, Any]:
        """The command, length, step size, acceptance and diagnostics of the reference run."""
        reference = self.reference()
        return {} if reference is None else json.loads(str(reference["metadata"]))

    @property
    def provides(self) -> frozenset[str]:
        """``score`` and ``predictive`` (test-set evaluation) always; ``reference`` and
        ``posterior_moments`` when a reference run is stored for this configuration."""
        capabilities = {"score", "predictive"}
        if self.reference_path.exists():
            capabilities |= {"reference", "posterior_moments"}
        return frozenset(capabilities)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` draws of the stored reference run (without replacement while they last).

        Raises:
            NotImplementedError: no reference run is stored for this configuration.
        """
        reference = self.reference()
        if reference is None:
            raise NotImplementedError(f"no reference posterior for '{self.reference_key}' "
                                      f"(expected {self.reference_path}; make it with "
                                      f"python -m benchmark.tools.blr_reference)")
        draws = torch.as_tensor(reference["draws"], device=self.device, dtype=self.dtype)
        if n <= draws.shape[0]:
            rows = torch.randperm(draws.shape[0], generator=generator, device=self.device)[:n]
        else:
            rows = torch.randint(0, draws.shape[0], (n,), generator=generator,
                                 device=self.device)
        return draws[rows]

    def posterior_moments(self) -> tuple[Tensor, Tensor]:
        """Reference posterior mean and standard deviation, each ``(d + 1,)``."""
        reference = self.reference()
        if reference is None:
            raise NotImplementedError(f"no reference posterior for '{self.reference_key}'")
        return (torch.as_tensor(reference["mean"], device=self.device, dtype=self.dtype),
                torch.as_tensor(reference["std"], device=self.device, dtype=self.dtype))
