"""Tabular datasets for Bayesian logistic regression (docs/targets.md#blr-datasets).

Every loader returns a :class:`~targets.datasets.base.Dataset` prepared the same way:

1. a fixed, seeded 80/20 split (:func:`~targets.datasets.base.seeded_split`, ``split_seed``);
2. features standardised with the *training* split's mean and standard deviation (a constant
   column keeps scale 1), so no test statistic leaks into the model;
3. a ones column appended last, so ``x.shape[1] = d`` counts the intercept (Covertype:
   54 features, ``d = 55``);
4. labels in ``{0, 1}`` (long); the BLR target maps them to ``{-1, +1}``.

Features are stored as float32 (Covertype-sized data is 581,012 x 55) and standardised in
float64 first. Loaders:

* ``breast_cancer``: scikit-learn's bundled Wisconsin breast-cancer data (569 x 30), offline.
* ``covertype``: UCI Covertype (581,012 x 54), label "class 2 vs rest" as LIBSVM's
  ``covtype.binary``; through scikit-learn's ``fetch_covtype`` cache, or a local file.
* ``synthetic``: Gaussian features and logistic labels with Bayes accuracy ~0.75 (any N, d).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from targets.datasets.base import Dataset, DatasetUnavailable, seeded_split

#: Fraction of the data held out for testing (an 80/20 split; docs/targets.md#blr-datasets).
TEST_FRACTION = 0.2
COVERTYPE_SHAPE = (581_012, 54)
COVERTYPE_HOWTO = (
    "covertype is not available offline: run once on a machine with internet access "
    "`python -c \"from sklearn.datasets import fetch_covtype; fetch_covtype(data_home=DIR)\"` "
    "and pass data_home=DIR (or copy scikit-learn's covertype cache there), or pass path= to a "
    "local .npz (arrays 'data' (N, 54), 'target' (N,) with classes 1..7) or to UCI's "
    "covtype.data(.gz)")


def prepare(name: str, features: np.ndarray, labels: np.ndarray, split_seed: int,
            info: dict) -> Dataset:
    """Split, standardise with training statistics, append the ones column.

    Args:
        name: registry name.
        features: ``(N, num_features)`` raw features.
        labels: ``(N,)`` binary labels in ``{0, 1}``.
        split_seed: seed of the 80/20 split.
        info: provenance, extended here with the split and preprocessing.

    Returns:
        A dataset with ``x_*`` of shape ``(N_*, num_features + 1)`` float32 and ``y_*`` long.
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"dataset '{name}': expected features (N, d) and labels (N,), got "
                         f"{features.shape} and {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"dataset '{name}': labels must be 0 or 1")
    train, test = (index.numpy() for index in seeded_split(len(labels), TEST_FRACTION,
                                                          split_seed))
    mean = features[train].mean(axis=0)
    scale = features[train].std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)  # constant column: leave it at 0 after centring

    def design(rows: np.ndarray) -> torch.Tensor:
        standard = (features[rows] - mean) / scale
        ones = np.ones((len(rows), 1))
        return torch.from_numpy(np.concatenate([standard, ones], axis=1).astype(np.float32))

    info = {**info, "split_seed": int(split_seed), "test_fraction": TEST_FRACTION,
            "preprocessing": "standardised with training-split mean/std; ones column last",
            "num_train": int(len(train)), "num_test": int(len(test))}
    as_long = lambda rows: torch.from_numpy(labels[rows].astype(np.int64))  # noqa: E731
    return Dataset(name=name, x_train=design(train), y_train=as_long(train),
                   x_test=design(test), y_test=as_long(test), info=info)


def breast_cancer(split_seed: int = 0) -> Dataset:
    """Wisconsin diagnostic breast cancer (569 x 30; label 1 = benign), bundled with sklearn."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return prepare("breast_cancer", bunch.data, bunch.target, split_seed,
                   {"source": "sklearn.datasets.load_breast_cancer"})


def _read_covertype_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(features (N, 54), cover types (N,) in 1..7)`` from a local ``.npz`` or UCI CSV."""
    if not path.exists():
        raise DatasetUnavailable(f"covertype file '{path}' does not exist; {COVERTYPE_HOWTO}")
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            missing = {"data", "target"} - set(arrays.files)
            if missing:
                raise ValueError(f"covertype file '{path}' lacks array(s) "
                                 f"{', '.join(sorted(missing))}; expected 'data' and 'target'")
            features, cover_type = arrays["data"], arrays["target"]
    else:  # UCI covtype.data(.gz): 54 integer features then the cover type, comma separated
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        features, cover_type = table[:, :-1], table[:, -1]
    if features.ndim != 2 or features.shape[1] != COVERTYPE_SHAPE[1]:
        raise ValueError(f"covertype file '{path}': expected {COVERTYPE_SHAPE[1]} feature "
                         f"columns, got shape {features.shape}")
    return features, np.asarray(cover_type).astype(np.int64)


