"""Domain feature networks for FID: a small CNN classifier per image dataset.

Standard FID uses Inception-v3 pool features, whose weights cannot be downloaded here, so each
dataset gets its own small classifier trained on its *training* split only
(docs/metrics.md#fid-feature-network). Its penultimate activations (``feature_dim`` of them,
well below the evaluation ``n`` so that the ``(d, d)`` covariance of ``n`` samples is estimated
from more points than dimensions) are the FID features; its arg-max prediction is the class used
by the coverage metrics.

Architecture (per dataset in :data:`CLASSIFIER_CONFIGS`): blocks of ``3x3 conv -> ReLU -> 2x2
max-pool`` halve the image down to ``2x2``, then ``Linear -> ELU`` to ``feature_dim`` (the
features) and ``Linear`` to the class logits. ELU rather than ReLU at the penultimate layer
because a ReLU there left 14 of 32 (digits) and 26 of 64 (mnist5k) features identically 0 on
the test split (dead units): rank-deficient features that carry nothing; with ELU every feature
varies, at the same test accuracy.

Checkpoints are plain dicts (tensors, numbers, strings) saved with :func:`torch.save` and
loaded with ``weights_only=True``; they record the dataset, the architecture, the training
recipe, the test accuracy and the exact command (see ``benchmark/fid/checkpoints/README.md``).

References:
    M. Heusel et al., NeurIPS 2017 (FID); the domain-classifier variant follows the common
    practice for MNIST-scale generative models of replacing Inception by a small classifier
    trained on the same data.
"""

from __future__ import annotations

