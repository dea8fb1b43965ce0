"""Exact samples of the ``mfa_*`` image targets beside test images of their dataset.

    python -m benchmark.tools.mfa_figure --out results/mfa/figures

For each exact-sample image target (``mfa_digits``, ``mfa_mnist``, ``mfa_fashion``; a target
whose dataset is missing here, e.g. Fashion-MNIST without its Debian package, is skipped with
the reason) one row: 64 exact samples
(seed 0) and 64 randomly chosen (seed 0) test images of the dataset the target was fitted to,
as 8 x 8 mosaics, pixels clipped to [0, 1] for display. A reader judges at a glance whether
the target's samples read as digits (garments): these are the reference samples of every FID,
class-coverage and pixel-space distance on these targets, so their quality bounds what
"matching the target" means there. Writes ``mfa_samples.png`` and ``.pdf``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from benchmark.report.plots_ebm import mosaic
from targets import make_generator, make_target
from targets.datasets import DatasetUnavailable, load_dataset

#: The exact-sample image targets, in figure order.
TARGETS = ("mfa_digits", "mfa_mnist", "mfa_fashion")
COUNT = 64


def panels() -> tuple[list[tuple[str, np.ndarray, np.ndarray]], list[str]]:
    """``([(target, samples mosaic, test mosaic)], [skip reasons])``."""
    rows, skipped = [], []
    for name in TARGETS:
        try:
            target = make_target(name)
            images = load_dataset(target.dataset).x_test
        except DatasetUnavailable as error:
            skipped.append(f"{name}: {str(error).splitlines()[0]}")
            continue
        with torch.no_grad():
            samples = target.sample(COUNT, make_generator(0)).clamp(0.0, 1.0)
        # A seeded random choice: some test splits are stored sorted by class.
        chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:COUNT]
        test = images[chosen].reshape(COUNT, -1)
        rows.append((name, mosaic(samples.cpu().numpy()), mosaic(test.numpy())))
    return rows, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.tools.mfa_figure",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/mfa/figures"),
                        help="output folder (default: results/mfa/figures)")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, skipped = panels()
    for reason in skipped:
        print(f"skipped {reason}")
    if not rows:
        print("error: no exact-sample image target is available here", file=sys.stderr)
        return 2
    figure, axes = plt.subplots(len(rows), 2, figsize=(6.4, 3.3 * len(rows)), squeeze=False)
    for (name, samples, test), (left, right) in zip(rows, axes, strict=True):
        left.imshow(samples, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        left.set_title(f"{name}: exact samples", fontsize=9)
        right.imshow(test, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        right.set_title("test images", fontsize=9)
        for axis in (left, right):
            axis.set_axis_off()
    figure.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    for suffix in ("png", "pdf"):
        path = args.out / f"mfa_samples.{suffix}"
        figure.savefig(path, dpi=150, metadata={"CreationDate": None} if suffix == "pdf" else {})
        print(f"wrote {path}")
    plt.close(figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
