"""Multi-scale denoising score matching (MDSM): the loss and the training loop
(docs/targets.md#mdsm-training).

Per batch, slot ``i`` gets noise level ``σ_i`` from a fixed log-spaced grid over
``[σ_min, σ_max] = [0.1, 3.0]`` (one level per slot), ``x̃ = x + σ_i ε`` and

    L = mean_i ‖ (x_i − x̃_i)/σ₀² + ∇ₓE(x̃_i) ‖² / σ_i²,     σ₀ = 0.1.

Why: ``(x − x̃)/σ₀²`` is the denoising-score-matching target at the *fixed* scale σ₀, so the
energy learns one density (the data smoothed at σ₀) from noisy points spread over many scales;
dividing by ``σ_i²`` makes every level contribute ``‖ε‖²/σ₀⁴``-sized terms, so the large-σ slots
do not dominate. Optimiser: Adam, ``β = (0.9, 0.95)``, ``lr = 1e-4`` with cosine decay to 0.

Checkpoints are plain dicts of tensors and plain Python values, so ``torch.load(path,
weights_only=True)`` reads them; see :func:`load_checkpoint`.

References:
    Li, Chen & Sommer (2019), "Learning energy-based models in high-dimensional spaces with
    multi-scale denoising score matching", arXiv:1910.07762.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from targets.base import make_generator
from targets.ebm.networks import ResQuadraticEnergy, architecture_for, build_energy

#: Format tag of the checkpoints this module writes.
CHECKPOINT_FORMAT = "sampler-bench-ebm/1"


def sigma_grid(batch_size: int, sigma_min: float = 0.1, sigma_max: float = 3.0,
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """The fixed per-slot noise levels: ``(batch_size,)`` log-spaced over ``[σ_min, σ_max]``."""
    if batch_size == 1:  # one slot: the geometric midpoint, so both ends are not favoured
        return torch.full((1,), math.sqrt(sigma_min * sigma_max), device=device, dtype=dtype)
    exponents = torch.linspace(math.log(sigma_min), math.log(sigma_max), batch_size,
                               dtype=torch.float64)
    return exponents.exp().to(device=device, dtype=dtype)


def mdsm_loss(energy: Callable[[Tensor], Tensor], x: Tensor, noise: Tensor, sigmas: Tensor,
              sigma0: float = 0.1) -> Tensor:
    """The MDSM loss of one batch (differentiable in the energy's parameters).

    Args:
        energy: ``(n, *shape) -> (n,)`` energies.
        x: clean images ``(n, *shape)``.
        noise: standard normal ``ε`` of the same shape.
        sigmas: ``(n,)`` noise level of each slot.
        sigma0: the scale whose smoothed density the energy learns.

    Returns:
        Scalar ``mean_i ‖(x_i − x̃_i)/σ₀² + ∇E(x̃_i)‖² / σ_i²``.
    """
    sigma = sigmas.reshape(-1, *([1] * (x.dim() - 1)))
    noisy = (x + sigma * noise).requires_grad_(True)
    # create_graph: the loss contains ∇ₓE, and training differentiates it in the parameters.
    (grad,) = torch.autograd.grad(energy(noisy).sum(), noisy, create_graph=True)
    residual = (x - noisy) / sigma0**2 + grad
    return (residual.flatten(1).square().sum(1) / sigmas.square()).mean()


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines an MDSM training run (stored in the checkpoint).

    Attributes:
        dataset: registry name of the image dataset (its training split is used).
        width: base width ``C`` of the energy.
        iterations: optimiser steps.
        batch_size: images per step (= number of noise levels on the grid).
        seed: seeds the initialisation, the minibatches and the noise.
        architecture: energy architecture; ``None`` picks the one for the image size.
        lr: peak learning rate (cosine-decayed to 0 over ``iterations``).
        sigma_min: smallest noise level.
        sigma_max: largest noise level.
        sigma0: the target smoothing scale.
        checkpoint_every: save a partial checkpoint every this many steps (0: only at the end).
        log_every: steps between loss lines in the log.
    """

    dataset: str
    width: int
    iterations: int
    batch_size: int
    seed: int = 0
    architecture: str | None = None
    lr: float = 1e-4
    sigma_min: float = 0.1
    sigma_max: float = 3.0
    sigma0: float = 0.1
    checkpoint_every: int = 1000
    log_every: int = 100


def _build_seeded(architecture: str, width: int, channels: int, seed: int) -> ResQuadraticEnergy:
    """Build the energy with PyTorch's default init drawn from ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_energy(architecture, width, channels)


def save_checkpoint(checkpoint: dict, path: Path | str) -> None:
    """Write atomically (temporary file + rename), so a reader never sees half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    torch.save(checkpoint, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path | str, map_location: torch.device | str = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True`` (no code execution on load)."""
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"'{path}' is not an EBM checkpoint (format "
                         f"{checkpoint.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
    return checkpoint


def energy_from_checkpoint(checkpoint: dict) -> ResQuadraticEnergy:
    """Rebuild the energy network of a checkpoint (on CPU, float32, in eval mode)."""
    shape = checkpoint["image_shape"]
    energy = build_energy(checkpoint["architecture"], checkpoint["width"], shape[0])
    energy.load_state_dict(checkpoint["state_dict"])
    return energy.eval()


def train_energy(config: TrainConfig, out: Path | str | None = None, command: str = "",
                 device: torch.device | str = "cpu", progress: bool | None = None,
                 resume: bool = False, stop_after: int | None = None) -> dict:
    """Train an energy with MDSM on a dataset's training split; return (and save) the checkpoint.

    Args:
        config: the run's settings.
        out: checkpoint path (written every ``config.checkpoint_every`` steps and at the end);
            ``None`` keeps it in memory only.
        command: the exact command line, recorded for provenance.
        device: where to train.
        progress: show a tqdm bar (``None``: only on a terminal).
        resume: continue from the partial checkpoint at ``out`` (written by an interrupted or
            ``stop_after`` run of the same ``config``): weights, optimiser and schedule state,
            the random generator's state and the loss history are restored, so the finished
            run is bit for bit the uninterrupted one (same device and thread count). Without
            a checkpoint at ``out`` it starts from scratch.
        stop_after: end after this many steps in all (``None``: ``config.iterations``) and
            write a partial checkpoint to resume from — a long training in slices.

    Raises:
        ValueError: bad sizes, or a checkpoint to resume from that is complete, has no resume
            state, or was made with another configuration.

    Returns:
        The checkpoint dict (see module docstring; ``final_loss`` is the mean loss of the last
        ``min(log_every, iterations)`` steps, since one step's loss is a one-batch estimate).
    """
    from targets.datasets import load_dataset

    if config.iterations < 1 or config.batch_size < 1:
        raise ValueError(f"iterations and batch_size must be >= 1, got {config.iterations} and "
                         f"{config.batch_size}")
    device = torch.device(device)
    data = load_dataset(config.dataset).x_train.to(device)
    channels, height, width_pixels = data.shape[1:]
    if height != width_pixels:
        raise ValueError(f"dataset '{config.dataset}' has non-square images "
                         f"{tuple(data.shape[1:])}")
    architecture = config.architecture or architecture_for(height)
    energy = _build_seeded(architecture, config.width, channels, config.seed).to(device)
    optimiser = torch.optim.Adam(energy.parameters(), lr=config.lr, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.iterations)
    sigmas = sigma_grid(config.batch_size, config.sigma_min, config.sigma_max, device)
    generator = make_generator(config.seed, device)

    base = {"format": CHECKPOINT_FORMAT, **asdict(config), "architecture": architecture,
            "image_shape": [int(channels), int(height), int(width_pixels)],
            "betas": [0.9, 0.95], "num_parameters": sum(p.numel() for p in energy.parameters()),
            "command": command, "torch_version": str(torch.__version__),
            "device": str(device), "num_threads": torch.get_num_threads(),
            "machine": platform.machine()}
    history: list[list[float]] = []  # [iteration, mean loss over the preceding window]
    window: list[float] = []
    done, earlier_seconds = 0, 0.0
    if resume and out is not None and Path(out).exists():
        stored = load_checkpoint(out, map_location=device)
        _check_resumable(stored, {key: base[key] for key in asdict(config)}, out)
        energy.load_state_dict(stored["state_dict"])
        state = stored["resume"]
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"].cpu())  # generator states live on the CPU
        history, window = stored["loss_history"], list(state["window"])
        done, earlier_seconds = int(stored["iterations_done"]), float(stored["wall_seconds"])
    last = config.iterations if stop_after is None else min(int(stop_after), config.iterations)
    start = time.perf_counter()

    def checkpoint(step: int) -> dict:
        # The loss of the current window; right after a log line, that of the logged one.
        recent = window or ([history[-1][1]] if history else [math.nan])
        result = {**base, "state_dict": {k: v.detach().cpu().clone()
                                         for k, v in energy.state_dict().items()},
                  "iterations_done": step, "complete": step == config.iterations,
                  "final_loss": float(sum(recent) / len(recent)), "loss_history": history,
                  "wall_seconds": earlier_seconds + time.perf_counter() - start}
        if step < config.iterations:  # what a resumed run needs (the shipped file stays small)
            result["resume"] = {"optimiser": optimiser.state_dict(),
                                "schedule": schedule.state_dict(),
                                "generator": generator.get_state(), "window": list(window)}
        return result

    bar = tqdm(range(done + 1, last + 1), desc=f"mdsm {config.dataset}", unit="it",
               disable=None if progress is None else not progress, mininterval=5.0)
    for step in bar:
        index = torch.randint(data.shape[0], (config.batch_size,), generator=generator,
                              device=device)
        x = data[index]
        noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
        loss = mdsm_loss(energy, x, noise, sigmas, config.sigma0)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        window.append(float(loss.detach()))
        if step % config.log_every == 0 or step == config.iterations:
            history.append([step, sum(window) / len(window)])
            tqdm.write(f"step {step}/{config.iterations} loss {history[-1][1]:.6g} "
                       f"({time.perf_counter() - start:.0f} s)")
            if step != config.iterations:
                window = []
        if out is not None and config.checkpoint_every and step % config.checkpoint_every == 0:
            save_checkpoint(checkpoint(step), out)
    bar.close()
    result = checkpoint(max(last, done))
    if out is not None:
        save_checkpoint(result, out)
    return result


def _check_resumable(stored: dict, expected: dict, path: Path | str) -> None:
    """Raise ``ValueError`` unless ``stored`` is a partial checkpoint of the run whose settings
    (:class:`TrainConfig` fields, architecture resolved) are ``expected``."""
    if stored.get("complete") or "resume" not in stored:
        raise ValueError(f"'{path}' is a finished checkpoint (or has no resume state); "
                         "nothing to resume: choose another --out")
    different = [key for key, value in expected.items()
                 if key not in ("checkpoint_every", "log_every") and stored.get(key) != value]
    if different:
        key = different[0]
        raise ValueError(f"cannot resume '{path}': it was trained with {key} = "
                         f"{stored.get(key)!r}, this run has {expected[key]!r}")


__all__ = ["CHECKPOINT_FORMAT", "TrainConfig", "energy_from_checkpoint", "load_checkpoint",
           "mdsm_loss", "save_checkpoint", "sigma_grid", "train_energy"]
