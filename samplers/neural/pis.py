"""PIS: the Path Integral Sampler, a neural sampler with a step axis.

A controlled diffusion on ``t in [0, T]`` started at a point ``m`` (the mean of the law the
iterative samplers start from),

    dX_t = sigma u_theta(X_t, t) dt + sigma dW_t,      X_0 = m,

is trained so that ``X_T`` follows the target ``q = q~ / Z``. Without control, ``X_T ~ nu =
N(m, sigma^2 T I)``. By Girsanov's theorem the KL divergence between the controlled path law
and the uncontrolled one reweighted at ``T`` by ``q / nu`` is

    L(theta) = E[ int_0^T ||u_theta(X_t, t)||^2 / 2 dt + log nu(X_T) - log q~(X_T) ] + log Z,

so ``L - log Z >= 0`` is minimised by the optimal control ``u* = sigma grad log h`` with
``h(x, t) = E_0[q~(X_T) / nu(X_T) | X_t = x]``, where the expected loss is exactly ``-log Z``.
Training discretises the SDE by Euler-Maruyama with ``num_train_steps`` steps and
backpropagates ``L`` through the path (reparameterised noise).

**Step axis.** The trained drift is a function of ``(x, t)``, so one network samples at any
number of steps ``K``: sampling is an explicit chain (``init`` / ``step`` / ``finalize``, driven
by the harness like an iterative sampler) of ``K`` Euler-Maruyama steps of size ``T / K``. A
matrix gives it budgets such as ``[1, 2, 4, ..., 128]``; each is one cell of the *same*
trained sampler. With ``parameterisation = "score"`` (PIS-Grad, the "Langevin" form
``u = f_theta(x, t) + g_theta(t) * clip(grad log q~(x))``) each step evaluates the target
score once, so sampling costs ``K`` evaluations per sample; with ``"drift"`` it costs none.

References:
    Q. Zhang, Y. Chen, "Path Integral Sampler: a stochastic control approach for sampling",
    ICLR 2022 (arXiv:2111.15141). The loss and the score parameterisation follow its
    equations; the code is this suite's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from samplers.base import ChainState, NeuralSampler, TrainingState, build_params, drive_chain
from samplers.neural.networks import MLP, swapped_weights
from samplers.neural.training import INITIAL_LAW_DRAWS, check_choice
from targets.base import Target

#: Fourier frequencies of the time embedding (``sin``/``cos`` of ``2^k pi t``, k < 4): the
#: fastest has period 1/4, far above the training step (1/64), so the control is smooth between
#: the training grid's times and a chain of more steps than training used stays in its range.
TIME_FREQUENCIES = 4


@dataclass(frozen=True)
class PISParams:
    """Hyper-parameters of :class:`PIS`.

    Attributes:
        num_iterations: Adam steps on the path loss (3,000; the loss of every 2-D target of
            the tests has flattened by then at batch 256).
        batch_size: paths per step (256).
        num_train_steps: Euler-Maruyama steps of a training path (64). Sampling may use any
            number of steps (the budget); fewer than this adds discretisation error.
        horizon: ``T`` (1.0).
        sigma: diffusion coefficient; ``None`` (default) takes the mean standard deviation
            per coordinate of the law the iterative samplers start from
            (``target.initial_positions``), so the uncontrolled terminal law ``nu`` has the
            spread of that law, centred at its mean.
        parameterisation: ``"drift"`` (``u = f_theta(x, t)``, sampling evaluates no target)
            or ``"score"`` (PIS-Grad: ``u = f_theta(x, t) + g_theta(t) * clip(s(x))``, one
            target score per sampling step, and the training path's score is differentiated:
            HVPs are counted).
        score_clip: elementwise clip of the target score in the ``"score"`` form (1e3), which
            keeps early training stable on targets with steep tails.
        hidden_width: units per hidden layer (128).
        hidden_depth: hidden layers (3).
        lr: Adam learning rate (1e-3), warmed up linearly over ``warmup_iterations`` and
            decayed by a cosine to 10% at the end.
        warmup_iterations: learning-rate warm-up (100).
        grad_clip: gradient norm clip (10), so a rare exploding path cannot wreck the weights.
        ema_decay: moving average of the weights used for sampling (0.995; 0 disables).
        log_every: iterations between history rows.
    """

    num_iterations: int = 3000
    batch_size: int = 256
    num_train_steps: int = 64
    horizon: float = 1.0
    sigma: float | None = None
    parameterisation: str = "drift"
    score_clip: float = 1e3
    hidden_width: int = 128
    hidden_depth: int = 3
    lr: float = 1e-3
    warmup_iterations: int = 100
    grad_clip: float = 10.0
    ema_decay: float = 0.995
    log_every: int = 100

    def __post_init__(self) -> None:
        for key in ("batch_size", "num_train_steps", "hidden_width", "hidden_depth",
                    "log_every"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"pis: parameter '{key}' must be a positive integer")
        for key in ("num_iterations", "warmup_iterations"):
            if int(getattr(self, key)) < 0:
                raise ValueError(f"pis: parameter '{key}' must be a non-negative integer")
        for key in ("horizon", "score_clip", "lr", "grad_clip"):
            value = float(getattr(self, key))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"pis: parameter '{key}' must be a positive number")
        if self.sigma is not None and not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError("pis: parameter 'sigma' must be a positive number or None")
        if not 0.0 <= float(self.ema_decay) < 1.0:
            raise ValueError(f"pis: parameter 'ema_decay' must be in [0, 1), got {self.ema_decay}")
        check_choice("parameterisation", self.parameterisation, ("drift", "score"))


def time_features(t: Tensor, n: int) -> Tensor:
    """``(n, 2 F + 1)`` features of a scalar time ``t``: ``t`` and ``sin, cos(2^k pi t)``."""
    frequencies = math.pi * 2.0 ** torch.arange(TIME_FREQUENCIES, device=t.device,
                                                  dtype=t.dtype)
    angles = t * frequencies
    row = torch.cat([t.reshape(1), torch.sin(angles), torch.cos(angles)])
    return row.expand(n, -1)


class ControlNet(nn.Module):
    """``u_theta(x, t)``: an MLP on ``(x, time features)``; with ``score_gain`` a second MLP
    of ``t`` alone scales the clipped target score (PIS-Grad). Last layers start at zero, so
    the untrained sampler is the uncontrolled diffusion (``X_T ~ nu``).

    Shapes: ``forward(x (n, d), t () , score (n, d) or None) -> (n, d)``.
    """

    def __init__(self, dim: int, width: int, depth: int, score_gain: bool,
                 device: torch.device, dtype: torch.dtype,
                 init_generator: torch.Generator) -> None:
        super().__init__()
        features = 2 * TIME_FREQUENCIES + 1
        common = dict(width=width, depth=depth, device=device, dtype=dtype,
                      init_generator=init_generator)
        self.drift = MLP(dim + features, dim, **common)
        self.gain = MLP(features, dim, **common) if score_gain else None
        with torch.no_grad():
            for net in (self.drift, self.gain):
                if net is not None:
                    net.layers[-1].weight.zero_()
                    net.layers[-1].bias.zero_()

    def forward(self, x: Tensor, t: Tensor, score: Tensor | None = None) -> Tensor:
        embedding = time_features(t, x.shape[0])
        control = self.drift(torch.cat([x, embedding], dim=1))
        if self.gain is not None:
            control = control + self.gain(embedding) * score
        return control


@dataclass
class PISState(ChainState):
    """A sampling chain: positions ``x`` ``(n, d)`` at time ``step_index * T / num_steps``.

    ``score`` is the clipped target score at ``x`` (``"score"`` form) or zeros (``"drift"``).
    """


@dataclass(kw_only=True)
class PISTrainingState(TrainingState):
    """Training state of PIS: the Adam optimiser and the EMA of the control's weights."""

    optimizer: torch.optim.Optimizer
    ema: list[Tensor] | None


