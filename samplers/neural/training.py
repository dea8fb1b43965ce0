"""The training step shared by every neural implicit sampler (DFT-NS, KL-NS, Fisher-NS).

A neural implicit sampler is a generator ``x = g_theta(z)``, ``z ~ N(0, I_{d_z})``, trained
against a target known up to its normaliser. Its own score is unknown, so an auxiliary score
network ``s_phi`` is fitted to the generator's samples by denoising score matching (DSM) at noise
level ``sigma`` (docs/methods.md#score-network):

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from samplers.base import NeuralSampler, TrainingState, build_params
from samplers.neural.monitor import PlateauRule, imq_ksd
from samplers.neural.networks import (
    ACTIVATIONS,
    MLP,
    ConvGenerator,
    ConvScoreNet,
    ResidualMLP,
    swapped_weights,
)
from targets.base import Target

#: ``sigma`` on a target that declares no ``length_scale`` (the CPU prototype's 2-D value).
FALLBACK_SIGMA = 0.05

#: ``hidden_width = None`` means :func:`default_width`: 256 up to d = 64, then four units per
#: coordinate (so the first layer never narrows below that), up to MAX_WIDTH.
MIN_WIDTH = 256
WIDTH_PER_DIM = 4
#: The cap is set by cost, not quality. At d = 1024 (the 32 × 32 image targets) four units per
#: coordinate means 4,096-unit layers, ~42M parameters per network: one DFT-NS iteration at
#: batch 128 took 5.1 s on one CPU thread against 0.92 s at 1,024 units (``mfa_mnist``, loaded
#: 2-core machine), i.e. ~4 h per 3,000-iteration training. 1,024 keeps one unit per
#: coordinate there, and changes no target below d = 257.
MAX_WIDTH = 1024


def default_width(dim: int) -> int:
    """Hidden width of both networks when ``hidden_width`` is ``None``: ``clip(4 d, 256, 1024)``."""
    return min(MAX_WIDTH, max(MIN_WIDTH, WIDTH_PER_DIM * int(dim)))

#: Draws of the initial law that set a residual generator's starting moments (error ~1%).
INITIAL_LAW_DRAWS = 8192

#: ``score_fn(x) -> s(x)``: ``(n, dim) -> (n, dim)``, differentiable in ``x``, parameters frozen.
ScoreFunction = Callable[[Tensor], Tensor]


def check_choice(key: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raise ``ValueError`` naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"invalid value {value!r} for parameter '{key}'; "
                         f"valid choices: {', '.join(map(str, choices))}")


@dataclass(frozen=True)
class NeuralParams:
    """Hyper-parameters shared by every neural implicit sampler, and why each default.

    The defaults are one configuration for every target family, chosen by the protocol of
    ``docs/tuning.md`` on seed 100 (disjoint from the reported seeds): the single trials listed
    there, then the recorded round ``results/tuning-2d``. Figures quoted are energy distance /
    its floor at n = 1000 on 2-D targets, DFT-NS, one training, unless said otherwise.

    Attributes:
        num_iterations: the *maximum* number of outer iterations; training usually ends
            earlier, by the plateau rule (``monitor_every`` ... ``max_lr_decays``). 10,000: the
            rule stopped every 2-D DFT-NS run of the tuning round between 5,000 and 7,750.
        batch_size: samples per score step and per sampler step. 512; 2,048 lowered the donut
            from 24x to 15x its floor but not mog8 (22x -> 33x) at 4x the cost per iteration,
            so it stays an option for a matrix to pay for.
        sigma: DSM noise level. ``None`` (default): ``sigma_fraction × target.length_scale``,
            or :data:`FALLBACK_SIGMA` for a target that declares no length scale.
        sigma_fraction: ``sigma`` as a fraction of the target's narrowest length scale. At
            the optimum DFT-NS's clean samples are ``q`` deconvolved by ``N(0, sigma²)``, which
            exists only while ``sigma`` is below every local s.d. of ``q``; its gradient noise
            grows like ``1/sigma`` (the ``eps/sigma`` term), so ``sigma`` should be as large as
            that allows. 0.4: mog8 at sigma 0.2 (0.4 × 0.5) reached 22x against 67x at the old
            0.05; mog2 at 0.4 reached 4.8x (with the score warm start). On an EBM the length
            scale is the energy's own smoothing ``sigma_0``, so ``sigma`` stays below it.
        score_steps: ``K_phi``, DSM steps per sampler step (2, the prototype's; the ablation
            ``results/ablation-dft`` found no better value).
        score_lr: Adam learning rate of the score network (1e-3).
        sampler_lr: Adam learning rate of the generator. 1e-4: with warm-up and the plateau
            rule, 3e-4 and 1e-3 left the donut at 69x and 149x (against 26x) and mog8 at 396x.
        latent_dim: ``d_z``; ``None`` means the target's dimension (a residual generator needs
            ``d_z = d``).
        hidden_width: units per hidden layer of both networks; ``None`` means
            :func:`default_width`, ``clip(4 d, 256, 1024)``: 256 up to d = 64, then four
            units per coordinate, capped at 1,024 for cost (the 32 × 32 image targets; see
            ``MAX_WIDTH``).
        hidden_depth: hidden layers of both networks (3).
        activation: a key of :data:`samplers.neural.networks.ACTIVATIONS` (SiLU: smooth, as
            the input derivatives of the score network require).
        generator_architecture: ``"residual"`` (default; ``b + a ⊙ (z + MLP(z))`` with a zero
            last layer, starting at the moments of the law iterative samplers start from,
            :class:`~samplers.neural.networks.ResidualMLP`), ``"mlp"`` (the prototype's plain
            MLP, whose initial push-forward is a blob of s.d. ≈ 0.05 at the origin: DFT-NS then
            kept one arc of the donut, 2.25 vs 0.0098 in ``paper-2d``) or ``"conv"``
            (:class:`~samplers.neural.networks.ConvGenerator`, latent -> image). On the 64-pixel
            digits EBM the residual generator with an MLP score network also beat the
            convolutional pair (``results/tuning-ebm``, FID against the EBM reference: DFT-NS
            86 vs 251, KL-NS 8.4 vs 73, at 2-3x less training time), so ``paper-ebm`` uses it.
        score_architecture: ``"mlp"`` or ``"conv"`` (an image-shaped U-Net,
            :class:`~samplers.neural.networks.ConvScoreNet`; needs ``image_shape``).
        conv_channels: feature maps at full resolution of the convolutional networks.
        log_every: iterations between history rows (and callback calls).
        warmup_iterations: linear learning-rate warm-up of both networks (200), so the first
            steps, taken against a barely fitted score network, stay small.
        ema_decay: exponential moving average of the generator weights (0.995, a window of
            ~200 iterations); the averaged weights are the trained sampler and what the
            monitor and callbacks see. DFT-NS's gradient is noisy (the ``eps/sigma`` term), and
            averaging the iterates removes part of that noise at no cost; 0 disables it.
        monitor_every: iterations between checks of the held-out monitor
            (:mod:`samplers.neural.monitor`: IMQ KSD on a fixed batch; its target evaluations
            count in the training NFE); 0 disables the monitor and the plateau rule.
        monitor_batch: held-out points per check (512).
        patience: checks without a 2% improvement that make a plateau (4, i.e. 1,000
            iterations).
        lr_decay_factor: learning-rate multiplier at a plateau (0.3).
        max_lr_decays: plateaus that decay the learning rates before the next one ends
            training (2).
        score_warmup: DSM steps on the initial generator before its first step (500), so the
            first sampler gradients — which decide where mass first flows, and so the mode
            weights the Fisher objective can hardly correct later — use a fitted score:
            mog2 went from 32x to 4.8x its floor (same seed and sigma).
    """

    num_iterations: int = 10000
    batch_size: int = 512
    sigma: float | None = None
    score_steps: int = 2
    score_lr: float = 1e-3
    sampler_lr: float = 1e-4
    latent_dim: int | None = None
    hidden_width: int | None = None
    hidden_depth: int = 3
    activation: str = "silu"
    generator_architecture: str = "residual"
    log_every: int = 100
    score_architecture: str = "mlp"
    conv_channels: int = 32
    warmup_iterations: int = 200
    ema_decay: float = 0.995
    monitor_every: int = 250
    monitor_batch: int = 512
    patience: int = 4
    lr_decay_factor: float = 0.3
    max_lr_decays: int = 2
    sigma_fraction: float = 0.4
    score_warmup: int = 500

    def __post_init__(self) -> None:
        for key in ("batch_size", "score_steps", "hidden_width", "hidden_depth", "log_every",
                    "monitor_batch", "patience"):
            if key == "hidden_width" and self.hidden_width is None:
                continue
            if int(getattr(self, key)) < 1:
                raise ValueError(f"parameter '{key}' must be a positive integer")
        for key in ("num_iterations", "warmup_iterations", "monitor_every", "max_lr_decays",
                    "score_warmup"):
            if int(getattr(self, key)) < 0:
                raise ValueError(f"parameter '{key}' must be a non-negative integer")
        for key in ("ema_decay", "lr_decay_factor"):
            value = float(getattr(self, key))
            if not 0.0 <= value < 1.0:
                raise ValueError(f"parameter '{key}' must be in [0, 1), got {value}")
        if self.latent_dim is not None and int(self.latent_dim) < 1:
            raise ValueError("parameter 'latent_dim' must be a positive integer or None")
        for key in ("sigma", "score_lr", "sampler_lr", "sigma_fraction"):
            if getattr(self, key) is None and key == "sigma":
                continue
            value = float(getattr(self, key))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"parameter '{key}' must be a positive number")
        check_choice("activation", self.activation, tuple(sorted(ACTIVATIONS)))
        check_choice("generator_architecture", self.generator_architecture,
                     ("mlp", "residual", "conv"))
        check_choice("score_architecture", self.score_architecture, ("mlp", "conv"))
        if int(self.conv_channels) < 1:
            raise ValueError("parameter 'conv_channels' must be a positive integer")


def resolve_sigma(params: NeuralParams, length_scale: float | None) -> float:
    """The DSM noise level: ``params.sigma`` if set, else ``sigma_fraction × length_scale``.

    Targets without a declared length scale get :data:`FALLBACK_SIGMA`.
    """
    if params.sigma is not None:
        return float(params.sigma)
    if length_scale is None or not math.isfinite(float(length_scale)) or length_scale <= 0:
        return FALLBACK_SIGMA
    return float(params.sigma_fraction) * float(length_scale)


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


@dataclass(kw_only=True)
class ImplicitTrainingState(TrainingState):
    """Training state of a neural implicit sampler.

    Attributes:
        score_optimizer, sampler_optimizer: Adam over ``s_phi`` and ``g_theta``.
        ema: the moving average of the generator weights (``None`` without EMA).
        held_out: fixed ``(latents (m, d_z), noise (m, d))`` of the monitor, or ``None``.
        rule: the plateau rule reading the monitor.
        lr_scale: the product of the learning-rate decays so far.
    """

    score_optimizer: torch.optim.Optimizer
    sampler_optimizer: torch.optim.Optimizer
    ema: list[Tensor] | None
    held_out: tuple[Tensor, Tensor] | None
    rule: PlateauRule
    lr_scale: float = 1.0


class NeuralImplicitSampler(NeuralSampler):
    """Base class: the networks, the shared training step, sampling and checkpoints.

    Subclasses set ``name``/``Params`` and implement :meth:`surrogate`; DFT-NS also overrides
    :meth:`output_noise_scale` to return its noised output.

    Attributes:
        generator_net: ``g_theta``, ``(n, d_z) -> (n, d)``; ``None`` before training.
        score_net: ``s_phi``, ``(n, d) -> (n, d)``; ``None`` before training.
        image_shape: the target's ``(C, H, W)`` when the networks are convolutional, else None.
        ledger: see :class:`~samplers.base.NeuralSampler`; adds ``lr_decays``.
    """

    Params: ClassVar[type] = NeuralParams

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.generator_net: nn.Module | None = None
        self.score_net: nn.Module | None = None
        self.dim: int | None = None
        self.image_shape: tuple[int, int, int] | None = None
        # None until build_networks resolves it against the target (resolve_sigma).
        self.sigma: float | None = None if self.params.sigma is None else float(self.params.sigma)

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
                       image_shape: tuple[int, int, int] | None = None,
                       initial_law: Tensor | None = None,
                       length_scale: float | None = None, sigma: float | None = None) -> None:
        """Create both networks for dimension ``dim``, weights drawn from ``generator``.

        One integer drawn from ``generator`` seeds a CPU generator for the weights, so the
        same generator state gives the same networks on any device. ``image_shape``
        ``(C, H, W)`` (with ``C·H·W = dim``) is needed by the ``"conv"`` architectures.
        ``initial_law`` ``(m, dim)``, draws from the law iterative samplers start from
        (``target.initial_positions``), sets a residual generator's output affine map to
        their mean and standard deviation, so its initial push-forward has those moments.
        ``length_scale`` (``target.length_scale``) sets ``sigma`` when the parameters leave
        it ``None`` (:func:`resolve_sigma`); ``sigma`` (a restored checkpoint's) overrides both.

        Raises:
            ValueError: a ``"conv"`` architecture without an image shape.
        """
        seed = int(torch.randint(0, 2**62, (1,), generator=generator,
                                 device=generator.device).item())
        init_generator = torch.Generator().manual_seed(seed)
        params = self.params
        latent_dim = int(params.latent_dim or dim)
        width = params.hidden_width or default_width(dim)
        common = dict(width=width, depth=params.hidden_depth,
                      activation=params.activation, device=device, dtype=dtype,
                      init_generator=init_generator)
        self.dim = int(dim)
        self.sigma = float(sigma) if sigma is not None else resolve_sigma(params, length_scale)
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
            if isinstance(self.generator_net, ResidualMLP) and initial_law is not None:
                self.generator_net.match_moments(initial_law)
        if params.score_architecture == "conv":
            self.score_net = ConvScoreNet(self.image_shape, output_scale=1.0 / self.sigma,
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
        sigma = self.sigma
        residual = sigma * self.score_net(x.detach() + sigma * noise) + noise
        return residual.square().sum(dim=-1).mean()

    def init_training(self, target: Target, num_iterations: int,
                      generator: torch.Generator) -> ImplicitTrainingState:
        """Fresh networks on the target's device/dtype, both optimisers, the EMA copy and the
        held-out monitor batch (see :class:`NeuralParams` for every setting)."""
        params = self.params
        # Only a residual generator reads the initial law, so other architectures draw exactly
        # the random numbers they drew before it existed (old configurations reproduce).
        initial_law = (target.initial_positions(INITIAL_LAW_DRAWS, generator)
                       if params.generator_architecture == "residual" else None)
        self.build_networks(target.dim, torch.device(target.device), target.dtype, generator,
                            image_shape=target.image_shape,
                            initial_law=initial_law,
                            length_scale=target.length_scale)
        score_optimizer = torch.optim.Adam(self.score_net.parameters(), lr=params.score_lr)
        sampler_optimizer = torch.optim.Adam(self.generator_net.parameters(),
                                             lr=params.sampler_lr)
        ema = ([p.detach().clone() for p in self.generator_net.parameters()]
               if params.ema_decay > 0 else None)
        held_out = None
        if params.monitor_every > 0:  # drawn once: the monitor moves only with the weights
            held_out = (self._draw(params.monitor_batch, self.latent_dim, generator),
                        self._draw(params.monitor_batch, self.dim, generator))
        rule = PlateauRule(patience=params.patience, decay_factor=params.lr_decay_factor,
                           max_decays=params.max_lr_decays)
        return ImplicitTrainingState(num_iterations=int(num_iterations),
                                     score_optimizer=score_optimizer,
                                     sampler_optimizer=sampler_optimizer, ema=ema,
                                     held_out=held_out, rule=rule)

    def train_step(self, target: Target, state: ImplicitTrainingState,
                   generator: torch.Generator) -> tuple[ImplicitTrainingState, dict[str, Tensor]]:
        """One outer iteration: ``score_steps`` DSM steps, one sampler step, the EMA update
        and, every ``monitor_every`` iterations, the held-out check of the plateau rule.

        The first iteration starts with ``score_warmup`` DSM steps on the initial generator,
        so the first sampler gradients (which decide where mass first flows) use a fitted
        score.
        """
        params = self.params
        n, dim, latent_dim = params.batch_size, self.dim, self.latent_dim
        if state.iteration == 0:
            for _ in range(params.score_warmup):
                self._score_step(state.score_optimizer, n, latent_dim, dim, generator)
        # Linear warm-up of both learning rates, times the plateau rule's decays.
        warm = (min(1.0, (state.iteration + 1) / params.warmup_iterations)
                if params.warmup_iterations else 1.0)
        for optimizer, base in ((state.score_optimizer, params.score_lr),
                                (state.sampler_optimizer, params.sampler_lr)):
            for group in optimizer.param_groups:
                group["lr"] = base * warm * state.lr_scale
        for _ in range(params.score_steps):
            loss = self._score_step(state.score_optimizer, n, latent_dim, dim, generator)
        losses = {"dsm_loss": loss}
        x = self.generator_net(self._draw(n, latent_dim, generator))
        noise = self._draw(n, dim, generator)
        with frozen(self.score_net) as score_net:
            per_sample, extra = self.surrogate(x, noise, target, score_net, generator=generator)
        state.sampler_optimizer.zero_grad(set_to_none=True)
        per_sample.mean().backward()
        state.sampler_optimizer.step()
        if state.ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(state.ema, list(self.generator_net.parameters()),
                                     1.0 - params.ema_decay)
        losses.update({key: value.detach().mean() for key, value in extra.items()})
        state.iteration += 1
        state.checks = {}
        if state.held_out is not None and state.iteration % params.monitor_every == 0:
            with self.sampling_weights(state):
                value = self._monitor(target, *state.held_out)
            state.checks = {"monitor_ksd": value}
            decision = state.rule.update(value)
            if decision == "decay":
                state.lr_scale *= params.lr_decay_factor
            state.stop = decision == "stop"
        return state, losses

    def finish_training(self, target: Target, state: ImplicitTrainingState) -> dict[str, float]:
        """The averaged weights become the trained sampler; the ledger gets ``lr_decays``."""
        if state.ema is not None:
            with torch.no_grad():
                torch._foreach_copy_(list(self.generator_net.parameters()), state.ema)
            state.ema = None
        return {"lr_decays": state.rule.decays}

    def _score_step(self, optimizer: torch.optim.Optimizer, n: int, latent_dim: int, dim: int,
                    generator: torch.Generator) -> Tensor:
        """One Adam step on ``L_DSM`` at ``n`` fresh generator samples; the loss (detached)."""
        with torch.no_grad():
            x = self.generator_net(self._draw(n, latent_dim, generator))
        loss = self.dsm_loss(x, self._draw(n, dim, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def sampling_weights(self, state: ImplicitTrainingState
                         ) -> contextlib.AbstractContextManager:
        """During training, the EMA weights in the generator (no-op without EMA)."""
        return swapped_weights(self.generator_net, state.ema)

    @torch.no_grad()
    def _monitor(self, target: Target, latents: Tensor, noise: Tensor) -> float:
        """Held-out IMQ KSD of the sampler's output on fixed ``latents`` ``(m, d_z)`` and
        output ``noise`` ``(m, d)``; one target score per held-out point (counted)."""
        x = self.generator_net(latents)
        scale = self.output_noise_scale()
        if scale > 0:
            x = x + scale * noise
        if not torch.isfinite(x).all():
            return math.nan
        return imq_ksd(x, target.score(x))

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
            "sigma": self.sigma,
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
                            # Checkpoints from before sigma was stored set it in their params.
                            image_shape=state.get("image_shape"), sigma=state.get("sigma"))
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
