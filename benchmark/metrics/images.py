"""Image-EBM metrics (docs/metrics.md#image-metrics): FID and class coverage.

They need a target that ``provides`` ``"images"``: an image energy with ``dataset`` (the
registry name of its data, whose test split is the data side and whose feature classifier
is shipped in ``benchmark/fid/checkpoints/``) and samples that are flattened images.

* ``fid_data``: FID of the samples against the whole test split (measures energy + sampler);
* ``fid_ref``: FID against the stored EBM reference samples (long MALA from held-out data,
  :mod:`benchmark.fid.reference`; measures the sampler alone);
* ``class_tv`` / ``class_max_share``: class coverage of the samples' predicted classes.

Floors (docs/metrics.md#noise-floors): ``fid_data``'s is
:func:`benchmark.fid.evaluation.fid_floor` (``n`` training images against the test split);
``fid_ref``'s is the FID between the two reference runs, stored in the reference's
``reference.json``.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from benchmark.metrics.base import Metric, MetricContext
from targets.base import Target


def fid_data(samples: Tensor, target: Target, context: MetricContext) -> float:
    from benchmark.fid.evaluation import fid_to_data

    return fid_to_data(samples, target.dataset)


def fid_ref(samples: Tensor, target: Target, context: MetricContext) -> float:
    from benchmark.fid.evaluation import fid_between
    from benchmark.fid.reference import load_reference

    return fid_between(samples, load_reference(target), target.dataset)


def fid_exact(samples: Tensor, target: Target, context: MetricContext) -> float:
    """FID against ``n`` exact samples of the target (the context's reference set): on an
    image target with an exact sampler (``mfa_*``) the reference is the truth, and the floor
    (two exact sets) is exact too."""
    from benchmark.fid.evaluation import fid_between

    return fid_between(samples, context.reference, target.dataset)


def class_tv(samples: Tensor, target: Target, context: MetricContext) -> float:
    from benchmark.fid.evaluation import class_coverage

    return class_coverage(samples, target.dataset)[0]


def class_max_share(samples: Tensor, target: Target, context: MetricContext) -> float:
    from benchmark.fid.evaluation import class_coverage

    return class_coverage(samples, target.dataset)[1]


@functools.lru_cache(maxsize=4)
def _training_split(dataset: str) -> Tensor:
    """The training images of ``dataset`` ``(N, C, H, W)``, loaded (and checksummed) once."""
    from targets.datasets import load_dataset

    return load_dataset(dataset).x_train


def _training_images(target: Target, n: int, generator: torch.Generator) -> Tensor:
    """``n`` training images drawn without replacement, flattened: independent real data."""
    images = _training_split(target.dataset)
    index = torch.randperm(len(images), generator=torch.Generator().manual_seed(
        int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))))[:n]
    return images[index].reshape(len(index), -1).to(device=target.device, dtype=target.dtype)


def fid_data_floor(target: Target, n: int, generator: torch.Generator) -> float:
    """FID of ``n`` training images against the test split (what real data scores)."""
    return fid_data(_training_images(target, n, generator), target, None)


def fid_ref_floor(target: Target, n: int, generator: torch.Generator) -> float:
    """FID between the two stored reference runs (from noise vs from held-out data)."""
    from benchmark.fid.evaluation import fid_between
    from benchmark.fid.reference import load_reference

    return fid_between(load_reference(target, run="from_noise"), load_reference(target),
                       target.dataset)


def class_tv_floor(target: Target, n: int, generator: torch.Generator) -> float:
    """Class TV of ``n`` training images against the test split."""
    return class_tv(_training_images(target, n, generator), target, None)


def class_max_share_floor(target: Target, n: int, generator: torch.Generator) -> float:
    """Largest class share among ``n`` training images."""
    return class_max_share(_training_images(target, n, generator), target, None)


_FEATURES = "penultimate features (ELU) of the dataset's CNN classifier " \
            "(benchmark/fid/checkpoints), pixels clamped to [0, 1]"

IMAGE_METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric.declared(
            "fid_data", f"Frechet distance of Gaussian fits (unbiased covariance) of "
                        f"{_FEATURES}: samples vs the whole test split; floor: n training "
                        f"images vs the test split",
            fid_data, floor=fid_data_floor),
        Metric.declared(
            "fid_ref", f"Frechet distance of Gaussian fits of {_FEATURES}: samples vs the "
                       f"stored EBM reference samples (long MALA from held-out data); floor: "
                       f"FID between the data- and noise-started reference runs",
            fid_ref, floor=fid_ref_floor),
        Metric.declared(
            "fid_exact", f"Frechet distance of Gaussian fits of {_FEATURES}: samples vs n "
                         f"exact samples of the target (image targets with an exact sampler); "
                         f"floor: two independent exact sets",
            fid_exact),
        Metric.declared(
            "class_tv", "total-variation distance between the predicted-class histograms "
                        "(same classifier) of the samples and of the test split",
            class_tv, floor=class_tv_floor),
        Metric.declared(
            "class_max_share", "largest share of one predicted class among the samples "
                               "(data: ~1/K)",
            class_max_share, floor=class_max_share_floor),
    )
}