class PIS(NeuralSampler):
    """Path Integral Sampler: trained once, sampled at any number of Euler-Maruyama steps.

    Attributes:
        net: the control network (``None`` before training).
        start: ``(d,)`` the start point ``m``; ``sigma``: the diffusion coefficient.
        ledger: ``train_iterations``, ``train_seconds`` (callback time excluded),
            ``callback_seconds``.
    """

    name: ClassVar[str] = "pis"
    pretty_name: ClassVar[str] = "PIS"
    description: ClassVar[str] = ("Path Integral Sampler: controlled diffusion trained by the "
                                  "path-space KL; sampled at K Euler-Maruyama steps")
    Params: ClassVar[type] = PISParams
    #: Budgets are sampling steps of one trained network (the harness's step axis).
    step_axis: ClassVar[bool] = True
    #: Target evaluations per sampling step at the default ``"drift"`` form (the ``"score"``
    #: form costs one per step; CountingTarget counts whichever runs).
    evaluations_per_step: ClassVar[int | None] = 0

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.net: ControlNet | None = None
        self.start: Tensor | None = None
        self.sigma: float | None = None
        self.dim: int | None = None

    # -- networks -------------------------------------------------------------------------
    def build(self, dim: int, start: Tensor, sigma: float, device: torch.device,
              dtype: torch.dtype, generator: torch.Generator) -> None:
        """Create the control network for dimension ``dim``, weights drawn from ``generator``
        (one integer seeds a CPU generator, so every device gets the same weights)."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator,
                                 device=generator.device).item())
        params = self.params
        self.dim, self.sigma = int(dim), float(sigma)
        self.start = start.to(device=device, dtype=dtype).reshape(dim)
        self.net = ControlNet(dim, params.hidden_width, params.hidden_depth,
                              params.parameterisation == "score", device, dtype,
                              torch.Generator().manual_seed(seed))

    def _require_net(self) -> None:
        if self.net is None:
            raise RuntimeError("sampler 'pis' has no network yet: call train() or load() first")

    def _score(self, target: Target, x: Tensor, create_graph: bool = False) -> Tensor:
        if self.params.parameterisation != "score":
            return torch.zeros_like(x)
        clip = float(self.params.score_clip)
        return target.score(x, create_graph=create_graph).clamp(-clip, clip)

    def log_nu(self, x: Tensor) -> Tensor:
        """``(n,)`` log-density of the uncontrolled terminal law ``N(m, sigma^2 T I)``."""
        variance = self.sigma**2 * float(self.params.horizon)
        return (-0.5 * (x - self.start).square().sum(dim=1) / variance
                - 0.5 * self.dim * math.log(2.0 * math.pi * variance))

    # -- the loss -------------------------------------------------------------------------
    def path_loss(self, target: Target, n: int, num_steps: int, generator: torch.Generator,
                  control=None) -> tuple[Tensor, Tensor]:
        """Simulate ``n`` controlled paths and return their loss and log-weight terms.

        Args:
            target: evaluated for ``log q~`` at the end (and for scores in the "score" form).
            n: paths.
            num_steps: Euler-Maruyama steps over ``[0, T]``.
            generator: the noise.
            control: ``control(x, t) -> (n, d)``, default this sampler's network (tests pass
                the closed-form optimum here).

        Returns:
            ``loss (n,)`` = ``sum ||u||^2 dt / 2 + log nu(X_T) - log q~(X_T)``, differentiable;
            its mean is the path-space KL minus ``log Z``, an upper bound on ``-log Z``. And
            ``stochastic (n,)``, detached: the same plus ``sum <u, dW>``, which equals
            ``-log Z`` on *every* path under the optimal control (zero variance).
        """
        dt = float(self.params.horizon) / num_steps
        sigma = self.sigma
        x = self.start.expand(n, -1).clone()
        running = x.new_zeros(n)
        martingale = x.new_zeros(n)
        differentiate = self.params.parameterisation == "score" and control is None
        for k in range(num_steps):
            t = x.new_tensor(k * dt)
            if control is None:
                u = self.net(x, t, self._score(target, x, create_graph=differentiate))
            else:
                u = control(x, t)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            running = running + 0.5 * u.square().sum(dim=1) * dt
            martingale = martingale + (u * noise).sum(dim=1).detach() * math.sqrt(dt)
            x = x + sigma * u * dt + sigma * math.sqrt(dt) * noise
        terminal = self.log_nu(x) - target.log_prob(x)
        loss = running + terminal
        return loss, (loss.detach() + martingale)

    # -- training -------------------------------------------------------------------------
    def init_training(self, target: Target, num_iterations: int,
                      generator: torch.Generator) -> PISTrainingState:
        """The control network (start point and ``sigma`` from the target's initial law), its
        Adam optimiser and the EMA copy; see :class:`PISParams` for the settings."""
        params = self.params
        draws = target.initial_positions(INITIAL_LAW_DRAWS, generator)
        sigma = (params.sigma if params.sigma is not None
                 else float(draws.std(dim=0).mean()))
        self.build(target.dim, draws.mean(dim=0), sigma, torch.device(target.device),
                   target.dtype, generator)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=params.lr)
        average = ([p.detach().clone() for p in self.net.parameters()]
                   if params.ema_decay > 0 else None)
        return PISTrainingState(num_iterations=int(num_iterations), optimizer=optimizer,
                                ema=average)

    def train_step(self, target: Target, state: PISTrainingState,
                   generator: torch.Generator) -> tuple[PISTrainingState, dict[str, Tensor]]:
        """One Adam step on the path loss of ``batch_size`` simulated paths.

        Losses: ``path_loss`` (its batch mean, an upper bound on ``-log Z`` up to
        discretisation), kept in float64 so window averages add exactly like Python floats.
        """
        params = self.params
        index, num_iterations = state.iteration, state.num_iterations
        warm = (min(1.0, (index + 1) / params.warmup_iterations)
                if params.warmup_iterations else 1.0)
        decay = 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * index / max(1, num_iterations)))
        for group in state.optimizer.param_groups:
            group["lr"] = params.lr * warm * decay
        loss, _ = self.path_loss(target, params.batch_size, params.num_train_steps, generator)
        objective = loss.mean()
        state.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), params.grad_clip)
        state.optimizer.step()
        if state.ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(state.ema, list(self.net.parameters()),
                                     1.0 - params.ema_decay)
        state.iteration += 1
        return state, {"path_loss": objective.detach().double()}

    def finish_training(self, target: Target, state: PISTrainingState) -> dict[str, float]:
        """The averaged weights become the trained control."""
        if state.ema is not None:
            with torch.no_grad():
                torch._foreach_copy_(list(self.net.parameters()), state.ema)
            state.ema = None
        return {}

    def sampling_weights(self, state: PISTrainingState) -> contextlib.AbstractContextManager:
        """The averaged weights in the network while inside (no-op without averaging)."""
        return swapped_weights(self.net, state.ema)

    # -- sampling: an explicit chain the harness drives (the step axis) -------------------
    def initial_positions(self, target: Target, n: int, generator: torch.Generator) -> Tensor:
        """``(n, d)`` copies of the start point ``m`` (the diffusion starts at a point)."""
        self._require_net()
        return self.start.expand(int(n), -1).clone()

    def init(self, target: Target, x: Tensor, num_steps: int) -> PISState:
        """Start a chain of ``num_steps`` Euler-Maruyama steps over ``[0, T]``."""
        self._require_net()
        if int(num_steps) < 1:
            raise ValueError("pis samples with at least one step")
        return PISState(x=x, log_prob=None, score=torch.zeros_like(x), step_index=0,
                        num_steps=int(num_steps))

    @torch.no_grad()
    def step(self, target: Target, state: PISState,
             generator: torch.Generator) -> tuple[PISState, dict]:
        """One step ``x <- x + sigma u dt + sigma sqrt(dt) eps`` with ``dt = T / K``; one target
        score in the "score" form, none in the "drift" form."""
        dt = float(self.params.horizon) / state.num_steps
        x = state.x
        t = x.new_tensor(state.step_index * dt)
        score = self._score(target, x) if self.params.parameterisation == "score" else state.score
        u = self.net(x, t, score)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        state.x = x + self.sigma * u * dt + self.sigma * math.sqrt(dt) * noise
        state.score = score
        state.step_index += 1
        return state, {}

    def finalize(self, target: Target, state: PISState) -> Tensor:
        return state.x

    def sample(self, n: int, generator: torch.Generator, num_steps: int | None = None,
               target: Target | None = None) -> Tensor:
        """``(n, d)`` samples from ``num_steps`` (default: the training discretisation) steps.

        The "score" form needs the ``target`` (its scores are evaluated and counted).
        """
        self._require_net()
        if self.params.parameterisation == "score" and target is None:
            raise ValueError("pis with parameterisation 'score' samples with target scores: "
                             "pass target=")
        steps = int(num_steps or self.params.num_train_steps)
        x0 = self.initial_positions(target, n, generator)
        return self.finalize(target, drive_chain(self, target, x0, steps, generator))

    def draw(self, n: int, generator: torch.Generator, target: Target) -> Tensor:
        """Training-curve samples: the chain at the training discretisation."""
        return self.sample(n, generator, target=target)

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self._require_net()
        return {"name": self.name, "params": dataclasses.asdict(self.params), "dim": self.dim,
                "start": self.start.detach().cpu(), "sigma": self.sigma,
                "net": self.net.state_dict(), "ledger": dict(self.ledger)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"checkpoint is for sampler '{state.get('name')}', not 'pis'")
        self.params = build_params(self.Params, self.name, state["params"])
        weight = next(iter(state["net"].values()))
        self.build(int(state["dim"]), state["start"], float(state["sigma"]), weight.device,
                   weight.dtype, torch.Generator(device=weight.device))
        self.net.load_state_dict(state["net"])
        self.ledger = dict(state.get("ledger", {}))
