"""TF32 on CUDA: allowed where it pays (image energies), off where numbers are reported.

Ampere and later GPUs can run float32 matrix products and convolutions in TF32 (a 10-bit
mantissa): several times faster, with relative errors around 1e-3. That is acceptable inside
an energy network whose samplers are stochastic anyway, and not acceptable in metrics, whose
values are compared across devices and runs. PyTorch's defaults are mixed (TF32 off for
matmul, on for cuDNN convolutions), so both places set it explicitly with :func:`tf32`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Within the block, allow (or forbid) TF32 for CUDA matmuls and cuDNN convolutions.

    The previous settings are restored on exit. Without CUDA the flags are set all the same
    and have no effect.
    """
    matmul = torch.backends.cuda.matmul
    previous = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(enabled)
    try:
        yield
    finally:
        matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous
