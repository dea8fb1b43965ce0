"""The single dataset registry: tabular data for BLR and images for the energy-based models.

``DATASETS`` maps a name to a loader ``(**options) -> Dataset``; :func:`load_dataset` is the
entry point and turns unknown names into a one-line error listing the valid ones. Tabular
loaders live in :mod:`targets.datasets.tabular`, image loaders in :mod:`targets.datasets.images`.
"""

from __future__ import annotations

from collections.abc import Callable

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


__all__ = ["DATASETS", "Dataset", "DatasetUnavailable", "cache_dir", "load_dataset",
           "seeded_split", "sha256_of"]
