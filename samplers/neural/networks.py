"""Multi-layer perceptrons for neural implicit samplers: the generator and the score network.

Weights are drawn from an explicit CPU ``torch.Generator`` (never the global RNG), so a fixed
seed gives identical networks on every device: parameters are created without initialisation
on the meta device, drawn on the CPU, then copied to the requested device and dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: Activation functions by name; SiLU is the default (smooth, so the score network's input
#: derivatives used by Fisher-NS divergences and DFT-NS gradients are well defined).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units with an activation between affine maps.

    Initialisation follows the law of PyTorch's default for ``nn.Linear`` (weights and biases
    uniform on ``±1/sqrt(fan_in)``), drawn from ``init_generator``.

    Args:
        in_dim: input dimension.
        out_dim: output dimension.
        width: hidden units per layer.
        depth: number of hidden layers (``depth + 1`` affine maps).
        activation: a key of :data:`ACTIVATIONS`.
        device: where the parameters live.
        dtype: parameter dtype.
        init_generator: CPU generator the initial weights are drawn from.

    Shapes:
        ``forward``: ``(n, in_dim) -> (n, out_dim)``.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 256, depth: int = 3,
                 activation: str = "silu", device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32,
                 init_generator: torch.Generator | None = None) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}'; "
                             f"valid choices: {', '.join(sorted(ACTIVATIONS))}")
        sizes = [int(in_dim)] + [int(width)] * int(depth) + [int(out_dim)]
        layers: list[nn.Module] = []
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(fan_in, fan_out, device="meta", dtype=dtype))
            if index < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*layers)
        self.to_empty(device=torch.device(device))
        self.reset_parameters(init_generator)

    @torch.no_grad()
    def reset_parameters(self, init_generator: torch.Generator | None = None) -> None:
        """Redraw every weight and bias from ``init_generator`` (a CPU generator)."""
        if init_generator is None:
            init_generator = torch.Generator().manual_seed(0)
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                for parameter in (layer.weight, layer.bias):
                    draw = torch.rand(parameter.shape, generator=init_generator,
                                      dtype=torch.float64)
                    parameter.copy_((2.0 * draw - 1.0) * bound)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ResidualMLP(MLP):
    """``x = z + MLP(z)`` with the last affine map zero-initialised (so ``in_dim == out_dim``).

    As a generator with ``d_z = d`` its initial push-forward is exactly ``N(0, I)`` — the
    distribution iterative samplers start from — instead of the small blob a plain MLP maps
    ``N(0, I)`` to. For objectives that are nearly blind to the weights of separated modes
    (Fisher divergences), where the generator starts decides which modes it keeps.
    """

    def __init__(self, in_dim: int, out_dim: int, **kwargs) -> None:
        if int(in_dim) != int(out_dim):
            raise ValueError(f"a residual generator needs latent_dim == dim, got {in_dim} and "
                             f"{out_dim}")
        super().__init__(in_dim, out_dim, **kwargs)

    @torch.no_grad()
    def reset_parameters(self, init_generator: torch.Generator | None = None) -> None:
        super().reset_parameters(init_generator)
        last = self.layers[-1]
        last.weight.zero_()
        last.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)
