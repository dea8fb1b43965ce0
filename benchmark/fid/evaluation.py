"""FID and class coverage of image samples, through one dataset's feature classifier.

Every function takes flat samples ``(n, C*H*W)`` (as samplers produce them) or images
``(n, C, H, W)`` and a dataset registry name, which selects the classifier
(:func:`benchmark.fid.features.load_classifier`) and the data side:

* :func:`fid_to_data`: FID of the samples against the dataset's whole *test* split;
* :func:`fid_between`: FID between two sample sets (e.g. samples vs stored EBM reference);
* :func:`class_coverage`: total-variation distance of predicted-class histograms from the test
  split's, and the largest class share (:mod:`benchmark.fid.coverage`);
* :func:`fid_floor`: the noise floor of :func:`fid_to_data` -- ``n`` random *training* images
  against the test split (every FID table shows it at the evaluation ``n``;
  docs/metrics.md#fid-against-data).

Features are computed on the samples' device and the Gaussian fits in float64 on the CPU
(``feature_dim`` <= 128, so the ``(d, d)`` algebra is negligible). The test split's features
are cached per dataset.
"""

from __future__ import annotations

import functools
import math
import statistics

import torch
from torch import Tensor

from benchmark.fid.coverage import class_histogram, max_share, total_variation
from benchmark.fid.features import FeatureClassifier, classifier_outputs, load_classifier
from benchmark.fid.frechet import frechet_distance_of_features


def outputs(x: Tensor, dataset: str, directory: str | None = None) -> tuple[Tensor, Tensor]:
    """Classifier features ``(n, feature_dim)`` (float64, CPU) and classes ``(n,)`` (CPU).

    ``directory``, here and below: where the classifier checkpoint is (default: shipped).
    """
    features, classes = classifier_outputs(load_classifier(dataset, directory), x)
    return features.to("cpu", torch.float64), classes.cpu()


@functools.lru_cache(maxsize=8)
def split_outputs(dataset: str, split: str = "test",
                  directory: str | None = None) -> tuple[Tensor, Tensor]:
    """:func:`outputs` of a dataset split (``"train"`` or ``"test"``), cached."""
    from targets.datasets import load_dataset

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got '{split}'")
    data = load_dataset(dataset)
    return outputs(data.x_test if split == "test" else data.x_train, dataset, directory)


def num_classes(dataset: str, directory: str | None = None) -> int:
    """Number of classes of the dataset's classifier."""
    model: FeatureClassifier = load_classifier(dataset, directory)
    return int(model.head.out_features)


def fid_to_data(x: Tensor, dataset: str, directory: str | None = None) -> float:
    """FID of samples ``x`` against the dataset's full test split."""
    return frechet_distance_of_features(outputs(x, dataset, directory)[0],
                                        split_outputs(dataset, "test", directory)[0])


def fid_between(x: Tensor, y: Tensor, dataset: str, directory: str | None = None) -> float:
    """FID between two sample sets ``x`` ``(n_x, D)`` and ``y`` ``(n_y, D)`` of one dataset."""
    return frechet_distance_of_features(outputs(x, dataset, directory)[0],
                                        outputs(y, dataset, directory)[0])


def class_coverage(x: Tensor, dataset: str, directory: str | None = None) -> tuple[float, float]:
    """``(class_tv, class_max_share)`` of samples ``x`` (see :mod:`benchmark.fid.coverage`)."""
    k = num_classes(dataset, directory)
    histogram = class_histogram(outputs(x, dataset, directory)[1], k)
    reference = class_histogram(split_outputs(dataset, "test", directory)[1], k)
    return total_variation(histogram, reference), max_share(histogram)


def fid_floor(dataset: str, n: int, seed: int = 0, num_repeats: int = 5,
              directory: str | None = None) -> tuple[float, float]:
    """FID of ``n`` random training images (without replacement) against the test split.

    The floor of :func:`fid_to_data` at sample size ``n``: what independent real images of the
    same distribution score (FID of ``n`` points is biased upwards, roughly ``~ 1/n``).

    Args:
        dataset: registry name.
        n: sample size, at most the training split's size.
        seed: seed of the subsets (repeat ``r`` uses ``seed + r``).
        num_repeats: independent subsets.

    Returns:
        ``(mean, std)`` over repeats (``std`` with ddof = 1; NaN for one repeat).
    """
    train_features = split_outputs(dataset, "train", directory)[0]
    test_features = split_outputs(dataset, "test", directory)[0]
    if not 2 <= n <= len(train_features):
        raise ValueError(f"n must be in [2, {len(train_features)}] for dataset '{dataset}', "
                         f"got {n}")
    if num_repeats < 1:
        raise ValueError(f"num_repeats must be at least 1, got {num_repeats}")
    values = []
    for repeat in range(num_repeats):
        subset = torch.randperm(len(train_features),
                                generator=torch.Generator().manual_seed(seed + repeat))[:n]
        values.append(frechet_distance_of_features(train_features[subset], test_features))
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan
