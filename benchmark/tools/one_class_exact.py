"""How the image metrics score a perfectly collapsed sampler: exact samples of one class.

    python -m benchmark.tools.one_class_exact mfa_fashion --n 500 --seed 0

On an exact-sample image target (``mfa_*``) every class has an exact sampler of its own: the
target's mixture restricted to that class's components. Its samples are as good as samples
get within the class and cover nothing else, so they are the sampler that has collapsed onto
one class without any other defect. This tool scores them, class by class, with the
metrics of Table 3 against ``n`` exact samples of the whole target, beside two reference
rows: exact samples of the whole target (what a perfect sampler scores: the floor) and ``n``
copies of the target's mean image (a sampler collapsed onto a point).

What it is for: reading a metric. If a one-class row beats a real sampler's row on a metric,
that metric alone cannot say the real sampler is better than a collapsed one, and Table 3 has
to be read with the class-coverage columns beside it (docs/metrics.md#one-class-calibration). One
core; nothing is stored. Metrics that compare with the data set's test images (class TV,
FID against data) print ``nan`` when the data set is not installed, and the reason once on
standard error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from benchmark.metrics.base import MetricContext
from benchmark.metrics.registry import evaluate_metric
from targets import TARGETS, make_generator, make_target
from targets.datasets import DatasetUnavailable
from targets.mfa import ImageMFATarget

#: Table 3's metrics that apply to an exact-sample image target.
METRICS = ("energy_distance", "fid_exact", "class_max_share", "class_tv", "mode_recall",
           "mode_weight_error")
#: Exact draws per rejection round, as a multiple of the draws still needed.
OVERSAMPLE = 4


def class_samples(target: ImageMFATarget, label: int, n: int,
                  generator: torch.Generator) -> Tensor:
    """``n`` exact samples ``(n, d)`` of the target conditioned on class ``label``.

    Rejection from the full mixture: a draw kept only when its component belongs to the
    class is an exact draw of the class's renormalised sub-mixture.
    """
    weight = float(target.class_weights[label])
    if weight <= 0.0:
        raise ValueError(f"class {label} has no weight in target '{target.name}'")
    kept: list[Tensor] = []
    count = 0
    while count < n:
        draws = OVERSAMPLE * int((n - count) / weight) + 1
        x, labels = target.sample_classes(draws, generator)
        kept.append(x[labels == label])
        count += len(kept[-1])
    return torch.cat(kept)[:n]


def score(samples: Tensor, target: ImageMFATarget, reference: Tensor,
          metrics: tuple[str, ...], seed: int,
          skipped: dict[str, str] | None = None) -> dict[str, float]:
    """Each metric of ``samples`` ``(n, d)`` against ``reference`` ``(n, d)``; ``nan`` where
    the metric needs a data set that is not installed, with the reason put in ``skipped``
    (metric name -> message) when given."""
    row = {}
    for name in metrics:
        context = MetricContext(reference=reference, generator=make_generator(seed))
        try:
            row[name] = evaluate_metric(name, samples, target, context)
        except DatasetUnavailable as error:
            row[name] = float("nan")
            if skipped is not None:
                skipped[name] = str(error)
    return row


def one_class_table(target: ImageMFATarget, n: int, seed: int,
                    metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """One row per class (exact samples of that class only), then ``exact`` (the whole
    target, an independent set) and ``mean image`` (``n`` copies of the target's mean).

    Every row is scored against the same ``n`` exact samples of the whole target, drawn
    first from ``seed``; the rows' own samples come from ``seed + 1``. A metric that needs an
    absent data set is ``nan`` in every row; ``table.attrs["skipped"]`` maps it to the reason.
    """
    reference = target.sample(n, make_generator(seed))
    generator = make_generator(seed + 1)
    skipped: dict[str, str] = {}
    rows = {}
    for label in range(target.num_classes):
        rows[f"class {label} only"] = score(class_samples(target, label, n, generator), target,
                                            reference, metrics, seed, skipped)
    rows["exact (floor)"] = score(target.sample(n, generator), target, reference, metrics, seed,
                                  skipped)
    mean = (target.weights[:, None] * target.means).sum(0)
    rows["mean image"] = score(mean.expand(n, -1).clone(), target, reference, metrics, seed,
                               skipped)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs["skipped"] = skipped
    return table


def main(argv: list[str] | None = None) -> int:
    image_targets = [name for name, cls in TARGETS.items() if issubclass(cls, ImageMFATarget)]
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.tools.one_class_exact",
        description="Score exact samples of one class at a time with Table 3's metrics.")
    parser.add_argument("target", help=f"one of {', '.join(image_targets)}")
    parser.add_argument("--n", type=int, default=500, help="samples per row (paper-ebm: 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="CSV of the table")
    parser.add_argument("--num-threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.target not in image_targets:
        parser.error(f"target '{args.target}' has no exact class-conditional sampler; valid "
                     f"targets: {', '.join(image_targets)}")  # one line, exit status 2
    if args.n < 2:
        parser.error(f"--n must be at least 2, got {args.n}")
    torch.set_num_threads(args.num_threads)
    try:
        target = make_target(args.target)
    except DatasetUnavailable as error:
        parser.error(str(error))
    table = one_class_table(target, args.n, args.seed)
    for name, reason in table.attrs["skipped"].items():
        print(f"{name}: nan in every row: {reason}", file=sys.stderr)
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):
        print(f"{args.target}: n = {args.n}, seed {args.seed}; every row against the same "
              f"{args.n} exact samples of the whole target")
        print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index_label="samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
