"""Neural implicit samplers: one shared training step, three sampler-phase losses."""

from samplers.neural.dft import DFTNS, DFTParams
from samplers.neural.fisher import FisherNS, FisherParams, divergence
from samplers.neural.kl import KLNS, KLParams
from samplers.neural.minibatch import DFTNSMinibatch, KLNSMinibatch
from samplers.neural.networks import ACTIVATIONS, MLP
from samplers.neural.training import NeuralImplicitSampler, NeuralParams, ScoreFunction

#: The neural samplers of this subpackage by registry name.
NEURAL_SAMPLERS: dict[str, type[NeuralImplicitSampler]] = {
    DFTNS.name: DFTNS,
    KLNS.name: KLNS,
    FisherNS.name: FisherNS,
    DFTNSMinibatch.name: DFTNSMinibatch,
    KLNSMinibatch.name: KLNSMinibatch,
}

__all__ = [
    "ACTIVATIONS", "DFTNS", "DFTParams", "FisherNS", "FisherParams", "KLNS", "KLParams", "MLP",
    "DFTNSMinibatch", "KLNSMinibatch",
    "NEURAL_SAMPLERS", "NeuralImplicitSampler", "NeuralParams", "ScoreFunction", "divergence",
]
