"""Image dataset loaders (docs/targets.md#image-datasets): shapes, ranges, checksums, splits,
missing-data errors.

The IDX code path (fashion_mnist, mnist) is tested on a tiny fixture written here; the real
Fashion-MNIST is tested only where Debian's ``dataset-fashion-mnist`` is installed.
"""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
import torch

from targets.datasets import DATASETS, DatasetUnavailable, load_dataset
from targets.datasets.images import (
    FASHION_MNIST_DIR,
    IDX_FILES,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)


def _idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (magic 0x0000 08 <ndim>, big-endian sizes)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def idx_dir(tmp_path):
    """Four IDX files of 28×28 images (5 train, 3 test; train gzipped, test raw) and their
    MD5 checksums of the uncompressed bytes."""
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (5, 28, 28)),
              "train_labels": np.array([0, 1, 2, 3, 4]),
              "test_images": rng.integers(0, 256, (3, 28, 28)),
              "test_labels": np.array([9, 8, 7])}
    checksums = {}
    for role, stem in IDX_FILES.items():
        data = _idx_bytes(arrays[role])
        checksums[stem] = hashlib.md5(data).hexdigest()
        if role.startswith("train"):
            (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (tmp_path / stem).write_bytes(data)
    return tmp_path, checksums, arrays


def test_registry_holds_the_five_image_datasets():
    assert {"digits", "mnist5k", "mnist16", "fashion_mnist", "mnist"} <= set(DATASETS)


@pytest.mark.parametrize("name,shape,sizes", [("digits", (1, 8, 8), (1438, 359)),
                                              ("mnist5k", (1, 32, 32), (4000, 1000)),
                                              ("mnist16", (1, 16, 16), (4000, 1000))])
def test_bundled_datasets_shapes_ranges_and_split(name, shape, sizes):
    data = load_dataset(name)
    assert data.shape == shape and (len(data.x_train), len(data.x_test)) == sizes
    for x in (data.x_train, data.x_test):
        assert x.dtype == torch.float32 and x.min() == 0.0 and x.max() == 1.0
    assert data.num_classes == 10 and data.y_train.dtype == torch.long
    assert len(data.info["sha256"]) == 64
    # Disjoint and exhaustive: no test image is a training image (rows compared exactly; the
    # few exact duplicates a dataset may contain are counted on both sides and must match).
    train = {row.numpy().tobytes() for row in data.x_train.flatten(1)}
    leaked = sum(row.numpy().tobytes() in train for row in data.x_test.flatten(1))
    everything = torch.cat([data.x_train, data.x_test]).flatten(1)
    duplicates = len(everything) - len(torch.unique(everything, dim=0))
    assert leaked <= duplicates
    # Deterministic split: loading twice gives identical tensors; another seed differs.
    again = load_dataset(name)
    assert torch.equal(again.x_test, data.x_test) and torch.equal(again.y_train, data.y_train)
    assert not torch.equal(load_dataset(name, seed=1).y_test, data.y_test)


def test_mnist5k_is_zero_padded_to_32():
    data = load_dataset("mnist5k")
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert data.x_train[:, 0, border].abs().max() == 0
    assert load_dataset("mnist5k", pad=False).shape == (1, 28, 28)


def test_mnist16_is_mnist5k_average_pooled_and_padded_by_one():
    small = load_dataset("mnist16")
    full = load_dataset("mnist5k", pad=False)  # 28×28
    # The same images in the same split and order as mnist5k: identical labels, and every
    # pixel the mean of its 2×2 block (written out here with reshape, not avg_pool2d).
    assert torch.equal(small.y_train, full.y_train) and torch.equal(small.y_test, full.y_test)
    for pooled, original in ((small.x_train, full.x_train), (small.x_test, full.x_test)):
        blocks = original.reshape(-1, 1, 14, 2, 14, 2).mean(dim=(3, 5))
        torch.testing.assert_close(pooled[:, :, 1:15, 1:15], blocks, rtol=0, atol=1e-7)
        # Pooling keeps each image's mean intensity (over its 14×14 = 28×28 / 4 pixels) ...
        torch.testing.assert_close(pooled[:, 0, 1:15, 1:15].mean(dim=(1, 2)),
                                   original.mean(dim=(1, 2, 3)), rtol=0, atol=1e-6)
        # ... and the padding is one zero pixel on each side.
        border = torch.ones(16, 16, dtype=torch.bool)
        border[1:15, 1:15] = False
        assert pooled[:, 0, border].abs().max() == 0
    # The split follows mnist5k's for another seed too.
    assert torch.equal(load_dataset("mnist16", seed=1).y_test,
                       load_dataset("mnist5k", seed=1).y_test)
    assert small.info["pooling"].startswith("2x2 average") and small.info["padding"] == 1
    assert small.info["sha256"] == full.info["sha256"]


def test_idx_directory_loads_gzipped_and_raw_files(idx_dir):
    root, checksums, arrays = idx_dir
    data = load_fashion_mnist(root=root, checksums=checksums)
    assert data.x_train.shape == (5, 1, 32, 32) and data.x_test.shape == (3, 1, 32, 32)
    expected = torch.from_numpy(arrays["test_images"].astype(np.float32) / 255)
    torch.testing.assert_close(data.x_test[:, 0, 2:30, 2:30], expected)
    assert data.y_train.tolist() == [0, 1, 2, 3, 4] and data.y_test.tolist() == [9, 8, 7]
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1
    unpadded = load_mnist(root=root, checksums=checksums, pad=False)
    assert unpadded.name == "mnist" and unpadded.shape == (1, 28, 28)


def test_idx_checksum_mismatch_names_the_file_and_how_to_get_it(idx_dir):
    root, _, _ = idx_dir
    # The published Fashion-MNIST checksums do not match the fixture.
    with pytest.raises(DatasetUnavailable, match="train-images-idx3-ubyte.gz' has .*MD5.*"
                                                 "apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(root=root)


def test_missing_idx_files_raise_with_how_to(tmp_path):
    with pytest.raises(DatasetUnavailable, match="is missing; install them with `apt-get"):
        load_dataset("fashion_mnist", root=tmp_path)
    with pytest.raises(DatasetUnavailable, match="put the four MNIST IDX files"):
        load_dataset("mnist", root=tmp_path)


def test_mnist_downloads_into_the_cache_from_a_mirror(idx_dir, tmp_path_factory, monkeypatch):
    source, checksums, _ = idx_dir
    mirror = tmp_path_factory.mktemp("mirror")
    for stem in IDX_FILES.values():  # the mirror serves .gz files only, like the real ones
        raw = source / stem
        data = raw.read_bytes() if raw.exists() else gzip.decompress((source / f"{stem}.gz")
                                                                     .read_bytes())
        (mirror / f"{stem}.gz").write_bytes(gzip.compress(data))
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("SAMPLER_BENCH_DATA", str(cache))
    data = load_mnist(checksums=checksums, mirrors=[mirror.as_uri() + "/"])
    assert data.x_train.shape == (5, 1, 32, 32)
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(
        f"{stem}.gz" for stem in IDX_FILES.values())


def test_mnist_offline_without_files_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMPLER_BENCH_DATA", str(tmp_path))
    with pytest.raises(DatasetUnavailable, match="could not download .*put the four MNIST"):
        load_mnist(mirrors=[(tmp_path / "no-mirror").as_uri() + "/"])
    with pytest.raises(DatasetUnavailable, match="is missing; put the four MNIST IDX files"):
        load_mnist(download=False)


def test_read_idx_rejects_corrupt_headers():
    good = _idx_bytes(np.zeros((2, 3), dtype=np.uint8))
    assert read_idx(good).shape == (2, 3)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(b"\x00\x00\x0d\x01" + good[4:])
    with pytest.raises(ValueError, match="header declares"):
        read_idx(good[:-1])


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist_matches_the_published_checksums():
    data = load_dataset("fashion_mnist")
    assert data.x_train.shape == (60000, 1, 32, 32) and data.x_test.shape == (10000, 1, 32, 32)
    assert data.y_train.bincount().tolist() == [6000] * 10
    assert data.x_test.min() == 0 and data.x_test.max() == 1
