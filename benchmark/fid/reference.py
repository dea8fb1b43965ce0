"""EBM reference samples: long seeded MALA runs on an image energy
(docs/metrics.md#ebm-reference-samples).

FID against the data measures the energy and the sampler together; an imperfect energy's own
distribution can sit far from the data. FID against samples *of the energy* measures the
sampler alone. Those samples come from two long MALA runs (:class:`samplers.langevin.MALA`, the
project's sampler, with dual-averaging warm-up), one chain per sample:

* ``from_data``: ``n`` chains started at held-out (test-split) images -- the reference;
* ``from_noise``: ``n`` chains started from uniform noise on ``[0, 1]^d``.

If both have mixed, they sample the same distribution and their FID to each other is small:
that FID is the *reference floor* stored beside them (docs/metrics.md#ebm-reference-samples).
Each run keeps the final state of every chain, so its ``n`` samples are independent draws from
the chain's law at step ``K``.

Stored in a directory (default :data:`REFERENCE_DIR` ``/<target name>/``):

* ``samples.pt``: ``{"from_data": (n, d) float16, "from_noise": (n, d) float16}`` (float16
  keeps 3 significant digits of pixels of order 1, and halves the file; loaded with
  ``weights_only=True``);
* ``reference.json``: per run the step size, acceptance rate, seed and wall-clock; the number
  of steps, the FID between the runs (the floor), each run's FID to the test data and class
  coverage, the energy checkpoint's SHA-256 (a reference of a different energy is refused) and
  the command.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from samplers.base import drive_chain
from samplers.langevin import MALA, MALAState
from targets.base import Target, make_generator

REFERENCE_DIR = Path(__file__).resolve().parent / "references"
SAMPLES_FILE = "samples.pt"
INFO_FILE = "reference.json"


@dataclass(frozen=True)
class ReferenceRun:
    """The result of one MALA run.

    Attributes:
        samples: ``(n, d)`` final states of the ``n`` chains.
        step_size: the frozen step size ``h`` after warm-up.
        acceptance_rate: mean acceptance probability over the post-warm-up transitions.
        warmup_acceptance_rate: the same over the warm-up transitions.
        seconds: wall-clock of the run.
    """

    samples: Tensor
    step_size: float
    acceptance_rate: float
    warmup_acceptance_rate: float
    seconds: float


def run_mala(target: Target, x0: Tensor, num_steps: int, generator: torch.Generator,
             step_size: float = 1e-3, warmup_fraction: float = 0.2,
             on_step: Callable[[int, float], None] | None = None) -> ReferenceRun:
    """``num_steps`` MALA transitions of every chain from ``x0`` ``(n, d)``.

    Args:
        target: the energy as a target (``log_prob = -E``).
        x0: ``(n, d)`` starting points on the target's device.
        num_steps: ``K``; the first ``floor(warmup_fraction * K)`` adapt ``h``.
        generator: proposal and acceptance randomness.
        step_size: initial ``h`` before adaptation. Pixels are O(1) and the energies are
            steep (sharp images), so adaptation starts small.
        warmup_fraction: MALA's warm-up fraction; the rest is a fixed-``h``, exactly
            invariant chain.
        on_step: ``(step_index, acceptance_rate)`` after every transition (progress bars).
    """
    sampler = MALA(step_size=step_size, warmup_fraction=warmup_fraction)
    start = time.perf_counter()
    warmup, sampling = [], []

    def record(state: MALAState, info: dict[str, Tensor]) -> None:
        # step_index counts the transitions taken, this one included.
        rate = float(info["acceptance_rate"])
        (warmup if state.step_index <= state.num_warmup else sampling).append(rate)
        if on_step is not None:
            on_step(state.step_index - 1, rate)

    state = drive_chain(sampler, target, x0, num_steps, generator, on_step=record)
    samples = sampler.finalize(target, state)
    return ReferenceRun(samples=samples.detach(), step_size=float(state.log_step_size.exp()),
                        acceptance_rate=_mean(sampling), warmup_acceptance_rate=_mean(warmup),
                        seconds=time.perf_counter() - start)


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def held_out_images(target: Target, n: int, seed: int) -> Tensor:
    """``n`` test-split images of the target's dataset (seeded subset), flat ``(n, d)``."""
    from targets.datasets import held_out_images as dataset_images

    return dataset_images(target.dataset, n, seed).to(device=target.device, dtype=target.dtype)


def energy_checksum(target: Target) -> str:
    """SHA-256 of the target's energy checkpoint file (``target.info["path"]``)."""
    from targets.datasets import sha256_of

    return sha256_of(target.info["path"])


