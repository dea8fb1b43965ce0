"""Image energy-based models (docs/targets.md#image-ebms): MDSM energies, their training, and
the targets.

* :mod:`targets.ebm.networks` — ``Res12_Quadratic`` (32×32) and its 8×8 and 16×16 siblings.
* :mod:`targets.ebm.mdsm` — the MDSM loss, training loop and checkpoint I/O.
* :mod:`targets.ebm.target` — :class:`EBMTarget`, ``log_prob = −E`` on flattened images.
"""

from targets.ebm.mdsm import TrainConfig, load_checkpoint, mdsm_loss, train_energy
from targets.ebm.networks import ARCHITECTURES, ResQuadraticEnergy, build_energy

__all__ = ["ARCHITECTURES", "ResQuadraticEnergy", "TrainConfig", "build_energy",
           "load_checkpoint", "mdsm_loss", "train_energy"]
