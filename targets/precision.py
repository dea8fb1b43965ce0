"""TF32 on CUDA: allowed where it pays (image energies), off where numbers are reported.

Ampere and later GPUs can run float32 matrix products and convolutions in TF32 (a 10-bit
mantissa): several times faster, with relative errors around 1e-3. That is acceptable inside
an energy network whose samplers are stochastic anyway, and not acceptable in metrics, whose
values are compared across devices and runs. PyTorch's defaults are mixed (TF32 off for
matmul, on for cuDNN convolutions), so both places set it explicitly with :func:`tf32`.

Nor is it acceptable inside a Metropolis–Hastings test. MALA compares ``log p(x') - log p(x)``
for nearby points; with TF32 that difference carries an error of about 1e-3 of ``|E|`` which
does not shrink with the step, so step-size adaptation drives the step towards zero (seen on
an H200: the mnist5k energy's MALA step fell from 1e-3 to 1e-7 at acceptance 0.57, and the
chains stopped moving). :func:`exact_float32` marks such code: inside it, TF32 stays off even
where a target's own ``tf32(True)`` would allow it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

_EXACT = contextvars.ContextVar("exact_float32", default=False)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Within the block, allow (or forbid) TF32 for CUDA matmuls and cuDNN convolutions.

    Inside :func:`exact_float32`, ``enabled=True`` is ignored. The previous settings are
    restored on exit. Without CUDA the flags are set all the same and have no effect.
    """
    matmul = torch.backends.cuda.matmul
    previous = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(enabled) and not _EXACT.get()
    try:
        yield
    finally:
        matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """Full float32 in the block, overriding any ``tf32(True)`` nested in it (metrics,
    Metropolis–Hastings tests)."""
    token = _EXACT.set(True)
    try:
        with tf32(False):
            yield
    finally:
        _EXACT.reset(token)
