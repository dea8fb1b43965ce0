"""The one training loop shared by every neural implicit sampler (DFT-NS, KL-NS, Fisher-NS).

A neural implicit sampler is a generator ``x = g_theta(z)``, ``z ~ N(0, I_{d_z})``, trained
against a target known up to its normaliser. Its own score is unknown, so an auxiliary score
network ``s_phi`` is fitted to the generator's samples by denoising score matching (DSM) at noise
level ``sigma`` (METHODS.md):

    L_DSM(phi) = E_{z, eps} || sigma * s_phi(sg[g_theta(z)] + sigma * eps) + eps ||^2,

whose minimiser is the score of the noised sampler ``p_theta * N(0, sigma^2 I)``. Each training
iteration alternates ``score_steps`` Adam steps on ``L_DSM`` with one Adam step on the
sampler-phase loss. The samplers differ *only* in that loss, given by
:meth:`NeuralImplicitSampler.surrogate`: a per-sample surrogate ``(n,)`` whose mean has the
estimator's gradient with respect to ``theta`` (its value is not the divergence).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from samplers.base import NeuralSampler, TrainingCallback, build_params
from samplers.neural.networks import ACTIVATIONS, MLP, ConvGenerator, ConvScoreNet, ResidualMLP
from targets.base import Target

#: ``score_fn(x) -> s(x)``: ``(n, dim) -> (n, dim)``, differentiable in ``x``, parameters frozen.
ScoreFunction = Callable[[Tensor], Tensor]


def check_choice(key: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raise ``ValueError`` naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"invalid value {value!r} for parameter '{key}'; "
                         f"valid choices: {', '.join(map(str, choices))}")


@dataclass(frozen=True)
class NeuralParams:
    """Hyper-parameters shared by every neural implicit sampler.

    Attributes:
        num_iterations: training budget (outer iterations) when ``train`` is given none.
        batch_size: samples per score step and per sampler step.
        sigma: DSM noise level; DFT-NS's main knob (scale it to the target's length scale).
        score_steps: ``K_phi``, DSM steps per sampler step.
        score_lr: Adam learning rate of the score network.
        sampler_lr: Adam learning rate of the generator.
        latent_dim: ``d_z``; ``None`` means the target's dimension.
        hidden_width: units per hidden layer of both networks.
        hidden_depth: hidden layers of both networks.
        activation: a key of :data:`samplers.neural.networks.ACTIVATIONS`.
        generator_architecture: ``"mlp"`` (the prototype's plain MLP, whose initial
            push-forward is a small blob near the origin), ``"residual"`` (``z + MLP(z)``
            with a zero last layer: starts exactly at ``N(0, I)``; needs ``d_z = d``) or
            ``"conv"`` (:class:`~samplers.neural.networks.ConvGenerator`, latent -> image;
            needs a target with ``image_shape``).
        score_architecture: ``"mlp"`` or ``"conv"`` (an image-shaped U-Net,
            :class:`~samplers.neural.networks.ConvScoreNet`; needs ``image_shape``).
        conv_channels: feature maps at full resolution of the convolutional networks.
        log_every: iterations between history rows (and callback calls).
    """

    num_iterations: int = 3000
    batch_size: int = 512
    sigma: float = 0.05
    score_steps: int = 2
    score_lr: float = 1e-3
    sampler_lr: float = 1e-4
    latent_dim: int | None = None
    hidden_width: int = 256
    hidden_depth: int = 3
    activation: str = "silu"
    generator_architecture: str = "mlp"
    log_every: int = 100
    # Fields added after results were stored: left out of a cell's identity at their default
    # (benchmark.cells.resolved_params), so the ids of stored cells stay valid.
    score_architecture: str = field(default="mlp", metadata={"identity": "omit_default"})
    conv_channels: int = field(default=32, metadata={"identity": "omit_default"})

    def __post_init__(self) -> None:
        for key in ("batch_size", "score_steps", "hidden_width", "hidden_depth", "log_every"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"parameter '{key}' must be a positive integer")
        if int(self.num_iterations) < 0:
            raise ValueError("parameter 'num_iterations' must be non-negative")
        if self.latent_dim is not None and int(self.latent_dim) < 1:
            raise ValueError("parameter 'latent_dim' must be a positive integer or None")
        for key in ("sigma", "score_lr", "sampler_lr"):
            value = float(getattr(self, key))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"parameter '{key}' must be a positive number")
        check_choice("activation", self.activation, tuple(sorted(ACTIVATIONS)))
        check_choice("generator_architecture", self.generator_architecture,
                     ("mlp", "residual", "conv"))
        check_choice("score_architecture", self.score_architecture, ("mlp", "conv"))
        if int(self.conv_channels) < 1:
            raise ValueError("parameter 'conv_channels' must be a positive integer")


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Stop parameter gradients of ``module`` while gradients still flow through its input."""
    flags = [parameter.requires_grad for parameter in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for parameter, flag in zip(module.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)


def _synchronize(device: torch.device) -> None:
    """Wait for queued kernels so wall-clock times are real (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class NeuralImplicitSampler(NeuralSampler):
    """Base class: the networks, the shared training loop, sampling and checkpoints.

    Subclasses set ``name``/``Params`` and implement :meth:`surrogate`; DFT-NS also overrides
    :meth:`output_noise_scale` to return its noised output.

    Attributes:
        generator_net: ``g_theta``, ``(n, d_z) -> (n, d)``; ``None`` before training.
        score_net: ``s_phi``, ``(n, d) -> (n, d)``; ``None`` before training.
        image_shape: the target's ``(C, H, W)`` when the networks are convolutional, else None.
        ledger: training cost: ``train_iterations``, ``train_seconds`` (callback time excluded),
            ``callback_seconds`` and, if the losses became non-finite, ``diverged_iteration``.
            Target NFE and HVPs are counted by the caller's ``CountingTarget``.
    """

    Params: ClassVar[type] = NeuralParams

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.generator_net: nn.Module | None = None
        self.score_net: nn.Module | None = None
        self.dim: int | None = None
        self.image_shape: tuple[int, int, int] | None = None
        self.ledger: dict[str, float] = {}

    # -- the one thing subclasses define --------------------------------------------------
    @abc.abstractmethod
    def surrogate(self, x: Tensor, noise: Tensor, target: Target, score_fn: ScoreFunction,
                  generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-sample sampler-phase surrogate; its mean has the estimator's gradient in theta.

        Args:
            x: ``(n, d)`` generator output ``g_theta(z)``, still carrying the generator graph.
            noise: ``(n, d)`` standard normal ``eps`` (used by samplers that noise ``x``).
            target: the target, evaluated only through this object.
            score_fn: the frozen sampler score (``s_phi``, or an exact score in tests).
            generator: randomness for stochastic estimators (Hutchinson probes).

        Returns:
            ``(n,)`` surrogate values and per-sample monitors ``{name: (n,)}``, all detached
            except the surrogate. Never averaged here: callers weight samples themselves.
        """

    def output_noise_scale(self) -> float:
        """Standard deviation of Gaussian noise added to generator outputs by :meth:`sample`."""
        return 0.0

    # -- networks -------------------------------------------------------------------------
    def build_networks(self, dim: int, device: torch.device, dtype: torch.dtype,
                       generator: torch.Generator,
                       image_shape: tuple[int, int, int] | None = None) -> None:
        """Create both networks for dimension ``dim``, weights drawn from ``generator``.

        One integer drawn from ``generator`` seeds a CPU generator for the weights, so the
        same generator state gives the same networks on any device. ``image_shape``
        ``(C, H, W)`` (with ``C·H·W = dim``) is needed by the ``"conv"`` architectures.

        Raises:
            ValueError: a ``"conv"`` architecture without an image shape.
        """
        seed = int(torch.randint(0, 2**62, (1,), generator=generator,
                                 device=generator.device).item())
        init_generator = torch.Generator().manual_seed(seed)
        params = self.params
        latent_dim = int(params.latent_dim or dim)
        common = dict(width=params.hidden_width, depth=params.hidden_depth,
                      activation=params.activation, device=device, dtype=dtype,
                      init_generator=init_generator)
        self.dim = int(dim)
        wants_conv = "conv" in (params.generator_architecture, params.score_architecture)
        if wants_conv and image_shape is None:
            raise ValueError("a 'conv' generator_architecture or score_architecture needs a "
                             "target with an image_shape (C, H, W); this target has none")
        if wants_conv and math.prod(image_shape) != int(dim):
            raise ValueError(f"image_shape {tuple(image_shape)} does not match dim {dim}")
        self.image_shape = tuple(int(v) for v in image_shape) if wants_conv else None
        conv = dict(channels=params.conv_channels, activation=params.activation, device=device,
                    dtype=dtype, init_generator=init_generator)
        if params.generator_architecture == "conv":
            self.generator_net = ConvGenerator(latent_dim, self.image_shape, **conv)
        else:
            architecture = ResidualMLP if params.generator_architecture == "residual" else MLP
            self.generator_net = architecture(latent_dim, dim, **common)
        if params.score_architecture == "conv":
            self.score_net = ConvScoreNet(self.image_shape, output_scale=1.0 / params.sigma,
                                          **conv)
        else:
            self.score_net = MLP(dim, dim, **common)

    @property
    def latent_dim(self) -> int:
        self._require_networks()
        if isinstance(self.generator_net, ConvGenerator):
            return self.generator_net.latent_dim
        return int(self.generator_net.layers[0].in_features)

    def _require_networks(self) -> None:
        if self.generator_net is None or self.score_net is None:
            raise RuntimeError(f"sampler '{self.name}' has no networks yet: call train() "
                               "(num_iterations=0 builds them untrained) or load() first")

    def _draw(self, n: int, width: int, generator: torch.Generator) -> Tensor:
        reference = next(self.generator_net.parameters())
        return torch.randn(n, width, generator=generator, device=reference.device,
                           dtype=reference.dtype)

    # -- training -------------------------------------------------------------------------
    def dsm_loss(self, x: Tensor, noise: Tensor) -> Tensor:
        """``L_DSM`` on detached samples ``x`` ``(n, d)`` with noise ``(n, d)``; a scalar."""
        sigma = self.params.sigma
        residual = sigma * self.score_net(x.detach() + sigma * noise) + noise
        return residual.square().sum(dim=-1).mean()

    def train(self, target: Target, num_iterations: int | None = None,
              generator: torch.Generator | None = None,
              callback: TrainingCallback | None = None, progress: bool = False) -> list[dict]:
        """Build fresh networks on the target's device/dtype and train them.

        Args:
            target: the target (wrap it in ``CountingTarget`` to count NFE and HVPs).
            num_iterations: outer iterations; ``None`` uses ``params.num_iterations``; ``0``
                only builds the (untrained) networks.
            generator: the only source of randomness (weights, latents, noise, probes).
            callback: ``callback(iteration, sampler) -> {metric: value}``, called every
                ``log_every`` iterations; its time is excluded from ``train_seconds``.
            progress: show a tqdm bar (only on an interactive terminal).

        Returns:
            History rows ``{"iteration": i, "metric": name, "value": float}``: at every
            ``log_every``-th and at the last iteration, ``dsm_loss`` and each monitor averaged
            over the iterations since the previous row, plus the callback's metrics.
        """
        if generator is None:
            raise ValueError("train() needs a torch.Generator on the target's device")
        params = self.params
        num_iterations = params.num_iterations if num_iterations is None else int(num_iterations)
        device = torch.device(target.device)
        self.build_networks(target.dim, device, target.dtype, generator,
                            image_shape=getattr(target, "image_shape", None))
        score_optimizer = torch.optim.Adam(self.score_net.parameters(), lr=params.score_lr)
        sampler_optimizer = torch.optim.Adam(self.generator_net.parameters(),
                                             lr=params.sampler_lr)
        n, dim, latent_dim = params.batch_size, self.dim, self.latent_dim
        history: list[dict] = []
        sums: dict[str, Tensor] = {}
        window = 0
        callback_seconds = 0.0
        self.ledger = {"train_iterations": 0, "train_seconds": 0.0, "callback_seconds": 0.0}
        bar = tqdm(range(num_iterations), desc=f"train {self.name}", leave=False,
                   disable=not (progress and sys.stderr.isatty()))
        _synchronize(device)
        start = time.perf_counter()
        for index in bar:
            for _ in range(params.score_steps):
                with torch.no_grad():
                    x = self.generator_net(self._draw(n, latent_dim, generator))
                loss = self.dsm_loss(x, self._draw(n, dim, generator))
                score_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                score_optimizer.step()
            monitors = {"dsm_loss": loss.detach()}
            x = self.generator_net(self._draw(n, latent_dim, generator))
            noise = self._draw(n, dim, generator)
            with frozen(self.score_net) as score_net:
                per_sample, extra = self.surrogate(x, noise, target, score_net,
                                                   generator=generator)
            sampler_optimizer.zero_grad(set_to_none=True)
            per_sample.mean().backward()
            sampler_optimizer.step()
            # Accumulate on the device; only logging iterations synchronise (.item()).
            monitors.update({key: value.detach().mean() for key, value in extra.items()})
            for key, value in monitors.items():
                sums[key] = sums[key] + value if key in sums else value
            window += 1
            iteration = index + 1
            if iteration % params.log_every == 0 or iteration == num_iterations:
                values = {key: float(total.item()) / window for key, total in sums.items()}
                sums, window = {}, 0
                if callback is not None:
                    tick = time.perf_counter()
                    values.update({key: float(value)
                                   for key, value in callback(iteration, self).items()})
                    callback_seconds += time.perf_counter() - tick
                history.extend({"iteration": iteration, "metric": key, "value": value}
                               for key, value in values.items())
                bar.set_postfix(dsm_loss=f"{values['dsm_loss']:.3g}", refresh=False)
                self.ledger["train_iterations"] = iteration
                if not all(math.isfinite(values[key]) for key in monitors):
                    # Training has diverged; further steps only propagate NaNs. The harness
                    # sees non-finite samples and records the cell as diverged.
                    self.ledger["diverged_iteration"] = iteration
                    break
        _synchronize(device)
        self.ledger["train_seconds"] = time.perf_counter() - start - callback_seconds
        self.ledger["callback_seconds"] = callback_seconds
        return history

    # -- sampling -------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, d)`` samples from one generator pass (plus noise if the output is noised).

        Draws ``z`` ``(n, d_z)`` then, for a noised output, ``eps`` ``(n, d)`` from
        ``generator``; evaluates no target.
        """
        self._require_networks()
        x = self.generator_net(self._draw(int(n), self.latent_dim, generator))
        scale = self.output_noise_scale()
        if scale > 0:
            x = x + scale * self._draw(int(n), self.dim, generator)
        return x

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Name, parameters, dimensions, both networks' weights and the ledger."""
        self._require_networks()
        return {
            "name": self.name,
            "params": dataclasses.asdict(self.params),
            "dim": self.dim,
            "latent_dim": self.latent_dim,
            "image_shape": self.image_shape,
            "generator_net": self.generator_net.state_dict(),
            "score_net": self.score_net.state_dict(),
            "ledger": dict(self.ledger),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the stored parameters replace ``self.params``.

        The networks are rebuilt on the device and dtype of the stored weights.
        """
        if state.get("name") != self.name:
            raise ValueError(f"checkpoint is for sampler '{state.get('name')}', "
                             f"not '{self.name}'")
        self.params = build_params(self.Params, self.name, state["params"])
        weight = next(iter(state["generator_net"].values()))
        # Weights are overwritten just below, so the init generator's draw does not matter.
        self.build_networks(int(state["dim"]), weight.device, weight.dtype,
                            torch.Generator(device=weight.device),
                            image_shape=state.get("image_shape"))
        self.generator_net.load_state_dict(state["generator_net"])
        self.score_net.load_state_dict(state["score_net"])
        self.ledger = dict(state.get("ledger", {}))

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` with ``torch.save``."""
        torch.save(self.state_dict(), Path(path))

    def load(self, path: str | Path, map_location: torch.device | str | None = None) -> None:
        """Read a checkpoint written by :meth:`save` (``weights_only=True``) into this sampler."""
        state = torch.load(Path(path), map_location=map_location, weights_only=True)
        self.load_state_dict(state)
