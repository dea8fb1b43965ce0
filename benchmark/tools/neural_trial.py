"""One neural-sampler training on one target, scored against exact samples (a tuning trial).

    python -m benchmark.tools.neural_trial dft_ns donut,mog8 '{"batch_size": 2048}' TAG
    python -m benchmark.tools.neural_trial dft_ns gaussian_d@50 '{}'   # target with dim = 50

Trains ``SAMPLER`` with the JSON parameter overrides on each target (training generator seed
100, one thread), draws 1,000 samples (seed 101) and prints one JSON line per target: energy
distance to 1,000 exact samples (seed 102), its ratio to the floor (a second exact set, seed
103), mode recall, KSD, the iterations the plateau rule stopped at, the learning-rate decays,
seconds, training target evaluations and the last four held-out monitor values. The quick
exploration behind the defaults of :class:`samplers.neural.training.NeuralParams` used it
(docs/tuning.md); the recorded tuning round is the matrix ``tuning-2d``.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from benchmark.metrics.base import MetricContext
from benchmark.metrics.distances import energy_distance
from benchmark.metrics.registry import METRICS
from samplers import SAMPLERS
from targets import CountingTarget, make_generator, make_target


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    sampler_name, target_names = argv[0], argv[1].split(",")
    overrides = json.loads(argv[2]) if len(argv) > 2 else {}
    tag = argv[3] if len(argv) > 3 else ""
    torch.set_num_threads(1)
    for name in target_names:
        registry_name, _, dim = name.partition("@")
        target = make_target(registry_name, **({"dim": int(dim)} if dim else {}))
        counting = CountingTarget(target)
        sampler = SAMPLERS[sampler_name](**overrides)
        start = time.perf_counter()
        history = sampler.train(counting, generator=make_generator(100))
        seconds = time.perf_counter() - start
        x = sampler.sample(1000, make_generator(101))
        reference = target.sample(1000, make_generator(102))
        distance = float(energy_distance(x, reference))
        floor = float(energy_distance(target.sample(1000, make_generator(103)), reference))
        context = MetricContext(reference=reference, generator=make_generator(0))
        recall = (float(METRICS["mode_recall"](x, target, context))
                  if target.modes() is not None else None)
        monitor = [round(row["value"], 3) for row in history if row["metric"] == "monitor_ksd"]
        print(json.dumps({
            "tag": tag, "target": name, "energy_distance": round(distance, 4),
            "ratio_to_floor": round(distance / floor, 1), "mode_recall": recall,
            "ksd": round(float(METRICS["ksd"](x, target, context)), 3),
            "iterations": sampler.ledger["train_iterations"],
            "lr_decays": sampler.ledger.get("lr_decays"), "seconds": round(seconds),
            "train_nfe": counting.num_evaluations, "monitor_last": monitor[-4:]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