import copy
import functools
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture and training recipe of one dataset's feature classifier.

    Attributes:
        widths: output channels of the conv blocks; each block halves the image, so
            ``len(widths) = log2(H / 2)`` (2 for 8x8, 4 for 32x32).
        feature_dim: width of the penultimate layer (the FID features).
        num_epochs: passes over the training split.
        batch_size: minibatch size.
        lr: Adam learning rate (cosine-decayed to 0).
        weight_decay: AdamW decoupled weight decay.
        max_shift: random translations of up to this many pixels (zero fill) during training,
            a light augmentation that makes the features less sensitive to where a digit sits.
    """

    widths: tuple[int, ...]
    feature_dim: int
    num_epochs: int
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_shift: int = 1


#: Per dataset. ``feature_dim`` is kept well below the evaluation ``n``: digits' test split has
#: 359 images (32 features); mnist5k is evaluated at n = 500 (64 features, test split 1000).
#: Only digits and mnist5k have shipped checkpoints; the other two are recipes.
CLASSIFIER_CONFIGS: dict[str, ClassifierConfig] = {
    "digits": ClassifierConfig(widths=(32, 64), feature_dim=32, num_epochs=60),
    "mnist5k": ClassifierConfig(widths=(16, 32, 64, 64), feature_dim=64, num_epochs=30,
                                 max_shift=2),
    "mnist16": ClassifierConfig(widths=(16, 32, 64), feature_dim=64, num_epochs=30, max_shift=1),
    "fashion_mnist": ClassifierConfig(widths=(16, 32, 64, 64), feature_dim=64, num_epochs=5),
    "mnist": ClassifierConfig(widths=(16, 32, 64, 64), feature_dim=64, num_epochs=5),
}


class FeatureClassifier(nn.Module):
    """Small CNN classifier whose penultimate layer gives the FID features.

    Args:
        in_shape: ``(C, H, W)`` of one image, ``H = W`` a power of two >= 4.
        num_classes: number of labels.
        widths: conv block channels (see :class:`ClassifierConfig`).
        feature_dim: penultimate width.
    """

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int,
                 widths: tuple[int, ...], feature_dim: int) -> None:
        super().__init__()
        channels, height, width = in_shape
        side = 2 * 2 ** len(widths)  # each block halves the side, down to 2x2
        if height != side or width != side:
            raise ValueError(f"in_shape {tuple(in_shape)} needs square images of side {side} "
                             f"for {len(widths)} conv blocks")
        final = 2
        self.in_shape = tuple(in_shape)
        layers: list[nn.Module] = []
        for out in widths:
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.conv = nn.Sequential(*layers)
        self.hidden = nn.Linear(channels * final * final, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, images: Tensor) -> Tensor:
        """Penultimate activations. ``(n, C, H, W) -> (n, feature_dim)``."""
        return functional.elu(self.hidden(self.conv(images).flatten(1)))

    def forward(self, images: Tensor) -> Tensor:
        """Class logits. ``(n, C, H, W) -> (n, num_classes)``."""
        return self.head(self.features(images))


def _random_shift(images: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image by an integer offset in ``[-max_shift, max_shift]^2`` (zero fill)."""
    if max_shift == 0:
        return images
    n, _, height, width = images.shape
    padded = functional.pad(images, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    rows = offsets[:, 0, None] + torch.arange(height)  # (n, H)
    cols = offsets[:, 1, None] + torch.arange(width)  # (n, W)
    index = torch.arange(n)[:, None, None]
    # (n, H, W, C) gathered, then back to channels-first.
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


@torch.no_grad()
def accuracy(model: FeatureClassifier, images: Tensor, labels: Tensor,
             batch_size: int = 1000) -> float:
    """Fraction of ``images (n, C, H, W)`` whose arg-max prediction equals ``labels (n,)``."""
    model.eval()
    correct = sum(int((model(images[i:i + batch_size]).argmax(1)
                       == labels[i:i + batch_size]).sum())
                  for i in range(0, len(images), batch_size))
    return correct / len(images)


def train_classifier(dataset: str, seed: int = 0, num_epochs: int | None = None,
                     progress: bool = False) -> dict:
    """Train ``dataset``'s feature classifier on its training split; return the checkpoint.

    Args:
        dataset: a key of :data:`CLASSIFIER_CONFIGS` (and of the dataset registry).
        seed: initialisation, shuffling and augmentation seed.
        num_epochs: override the config's (for smoke tests).
        progress: print one line per epoch to stderr.

    Returns:
        The checkpoint dict (see :func:`save_checkpoint`): ``state``, ``config``, ``in_shape``,
        ``num_classes``, ``dataset``, ``seed``, ``num_epochs``, ``train_accuracy``,
        ``test_accuracy``, ``final_loss``, ``seconds``, ``torch_version``, ``dataset_info``.
    """
    from targets.datasets import load_dataset

    config = _config(dataset)
    data = load_dataset(dataset)
    epochs = config.num_epochs if num_epochs is None else int(num_epochs)
    torch.manual_seed(seed)  # nn.Module initialisation draws from the global generator
    generator = torch.Generator().manual_seed(seed)
    model = FeatureClassifier(data.shape, data.num_classes, config.widths, config.feature_dim)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    num_batches = math.ceil(len(data.x_train) / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(epochs * num_batches, 1))
    start = time.perf_counter()
    loss = torch.tensor(math.nan)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(data.x_train), generator=generator)
        total = 0.0
        for batch in order.split(config.batch_size):
            images = _random_shift(data.x_train[batch], config.max_shift, generator)
            loss = functional.cross_entropy(model(images), data.y_train[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        if progress:
            print(f"epoch {epoch + 1}/{epochs}: train loss {total / len(data.x_train):.4f}",
                  file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    return {
        "state": {key: value.detach().clone() for key, value in model.state_dict().items()},
        "config": {key: list(value) if isinstance(value, tuple) else value
                   for key, value in asdict(config).items()},
        "in_shape": list(data.shape), "num_classes": data.num_classes, "dataset": dataset,
        "seed": seed, "num_epochs": epochs,
        "train_accuracy": accuracy(model, data.x_train, data.y_train),
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
        "final_loss": float(loss.detach()), "seconds": seconds,
        "torch_version": str(torch.__version__),
        "dataset_info": {key: str(value) for key, value in data.info.items()},
    }


def _config(dataset: str) -> ClassifierConfig:
    if dataset not in CLASSIFIER_CONFIGS:
        raise ValueError(f"no feature classifier for dataset '{dataset}'; valid datasets: "
                         f"{', '.join(CLASSIFIER_CONFIGS)}")
    return CLASSIFIER_CONFIGS[dataset]


def checkpoint_path(dataset: str, directory: Path | str | None = None) -> Path:
    """``<directory or CHECKPOINT_DIR>/<dataset>.pt``."""
    return Path(directory or CHECKPOINT_DIR) / f"{dataset}.pt"


def save_checkpoint(checkpoint: dict, path: Path | str) -> None:
    """Write a checkpoint from :func:`train_classifier` (atomic rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".pt.tmp")
    torch.save(checkpoint, temporary)
    temporary.replace(path)


def model_from_checkpoint(checkpoint: dict) -> FeatureClassifier:
    """Rebuild the classifier of a checkpoint dict, in eval mode."""
    config = checkpoint["config"]
    model = FeatureClassifier(tuple(checkpoint["in_shape"]), int(checkpoint["num_classes"]),
                              tuple(config["widths"]), int(config["feature_dim"]))
    model.load_state_dict(checkpoint["state"])
    return model.eval()


@functools.lru_cache(maxsize=8)
def load_classifier(dataset: str, directory: str | None = None) -> FeatureClassifier:
    """The shipped (or ``directory``'s) classifier of ``dataset``, on the CPU, in eval mode.

    Cached: metrics call it once per cell. Do not modify the returned module in place.

    Raises:
        FileNotFoundError: no checkpoint; the message gives the command that trains one.
    """
    path = checkpoint_path(dataset, directory)
    if not path.exists():
        raise FileNotFoundError(f"no feature classifier for dataset '{dataset}' at {path}; "
                                f"train one with: python -m benchmark train-classifier "
                                f"--dataset {dataset}")
    for parameter in (model := model_from_checkpoint(
            torch.load(path, map_location="cpu", weights_only=True))).parameters():
        parameter.requires_grad_(False)
    return model


def as_images(x: Tensor, in_shape: tuple[int, ...]) -> Tensor:
    """Flat samples ``(n, C*H*W)`` (or images ``(n, C, H, W)``) -> images ``(n, C, H, W)``."""
    flat = math.prod(in_shape)
    if x.ndim == 2 and x.shape[1] == flat:
        return x.reshape(-1, *in_shape)
    if tuple(x.shape[1:]) == tuple(in_shape):
        return x
    raise ValueError(f"expected images (n, {', '.join(map(str, in_shape))}) or flat (n, {flat}), "
                     f"got {tuple(x.shape)}")


@torch.no_grad()
def classifier_outputs(model: FeatureClassifier, x: Tensor,
                       batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """Features and predicted classes of images, pixels clamped to ``[0, 1]`` first.

    Clamping is the same as saving the samples as images (the data's pixel range); it keeps
    a sampler's out-of-range pixels from driving the features to values the classifier never
    saw in training, while the distance still sees the clamped image.

    Args:
        model: a :class:`FeatureClassifier`; moved to ``x``'s device (a copy if it differs).
        x: ``(n, C*H*W)`` or ``(n, C, H, W)``.

    Returns:
        ``(n, feature_dim)`` float32 features and ``(n,)`` int64 predicted classes.
    """
    images = as_images(x, model.in_shape).to(torch.float32).clamp(0.0, 1.0)
    parameter = next(model.parameters())
    if parameter.device != images.device:  # a device copy; the cached CPU model stays put
        model = copy.deepcopy(model).to(images.device)
    features, classes = [], []
    for chunk in images.split(batch_size):
        hidden = model.features(chunk)
        features.append(hidden)
        classes.append(model.head(hidden).argmax(1))
    return torch.cat(features), torch.cat(classes)
