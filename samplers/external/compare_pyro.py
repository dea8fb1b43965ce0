"""Our samplers beside Pyro's, timed in one process on one target: the ratios of issue 8.

    python -m samplers.external.compare_pyro [--repeats 30] [--threads 1] [--target donut]

Prints, for the same 2-D target and the same ``n``:

* **SVGD step**: seconds per step of our :class:`samplers.svgd.SVGD` and of Pyro's
  ``pyro.infer.SVGD`` (through :class:`PyroSVGD`) at ``n = 100`` and ``1000``, and their ratio.
* **Cost per target evaluation**: our MALA step divided by the ``n`` evaluations it makes (one
  fused ``log_prob_and_score`` per chain), against Pyro HMC's transition divided by its
  leapfrog steps (``L`` fixed: no adaptation; each leapfrog step is one gradient evaluation per
  chain). Normalisation: seconds per evaluation of one particle (one chain), i.e.
  ``step / n`` for MALA and ``transition / (L * chains)`` for HMC. Pyro HMC runs twice: as
  ``n_loop`` independent one-chain kernels (how Pyro runs independent chains; the adapter loops
  over them in Python), and as one kernel on the product density of all ``n`` chains
  (``chains="joint"``: vectorised, but not independent chains).
* **Native HMC against Pyro's**: our :class:`samplers.hmc.HMC` with the same fixed transition
  as the Pyro HMC above (``L`` leapfrog steps of 0.1, no adaptation; ``n`` independent chains
  batched as ``(n, d)`` tensors), per leapfrog step of one chain (``transition / (L * n)``),
  and the ratios of both Pyro HMC timings to it.

Each timing is the median of ``repeats`` calls after a few warm-up calls, with
``torch.set_num_threads(threads)``. Pyro's states are stepped in place, so successive timed
calls advance the run (the cost per call does not depend on where the particles are, except
through NUTS trees, which are not timed here).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from samplers.base import IterativeSampler
from samplers.external.pyro import PyroNUTS, PyroSVGD, import_pyro
from samplers.hmc import HMC
from samplers.langevin import MALA
from samplers.svgd import SVGD
from targets import make_target
from targets.base import Target, make_generator

#: Leapfrog steps of the timed Pyro HMC transition.
LEAPFROG_STEPS = 10
#: Chains of the looped (independent) Pyro HMC timing: enough to average over, few enough to be
#: quick; its cost is linear in the number of chains (one kernel per chain).
LOOPED_CHAINS = 20


def median_seconds(function: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Median wall-clock seconds of ``function()`` over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_seconds(sampler: IterativeSampler, target: Target, n: int, repeats: int,
                 mutable: bool) -> float:
    """Median seconds of one ``step`` at ``n`` particles started from the target's default.

    ``mutable``: the sampler's state is stepped in place (Pyro), so each call advances it;
    otherwise the same state is stepped every time (our samplers are pure functions of it).
    """
    generator = make_generator(0, target.device)
    state = sampler.init(target, sampler.initial_positions(target, n, generator), 10_000)
    holder = [state]

    def call() -> None:
        new_state, _ = sampler.step(target, holder[0], generator)
        if mutable:
            holder[0] = new_state

    return median_seconds(call, repeats)


def fixed_hmc(chains: str) -> PyroNUTS:
    """Pyro HMC with ``LEAPFROG_STEPS`` leapfrog steps per transition and no adaptation."""
    return PyroNUTS(kernel="hmc", chains=chains, step_size=0.1,
                    num_leapfrog_steps=LEAPFROG_STEPS, adapt_step_size=False,
                    adapt_mass_matrix=False, warmup_fraction=0.0)


def native_hmc() -> HMC:
    """Our HMC with :func:`fixed_hmc`'s transition: ``LEAPFROG_STEPS`` steps of 0.1, no
    adaptation (so each timed call does the same work)."""
    return HMC(step_size=0.1, num_leapfrog=LEAPFROG_STEPS, warmup_fraction=0.0)


def compare(target_name: str = "donut", repeats: int = 30) -> list[tuple[str, float]]:
    """Every timing and ratio, as ``(label, value)`` rows in the order printed."""
    target = make_target(target_name)
    rows: list[tuple[str, float]] = []
    for n in (100, 1_000):
        ours = step_seconds(SVGD(), target, n, repeats, mutable=False)
        theirs = step_seconds(PyroSVGD(), target, n, repeats, mutable=True)
        rows += [(f"svgd step, ours, n={n} [s]", ours),
                 (f"svgd step, pyro, n={n} [s]", theirs),
                 (f"svgd step ratio pyro/ours, n={n}", theirs / ours)]
    n = 1_000
    mala = step_seconds(MALA(), target, n, repeats, mutable=False) / n
    looped = step_seconds(fixed_hmc("independent"), target, LOOPED_CHAINS, max(repeats // 5, 3),
                          mutable=True) / (LEAPFROG_STEPS * LOOPED_CHAINS)
    joint = step_seconds(fixed_hmc("joint"), target, n, repeats, mutable=True) / (
        LEAPFROG_STEPS * n)
    rows += [(f"mala, per evaluation of one particle, n={n} [s]", mala),
             (f"pyro hmc, per leapfrog step of one chain, {LOOPED_CHAINS} one-chain kernels [s]",
              looped),
             (f"pyro hmc, per leapfrog step of one chain, one joint kernel over n={n} [s]", joint),
             ("ratio pyro hmc (one-chain kernels) / mala, per particle evaluation", looped / mala),
             (f"ratio pyro hmc (joint, n={n}) / mala, per particle evaluation", joint / mala)]
    ours = step_seconds(native_hmc(), target, n, repeats, mutable=False) / (LEAPFROG_STEPS * n)
    rows += [(f"hmc (ours), per leapfrog step of one chain, n={n} independent chains [s]", ours),
             ("ratio pyro hmc (one-chain kernels) / hmc (ours), per leapfrog step", looped / ours),
             (f"ratio pyro hmc (joint, n={n}) / hmc (ours), per leapfrog step", joint / ours)]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samplers.external.compare_pyro",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--target", default="donut", help="a 2-D target of the registry")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pyro = import_pyro()
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, threads "
          f"{torch.get_num_threads()}, target {args.target}, repeats {args.repeats}, cpu")
    for label, value in compare(args.target, args.repeats):
        print(f"{label:<82} {value:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
