"""Pyro's SVGD and NUTS / HMC kernels as iterative samplers of this benchmark.

The optional extra ``pip install -e ".[pyro]"``; Pyro is imported on first use, not with this
module. Both adapters follow :class:`samplers.base.IterativeSampler`: the harness drives
``init`` and ``step``, and the target is queried only through the object passed to each call
(the harness's :class:`targets.counting.CountingTarget`), so every evaluation Pyro makes --
every leapfrog step of a NUTS tree, every probe of its step-size search -- is counted as NFE.

Pyro draws its randomness (momenta, tree directions, acceptance uniforms) from torch's global
RNG. Each ``step`` therefore runs Pyro inside :func:`torch.random.fork_rng`, seeded from one
draw of the harness's generator: runs are reproducible from that generator alone, and the
global RNG is left as it was.

Pyro's state lives in Pyro objects that ``step`` mutates in place (its SVGD particles are a
parameter updated by a torch optimiser, its MCMC kernels cache their last position), so, unlike
our own samplers, a state must not be stepped twice; the harness never does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import torch
from torch import Tensor

from samplers.base import ChainState, IterativeSampler
from samplers.external import PYRO_INSTALL_HINT
from samplers.langevin import adaptation_steps
from targets.base import Target
from targets.precision import exact_float32

#: Name of the sample site carrying the positions, in Pyro's models and parameter dicts.
SITE = "x"


def import_pyro() -> ModuleType:
    """``pyro`` with the submodules the adapters use; a one-line hint if it is not installed."""
    try:
        import pyro
        import pyro.distributions
        import pyro.infer
        import pyro.infer.mcmc
        import pyro.optim
    except ImportError as error:
        raise ImportError(f"the Pyro adapters need pyro-ppl>=1.9: {PYRO_INSTALL_HINT}") from error
    return pyro


@contextlib.contextmanager
def global_rng_from(generator: torch.Generator) -> Iterator[None]:
    """Run a block that uses torch's global RNG on a stream seeded from ``generator``.

    The global RNG state of the CPU (and of the generator's CUDA device) is saved before and
    restored after the block, so the block neither depends on nor disturbs it.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    devices = []
    if generator.device.type == "cuda":
        index = generator.device.index
        devices = [torch.cuda.current_device() if index is None else index]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _check_choice(owner: str, field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{owner}: unknown {field} '{value}'; valid choices: {', '.join(choices)}")


# ---------------------------------------------------------------------------------------------
# SVGD
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PyroSVGDParams:
    """Hyper-parameters of :class:`PyroSVGD`.

    Attributes:
        lr: learning rate of the Adam optimiser (``pyro.optim.Adam``, default betas) that Pyro
            applies to the SVGD direction. Adam normalises each coordinate's step to about
            ``lr``, like the RMSprop-like rule of our SVGD, so 0.05 matches our default
            ``step_size`` and the two run at comparable speed per step.
        mode: ``"multivariate"`` (kernel ``exp(-sum_d (x_d - y_d)^2 / h_d)``, the SVGD of Liu
            & Wang that our SVGD implements) or ``"univariate"`` (Pyro's default: one kernel
            per coordinate, Singhal et al.'s kernelised complete-conditional Stein discrepancy).
        bandwidth_factor: multiplies Pyro's median bandwidth (1 = Pyro's heuristic as is).
    """

    lr: float = 0.05
    mode: str = "multivariate"
    bandwidth_factor: float = 1.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"pyro_svgd: lr must be > 0, got {self.lr}")
        _check_choice("pyro_svgd", "mode", self.mode, ("multivariate", "univariate"))
        if not self.bandwidth_factor > 0:
            raise ValueError("pyro_svgd: bandwidth_factor must be > 0, "
                             f"got {self.bandwidth_factor}")


@dataclass
class PyroSVGDState(ChainState):
    """:class:`ChainState` around Pyro's SVGD object.

    ``log_prob`` and ``score`` are ``None``: Pyro evaluates the target inside its own step and
    caches nothing at the updated particles.

    Attributes:
        svgd: the ``pyro.infer.SVGD`` object (model, guide, kernel and optimiser state).
        param_scope: this run's Pyro parameter store (it holds the particles), swapped in for
            each step so that concurrent runs in one process do not share Pyro's global store.
    """

    score: Tensor | None
    svgd: Any
    param_scope: dict


class PyroSVGD(IterativeSampler):
    """Pyro's ``pyro.infer.SVGD`` with its RBF kernel and median bandwidth, one Pyro step per
    transition.

    Differences from our :class:`samplers.svgd.SVGD` (all Pyro's choices): the bandwidth is
    per coordinate, ``h_d = bandwidth_factor * median_{i<j} (x_id - x_jd)^2 / log(n + 1)``
    (distinct pairs only, ``torch.median``'s lower middle value), the kernel is built on
    ``(n, n, d)`` tensors, and the step is Adam's. The model is a flat (zero) density on
    ``R^d`` plus ``pyro.factor(log q~(x))``; Pyro differentiates it by autograd, one
    ``log_prob`` call on all ``n`` particles per step, so ``K`` steps cost ``K + 1``
    evaluations per particle (the extra one: Pyro's guide runs the model once to set up).

    References:
        Q. Liu and D. Wang, "Stein Variational Gradient Descent: A General Purpose Bayesian
        Inference Algorithm", NeurIPS 2016.
        E. Bingham et al., "Pyro: Deep Universal Probabilistic Programming", JMLR 20(28), 2019
        (``pyro.infer.SVGD``, docs.pyro.ai).
    """

    name: ClassVar[str] = "pyro_svgd"
    pretty_name: ClassVar[str] = "Pyro SVGD"
    description: ClassVar[str] = ("Pyro's SVGD (pyro.infer.SVGD, RBF kernel, median bandwidth, "
                                  "Adam); optional extra [pyro]")
    Params: ClassVar[type] = PyroSVGDParams

    def not_a_chain(self) -> str:
        return ("sampler 'pyro_svgd' has no ESS: its particles interact (each update moves "
                "every particle with all the others)")

    def init(self, target: Target, x: Tensor, num_steps: int) -> PyroSVGDState:
        """Pyro's SVGD with its particles at ``x`` ``(n, dim)``; one target evaluation."""
        pyro = import_pyro()
        n = int(x.shape[0])
        if n < 2:
            raise ValueError(f"pyro_svgd: needs at least 2 particles, got n = {n}")
        p = self.params
        initial = x.detach().clone()

        def model(target: Target) -> None:
            # A zero-density placeholder whose only draw is ``initial``: Pyro's SVGD guide
            # places its particles by drawing from the model's prior, so this hands it our
            # positions without touching the global RNG; mask(False) drops it from the density.
            placeholder = pyro.distributions.Delta(initial, event_dim=1).mask(False)
            value = pyro.sample(SITE, placeholder)
            pyro.factor("log_target", target.log_prob(value))

        svgd = pyro.infer.SVGD(
            model, pyro.infer.RBFSteinKernel(bandwidth_factor=p.bandwidth_factor),
            pyro.optim.Adam({"lr": p.lr}), num_particles=n, max_plate_nesting=0, mode=p.mode)
        with pyro.get_param_store().scope() as scope:
            svgd.guide(target)  # runs the model once: sets up the particles (one evaluation)
        return PyroSVGDState(x=initial, log_prob=None, score=None, step_index=0,
                             num_steps=int(num_steps), svgd=svgd, param_scope=scope)

    def step(self, target: Target, state: PyroSVGDState,
             generator: torch.Generator) -> tuple[PyroSVGDState, dict[str, Tensor]]:
        """One Pyro SVGD step (deterministic: ``generator`` is unused); one evaluation.

        ``info``: ``squared_direction`` ``()``, the mean squared SVGD direction Pyro reports.
        """
        pyro = import_pyro()
        with pyro.get_param_store().scope(state.param_scope):
            squared = state.svgd.step(target)
            x = state.svgd.get_named_particles()[SITE].detach().clone()
        new_state = PyroSVGDState(x=x, log_prob=None, score=None,
                                  step_index=state.step_index + 1, num_steps=state.num_steps,
                                  svgd=state.svgd, param_scope=state.param_scope)
        return new_state, {"squared_direction": torch.as_tensor(squared[SITE])}


# ---------------------------------------------------------------------------------------------
# NUTS / HMC
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PyroNUTSParams:
    """Hyper-parameters of :class:`PyroNUTS` (Pyro's own defaults unless stated).

    Attributes:
        kernel: ``"nuts"`` (``pyro.infer.mcmc.NUTS``) or ``"hmc"`` (``pyro.infer.mcmc.HMC``
            with trajectory length ``step_size * num_leapfrog_steps``; Pyro keeps the length,
            so adapting the step size changes the number of leapfrog steps).
        chains: ``"independent"``: one Pyro kernel per chain, each with its own step size,
            diagonal mass matrix, tree and accept/reject -- ``n`` true independent chains, at
            the price of a Python loop over chains, because a Pyro kernel is one chain (its
            accept/reject, U-turn test and step size are scalars; Pyro's ``MCMC`` runs several
            chains in separate processes or one after another, never vectorised).
            ``"joint"``: one Pyro kernel on the product density ``prod_i q(x_i)`` of all ``n``
            positions, so each leapfrog step is one vectorised evaluation of all ``n`` rows; it
            leaves every marginal ``q`` invariant, but the chains share the step size, tree
            depth and accept/reject, so the step size shrinks (roughly as ``(n d)^(-1/4)``) and
            mixing per chain worsens with ``n``. Only the diagonal mass matrix stays per chain
            and coordinate.
        step_size: initial leapfrog step size (Pyro's default is 1; 0.1 suits the unit-scale
            2-D targets and is where adaptation starts its search).
        num_leapfrog_steps: leapfrog steps per HMC transition at the initial step size
            (``kernel="hmc"`` only).
        target_acceptance: acceptance probability step-size adaptation aims at (0.8).
        max_tree_depth: NUTS trees stop at ``2^max_tree_depth`` leapfrog steps (10).
        warmup_fraction: the first ``floor(warmup_fraction * K)`` transitions adapt the step
            size and mass matrix (Pyro's windowed Stan schedule); they are part of the budget,
            as for our MALA.
        adapt_step_size: dual-averaging step-size adaptation during warm-up.
        adapt_mass_matrix: diagonal mass-matrix adaptation during warm-up.
    """

    kernel: str = "nuts"
    chains: str = "independent"
    step_size: float = 0.1
    num_leapfrog_steps: int = 10
    target_acceptance: float = 0.8
    max_tree_depth: int = 10
    warmup_fraction: float = 0.5
    adapt_step_size: bool = True
    adapt_mass_matrix: bool = True

    def __post_init__(self) -> None:
        _check_choice("pyro_nuts", "kernel", self.kernel, ("nuts", "hmc"))
        _check_choice("pyro_nuts", "chains", self.chains, ("independent", "joint"))
        if not self.step_size > 0:
            raise ValueError(f"pyro_nuts: step_size must be > 0, got {self.step_size}")
        if not (isinstance(self.num_leapfrog_steps, int) and self.num_leapfrog_steps >= 1):
            raise ValueError("pyro_nuts: num_leapfrog_steps must be an integer >= 1, "
                             f"got {self.num_leapfrog_steps}")
        if not 0.0 < self.target_acceptance < 1.0:
            raise ValueError("pyro_nuts: target_acceptance must be in (0, 1), "
                             f"got {self.target_acceptance}")
        if not (isinstance(self.max_tree_depth, int) and self.max_tree_depth >= 1):
            raise ValueError(f"pyro_nuts: max_tree_depth must be an integer >= 1, "
                             f"got {self.max_tree_depth}")
        if not 0.0 <= self.warmup_fraction <= 1.0:
            raise ValueError("pyro_nuts: warmup_fraction must be in [0, 1], "
                             f"got {self.warmup_fraction}")


class TargetSlot:
    """The target the potential function evaluates, and how many rows it has evaluated.

    Pyro's kernels keep the potential function they were built with, so the function reads
    the target from here and each ``step`` puts the target it was given into the slot.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self.num_rows = 0

    def potential(self, params: dict[str, Tensor]) -> Tensor:
        """Pyro's potential energy ``-sum_i log q~(x_i)``: ``{SITE: (m, dim)} -> ()``."""
        x = params[SITE]
        self.num_rows += int(x.shape[0])
        return -self.target.log_prob(x).sum()


@dataclass
class PyroNUTSState(ChainState):
    """:class:`ChainState` around Pyro's MCMC kernels.

    ``log_prob`` and ``score`` are ``None``: Pyro keeps its own cache.

    Attributes:
        kernels: one Pyro kernel per chain (``chains="independent"``) or a single one.
        positions: each kernel's current parameter dict ``{SITE: (rows, dim)}``.
        slot: the target slot the kernels' potential function reads.
        num_warmup: adapting transitions (``floor(warmup_fraction * num_steps)``).
    """

    score: Tensor | None
    kernels: list
    positions: list[dict[str, Tensor]]
    slot: TargetSlot
    num_warmup: int


class PyroNUTS(IterativeSampler):
    """Pyro's NUTS (or HMC) kernels on the potential ``-log q~``, ``n`` chains, one Pyro
    transition per step.

    Each leapfrog step is one target evaluation of the chain's rows (autograd through
    ``log_prob``), so a NUTS transition costs between 1 and ``2^max_tree_depth`` evaluations
    per chain; Pyro's setup (one evaluation) and its step-size searches during warm-up (a few
    more) are counted too. All of it is the NFE the harness reports: budgets are transitions,
    and NUTS spends many evaluations per transition. Pyro's setup draws random momenta, so it
    runs at the first ``step`` (which has a generator), not in ``init``.

    References:
        M. D. Hoffman and A. Gelman, "The No-U-Turn Sampler", JMLR 15, 2014.
        M. Betancourt, "A Conceptual Introduction to Hamiltonian Monte Carlo", arXiv:1701.02434
        (the multinomial variant Pyro uses by default).
        E. Bingham et al., "Pyro: Deep Universal Probabilistic Programming", JMLR 20(28), 2019.
    """

    name: ClassVar[str] = "pyro_nuts"
    pretty_name: ClassVar[str] = "Pyro NUTS"
    description: ClassVar[str] = ("Pyro's NUTS/HMC kernels (pyro.infer.mcmc) on -log q, step "
                                  "size and mass adapted in warm-up; optional extra [pyro]")
    Params: ClassVar[type] = PyroNUTSParams
    markov_chain: ClassVar[bool] = True
    evaluations_per_step: ClassVar[int | None] = None  # a NUTS tree's length varies

    def warmup_steps(self, num_steps: int) -> int:
        return adaptation_steps(self.params.warmup_fraction, num_steps)

    def not_a_chain(self) -> str | None:
        if self.params.chains != "independent":
            return ("sampler 'pyro_nuts' with chains = 'joint' moves all chains with one "
                    "accept/reject, so they are not independent chains")
        return None

    def _kernel(self, slot: TargetSlot) -> Any:
        mcmc = import_pyro().infer.mcmc
        p = self.params
        common = dict(potential_fn=slot.potential, step_size=p.step_size,
                      adapt_step_size=p.adapt_step_size, adapt_mass_matrix=p.adapt_mass_matrix,
                      target_accept_prob=p.target_acceptance)
        if p.kernel == "nuts":
            return mcmc.NUTS(max_tree_depth=p.max_tree_depth, **common)
        return mcmc.HMC(num_steps=p.num_leapfrog_steps, **common)

    def init(self, target: Target, x: Tensor, num_steps: int) -> PyroNUTSState:
        """Kernels for the chains at ``x`` ``(n, dim)``; evaluates nothing (see the class)."""
        x = x.detach().clone()
        # A Pyro kernel is one chain; independent chains need one kernel per row.
        blocks = list(x.split(1)) if self.params.chains == "independent" else [x]
        slot = TargetSlot(target)
        kernels = [self._kernel(slot) for _ in blocks]
        for kernel, block in zip(kernels, blocks, strict=True):
            kernel.initial_params = {SITE: block.clone()}
        return PyroNUTSState(
            x=x, log_prob=None, score=None, step_index=0, num_steps=int(num_steps),
            kernels=kernels, positions=[{SITE: block} for block in blocks], slot=slot,
            num_warmup=self.warmup_steps(num_steps))

    def step(self, target: Target, state: PyroNUTSState,
             generator: torch.Generator) -> tuple[PyroNUTSState, dict[str, Tensor]]:
        """One Pyro transition of every chain (a Python loop over chains if independent).

        ``info``: ``step_size`` ``()`` (mean over kernels, after this transition's adaptation)
        and ``evaluations`` ``()`` (target evaluations per chain this step, including setup).
        """
        import_pyro()
        state.slot.target = target
        rows_before = state.slot.num_rows
        # Full float32: NUTS's accept test needs exact energy differences (targets.precision).
        with global_rng_from(generator), exact_float32():
            if state.step_index == 0:
                for kernel in state.kernels:
                    kernel.setup(state.num_warmup)
            positions = [kernel.sample(position)
                         for kernel, position in zip(state.kernels, state.positions, strict=True)]
        x = torch.cat([position[SITE] for position in positions]).detach()
        new_state = PyroNUTSState(
            x=x, log_prob=None, score=None, step_index=state.step_index + 1,
            num_steps=state.num_steps, kernels=state.kernels, positions=positions,
            slot=state.slot, num_warmup=state.num_warmup)
        step_sizes = torch.tensor([float(kernel.step_size) for kernel in state.kernels],
                                  dtype=torch.float64)
        evaluations = (state.slot.num_rows - rows_before) / x.shape[0]
        return new_state, {"step_size": step_sizes.mean(),
                           "evaluations": torch.tensor(evaluations, dtype=torch.float64)}
