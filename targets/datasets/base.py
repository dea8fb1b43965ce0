"""The dataset contract shared by the BLR and image-EBM targets.

Every dataset the suite uses (tabular for Bayesian logistic regression, images for the energy
models) is loaded through one registry, :data:`targets.datasets.DATASETS`, so that splits,
checksums and "how to obtain it" errors behave the same everywhere.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch


class DatasetUnavailable(RuntimeError):
    """A dataset's files are missing (or fail their checksum); the message says how to get them."""


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset with a fixed train/test split.

    Attributes:
        name: registry name.
        x_train: ``(N_train, *shape)`` float tensor (images: pixels in [0, 1],
            ``shape = (C, H, W)``).
        y_train: ``(N_train,)`` long tensor of labels.
        x_test: ``(N_test, *shape)``.
        y_test: ``(N_test,)``.
        info: provenance (source path or package, checksum, split seed, preprocessing).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max()).item()) + 1


def cache_dir() -> Path:
    """Where downloaded datasets are kept: ``$SAMPLER_BENCH_DATA`` or ``~/.cache/sampler-bench``."""
    root = os.environ.get("SAMPLER_BENCH_DATA") or Path.home() / ".cache" / "sampler-bench"
    return Path(root)


def sha256_of(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def seeded_split(num: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint ``(train_idx, test_idx)`` index tensors from a seeded permutation of ``num``."""
    generator = torch.Generator().manual_seed(seed)
    permutation = torch.randperm(num, generator=generator)
    num_test = int(round(test_fraction * num))
    return permutation[num_test:].sort().values, permutation[:num_test].sort().values