def make_reference(target: Target, num_steps: int, n: int | None = None, seed: int = 0,
                   step_size: float = 1e-3, warmup_fraction: float = 0.2,
                   progress: bool = False) -> tuple[dict[str, Tensor], dict]:
    """Run both chains on ``target`` and evaluate them; nothing is written.

    Args:
        target: an image energy target (``dataset``, ``info["path"]``).
        num_steps: MALA transitions per chain.
        n: chains per run (default: ``min(500, test-split size)``).
        seed: the data subset and the data run use ``seed``, the noise run ``seed + 1``.
        step_size: initial MALA step size.
        warmup_fraction: MALA warm-up fraction.
        progress: tqdm bars.

    Returns:
        ``(samples, info)`` as stored by :func:`save_reference`.
    """
    from tqdm import tqdm

    from benchmark.fid.evaluation import class_coverage, fid_between, fid_to_data, split_outputs

    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if n is None:
        n = min(500, len(split_outputs(target.dataset)[0]))
    starts = {"from_data": (held_out_images(target, n, seed), seed),
              "from_noise": (target.rand(n, target.dim, generator=make_generator(
                  seed + 1, target.device)), seed + 1)}
    samples, runs = {}, {}
    for label, (x0, run_seed) in starts.items():
        bar = tqdm(total=num_steps, desc=f"{target.name} {label}", disable=not progress,
                   mininterval=5.0)

        def on_step(index: int, rate: float, bar=bar) -> None:
            bar.update()
            if index % 50 == 0:
                bar.set_postfix_str(f"acceptance {rate:.3f}")

        run = run_mala(target, x0, num_steps, make_generator(run_seed + 1000, target.device),
                       step_size, warmup_fraction, on_step)
        bar.close()
        # Evaluate exactly what is stored (float16), so the floor matches what fid_ref sees.
        samples[label] = run.samples.to(torch.float16).to(target.dtype)
        tv, share = class_coverage(samples[label], target.dataset)
        runs[label] = {"seed": run_seed, "step_size": run.step_size,
                       "acceptance_rate": run.acceptance_rate,
                       "warmup_acceptance_rate": run.warmup_acceptance_rate,
                       "seconds": run.seconds,
                       "fid_to_test_data": fid_to_data(samples[label], target.dataset),
                       "class_tv": tv, "class_max_share": share,
                       "non_finite": int((~torch.isfinite(run.samples).all(1)).sum()),
                       "pixel_range": [float(run.samples.min()), float(run.samples.max())]}
    info = {"target": target.name, "dataset": target.dataset, "n": n, "num_steps": num_steps,
            "initial_step_size": step_size, "warmup_fraction": warmup_fraction,
            "sampler": "mala (samplers/langevin.py), one chain per sample, final states kept",
            "data_start": f"test-split images, seeded subset (seed {seed})",
            "noise_start": "uniform on [0, 1]^d",
            "fid_between_runs": fid_between(samples["from_data"], samples["from_noise"],
                                            target.dataset),
            "fid_features": f"benchmark/fid/checkpoints/{target.dataset}.pt",
            "energy_sha256": energy_checksum(target), "torch_version": str(torch.__version__),
            "runs": runs}
    return samples, info


def save_reference(samples: dict[str, Tensor], info: dict, directory: Path | str) -> Path:
    """Write ``samples.pt`` (float16) and ``reference.json`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({label: x.detach().to("cpu", torch.float16).contiguous()
                for label, x in samples.items()}, directory / SAMPLES_FILE)
    (directory / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return directory


def reference_directory(target_name: str) -> Path:
    """Default directory of a target's reference: ``REFERENCE_DIR / target_name``."""
    return REFERENCE_DIR / target_name


def load_reference(target: Target, directory: Path | str | None = None,
                   run: str = "from_data") -> Tensor:
    """The stored reference samples ``(n, d)`` of ``target`` on its device and dtype.

    Raises:
        FileNotFoundError: none stored (the message gives the command that makes them).
        ValueError: they were made with a different energy checkpoint, or ``run`` is unknown.
    """
    directory = Path(directory) if directory is not None else reference_directory(target.name)
    if not (directory / SAMPLES_FILE).is_file():
        raise FileNotFoundError(f"no EBM reference samples for target '{target.name}' in "
                                f"{directory}; make them with: python -m benchmark "
                                f"ebm-reference --target {target.name} --steps K")
    info = json.loads((directory / INFO_FILE).read_text())
    if info.get("energy_sha256") != energy_checksum(target):
        raise ValueError(f"the reference in {directory} was made with another energy "
                         f"checkpoint than {target.info['path']}; rerun ebm-reference")
    stored = torch.load(directory / SAMPLES_FILE, map_location="cpu", weights_only=True)
    if run not in stored:
        raise ValueError(f"unknown reference run '{run}'; valid runs: {', '.join(stored)}")
    return stored[run].to(device=target.device, dtype=target.dtype)


def load_reference_info(target_name: str, directory: Path | str | None = None) -> dict:
    """The stored ``reference.json`` of a target (floor: ``info["fid_between_runs"]``).

    Raises:
        FileNotFoundError: none stored.
    """
    directory = Path(directory) if directory is not None else reference_directory(target_name)
    return json.loads((directory / INFO_FILE).read_text())
