"""The single dataset registry: tabular data for BLR and images for the energy-based models.

``DATASETS`` maps a name to a loader ``(**options) -> Dataset``; :func:`load_dataset` is the
entry point and turns unknown names into a one-line error listing the valid ones. Tabular
loaders live in :mod:`targets.datasets.tabular`, image loaders in :mod:`targets.datasets.images`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from targets.datasets.base import Dataset, DatasetUnavailable, cache_dir, seeded_split, sha256_of

DATASETS: dict[str, Callable[..., Dataset]] = {}

try:  # the registries are filled by the modules below as they land
    from targets.datasets.tabular import TABULAR_DATASETS
    DATASETS.update(TABULAR_DATASETS)
except ImportError:  # pragma: no cover - during development only
    pass
try:
    from targets.datasets.images import IMAGE_DATASETS
    DATASETS.update(IMAGE_DATASETS)
except ImportError:  # pragma: no cover
    pass


def load_dataset(name: str, **options) -> Dataset:
    """Load registered dataset ``name`` (options are loader-specific, e.g. ``root=``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](**options)


def held_out_images(name: str, n: int, seed: int) -> torch.Tensor:
    """``n`` test-split images of dataset ``name``, a seeded subset in split order, flat
    ``(n, C·H·W)``: the starts of the EBM reference's data run and the test-image panels of
    the figures (a random subset, since some splits are stored in label order)."""
    test = load_dataset(name).x_test
    if not 1 <= n <= len(test):
        raise ValueError(f"n must be in [1, {len(test)}] (the test split of '{name}'), got {n}")
    subset = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]
    return test[subset.sort().values].reshape(n, -1)


__all__ = ["DATASETS", "Dataset", "DatasetUnavailable", "cache_dir", "held_out_images",
           "load_dataset", "seeded_split", "sha256_of"]
