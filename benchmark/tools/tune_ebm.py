"""Tuning sweep of the neural samplers on an image EBM (seeds disjoint from paper-ebm's 0-2).

Trains each configuration of a small grid once on the tuning seed(s), logs FID against the
test data every ``--log-every`` iterations, and prints/writes one JSON line per configuration
with the final FID (data), class coverage, with and without the final denoising step
``x + sigma0^2 s(x)``, and the training seconds. The choices made from its output are recorded
in ``benchmark/matrices/paper-ebm.toml``.

    python -m benchmark.tools.tune_ebm --target ebm_digits --iterations 500 \
        --out results/paper-ebm-tuning/digits.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from benchmark.fid.evaluation import class_coverage, fid_to_data
from samplers import SAMPLERS
from targets import TARGETS
from targets.base import make_generator
from targets.counting import CountingTarget

#: The grid: every combination is one configuration (kept small: a CPU core-hour budget).
GRID = {
    "sampler": ["dft_ns"],
    "architecture": ["mlp", "conv"],
    "sigma": [0.1, 0.2],
    "sampler_lr": [1e-3],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="ebm_digits")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[100])
    parser.add_argument("--n", type=int, default=359, help="evaluation samples")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", type=int, nargs="*", help="indices of the grid to run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    target = TARGETS[args.target]()
    sigma0 = float(target.denoise_sigma or 0.1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    configs = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    for index, config in enumerate(configs):
        if args.only and index not in args.only:
            continue
        for seed in args.seeds:
            architecture = config["architecture"]
            params = dict(sigma=config["sigma"], sampler_lr=config["sampler_lr"],
                          batch_size=args.batch_size, log_every=args.log_every,
                          generator_architecture=architecture, score_architecture=architecture)
            if architecture == "conv":
                params["latent_dim"] = 32
            sampler = SAMPLERS[config["sampler"]](**params)
            curve = []

            def callback(iteration: int, trained, curve=curve, seed=seed,
                         index=index) -> dict[str, float]:
                with torch.no_grad():
                    x = trained.sample(args.n, make_generator(seed + 1))
                value = fid_to_data(x, target.dataset)
                curve.append((iteration, value))
                print(f"  [{index}] it {iteration}: fid_data {value:.2f}", flush=True)
                return {"fid_data_eval": value}

            counting = CountingTarget(target)
            start = time.perf_counter()
            sampler.train(counting, args.iterations, make_generator(seed), callback=callback)
            seconds = time.perf_counter() - start
            with torch.no_grad():
                x = sampler.sample(args.n, make_generator(seed + 2))
            denoised = x + sigma0**2 * target.score(x)
            record = {"index": index, **config, "seed": seed, "iterations": args.iterations,
                      "batch_size": args.batch_size, "train_seconds": seconds,
                      "train_seconds_own": sampler.ledger.get("train_seconds"),
                      "curve": curve}
            for label, samples in (("", x), ("_dn", denoised)):
                tv, share = class_coverage(samples, target.dataset)
                record[f"fid_data{label}"] = fid_to_data(samples, target.dataset)
                record[f"class_tv{label}"], record[f"class_max_share{label}"] = tv, share
            try:
                from benchmark.fid.evaluation import fid_between
                from benchmark.fid.reference import load_reference

                reference = load_reference(target)
                record["fid_ref"] = fid_between(x, reference, target.dataset)
                record["fid_ref_dn"] = fid_between(denoised, reference, target.dataset)
            except (FileNotFoundError, ValueError) as error:
                record["fid_ref"] = f"unavailable: {error}"[:120]
            print(json.dumps(record), flush=True)
            with args.out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