def covertype(split_seed: int = 0, data_home: str | None = None, path: str | None = None,
              download: bool = True) -> Dataset:
    """UCI Covertype, binary "class 2 (lodgepole pine) vs rest" as LIBSVM's covtype.binary.

    Args:
        split_seed: seed of the 80/20 split.
        data_home: scikit-learn's data directory for ``fetch_covtype`` (default: its own).
        path: read this local file instead (``.npz`` with ``data``/``target``, or UCI's
            ``covtype.data`` / ``.gz``); any number of rows, 54 feature columns.
        download: let ``fetch_covtype`` download when the cache is empty (needs internet).

    Raises:
        DatasetUnavailable: the data is neither cached nor downloadable; the message says how
            to obtain it.
    """
    if path is not None:
        features, cover_type = _read_covertype_file(Path(path))
        source = str(path)
    else:
        from sklearn.datasets import fetch_covtype

        try:
            bunch = fetch_covtype(data_home=data_home, download_if_missing=download)
        except OSError as error:  # missing cache (download=False) or no network (URLError)
            raise DatasetUnavailable(f"{COVERTYPE_HOWTO} ({type(error).__name__})") from None
        features, cover_type = bunch.data, bunch.target
        source = f"sklearn.datasets.fetch_covtype(data_home={data_home!r})"
    return prepare("covertype", features, (cover_type == 2).astype(np.int64), split_seed,
                   {"source": source, "label": "cover type 2 vs rest"})


def logistic_margin_scale(bayes_accuracy: float) -> float:
    """Standard deviation ``s`` of a centred Gaussian margin ``m`` with ``E[sigma(|m|)]`` given.

    For labels ``y ~ Bernoulli(sigma(m))`` the Bayes-optimal classifier predicts ``sign(m)`` and
    is right with probability ``sigma(|m|)``; with ``m ~ N(0, s^2)`` its accuracy
    ``E[sigma(|m|)]`` grows from 0.5 (``s = 0``) to 1, so ``s`` is found by bisection, the
    expectation by adaptive quadrature (``scipy.integrate.quad``).
    """
    if not 0.5 < bayes_accuracy < 1.0:
        raise ValueError(f"bayes_accuracy must be in (0.5, 1), got {bayes_accuracy}")
    from scipy import integrate

    def accuracy(scale: float) -> float:
        # E[sigma(|m|)] = 2 int_0^inf phi(z) sigma(s z) dz (the integrand is smooth on the
        # half-line; Gauss-Hermite on the full line would stumble on the kink of |m|).
        value, _ = integrate.quad(lambda z: math.exp(-0.5 * z * z) / (1.0 + math.exp(-scale * z)),
                                  0.0, math.inf, epsabs=1e-13)
        return 2.0 * value / math.sqrt(2.0 * math.pi)

    low, high = 0.0, 100.0
    for _ in range(100):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if accuracy(middle) < bayes_accuracy else (low, middle)
    return 0.5 * (low + high)


def synthetic(num_data: int = 20_000, num_features: int = 54, seed: int = 0,
              correlation: float = 0.0, bayes_accuracy: float = 0.75,
              split_seed: int = 0) -> Dataset:
    """Covertype-like synthetic logistic data (docs/targets.md#synthetic-data).

    Features ``x ~ N(0, Sigma)`` with ``Sigma = (1 - rho) I + rho 11^T`` (``rho = correlation``);
    true weights ``w* = s u / sqrt(u^T Sigma u)`` for a random unit direction ``u``, so the
    margin ``w*^T x ~ N(0, s^2)`` with ``s`` from :func:`logistic_margin_scale` gives the
    requested Bayes-optimal accuracy (the prior's own scale would give near-random labels);
    labels ``y ~ Bernoulli(sigma(w*^T x))``. No intercept in the truth.

    Args:
        num_data: ``N`` rows before the split.
        num_features: raw features (the ones column makes ``d = num_features + 1``).
        seed: data seed (features, weights, labels).
        correlation: equicorrelation ``rho`` in ``[0, 1)``.
        bayes_accuracy: accuracy of the true model's decision rule, in ``(0.5, 1)``.
        split_seed: seed of the 80/20 split.
    """
    if int(num_data) < 10 or int(num_features) < 1:
        raise ValueError(f"synthetic: need num_data >= 10 and num_features >= 1, got "
                         f"{num_data} and {num_features}")
    if not 0.0 <= correlation < 1.0:
        raise ValueError(f"synthetic: correlation must be in [0, 1), got {correlation}")
    generator = torch.Generator().manual_seed(int(seed))
    num_data, num_features = int(num_data), int(num_features)
    noise = torch.randn(num_data, num_features, generator=generator, dtype=torch.float64)
    shared = torch.randn(num_data, 1, generator=generator, dtype=torch.float64)
    features = math.sqrt(1.0 - correlation) * noise + math.sqrt(correlation) * shared
    direction = torch.randn(num_features, generator=generator, dtype=torch.float64)
    direction = direction / direction.norm()
    # u^T Sigma u = (1 - rho) + rho (1^T u)^2 for the equicorrelated Sigma.
    margin_variance = (1.0 - correlation) + correlation * float(direction.sum()) ** 2
    weights = logistic_margin_scale(bayes_accuracy) * direction / math.sqrt(margin_variance)
    probability = torch.sigmoid(features @ weights)
    labels = (torch.rand(num_data, generator=generator, dtype=torch.float64)
              < probability).long()
    info = {"source": "synthetic", "seed": int(seed), "correlation": float(correlation),
            "bayes_accuracy": float(bayes_accuracy), "true_weights": weights.tolist()}
    return prepare("synthetic", features.numpy(), labels.numpy(), split_seed, info)


TABULAR_DATASETS: dict[str, Callable[..., Dataset]] = {
    "breast_cancer": breast_cancer,
    "covertype": covertype,
    "synthetic": synthetic,
}
