"""The sampler registry: a plain dict from registry name to sampler class.

Adding a sampler = one module implementing :class:`samplers.base.IterativeSampler` or
:class:`samplers.base.NeuralSampler`, plus one line here; the contract tests then cover it.
"""

from samplers.annealed import AnnealedLangevin
from samplers.base import IterativeSampler, NeuralSampler, Sampler
from samplers.external import external_samplers
from samplers.hmc import HMC
from samplers.langevin import MALA, ULA
from samplers.neural import DFTNS, KLNS, DFTNSMinibatch, FisherNS, KLNSMinibatch
from samplers.neural.pis import PIS
from samplers.sgld import SGLD
from samplers.svgd import SVGD
from samplers.tempering import ParallelTempering

SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls for cls in (ULA, MALA, SVGD, AnnealedLangevin, DFTNS, KLNS, FisherNS,
                             SGLD, DFTNSMinibatch, KLNSMinibatch, HMC, ParallelTempering, PIS)
}
# Optional extras (Pyro's SVGD and NUTS): registered only when their library is installed.
SAMPLERS.update(external_samplers())

__all__ = ["SAMPLERS", "Sampler", "IterativeSampler", "NeuralSampler"]
