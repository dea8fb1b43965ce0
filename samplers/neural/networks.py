"""Networks of neural implicit samplers: MLPs for any target, small conv nets for images.

:class:`MLP` / :class:`ResidualMLP` (generator or score network on ``R^d``),
:class:`ConvGenerator` (latent -> image) and :class:`ConvScoreNet` (image -> score image) for
targets with an ``image_shape`` (the EBMs of docs/targets.md#image-ebms). Every network maps
flat ``(n, ·)`` tensors, so the training loop never sees image shapes.

Weights are drawn from an explicit CPU ``torch.Generator`` (never the global RNG), so a fixed
seed gives identical networks on every device: parameters are created without initialisation
on the meta device, drawn on the CPU, then copied to the requested device and dtype.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

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
    """``x = b + a ⊙ (z + MLP(z))`` with the MLP's last affine map zero-initialised.

    As a generator with ``d_z = d`` its initial push-forward is exactly ``N(b, diag(a²))`` —
    with ``a = 1, b = 0`` (the default) the ``N(0, I)`` iterative samplers start from, and after
    :meth:`match_moments` the moments of whatever law they start from (BLR's prior draws,
    an EBM's ``0.5 + N(0, I)``) — instead of the small blob a plain MLP maps ``N(0, I)`` to.
    For objectives nearly blind to the weights of separated modes (Fisher divergences) where
    the generator starts decides which modes it keeps. ``b`` and ``log a`` are learned at the
    generator's learning rate: in the one trial that gave them 100× more (1e-2; donut, batch
    2048, width 128, seed 100) DFT-NS moved the whole ring to one side and ended on an arc
    (energy distance 2.16 against 0.058 for the same run without it), so we dropped it.
    """

    def __init__(self, in_dim: int, out_dim: int, **kwargs) -> None:
        if int(in_dim) != int(out_dim):
            raise ValueError(f"a residual generator needs latent_dim == dim, got {in_dim} and "
                             f"{out_dim}")
        super().__init__(in_dim, out_dim, **kwargs)
        reference = self.layers[-1].weight
        self.shift = nn.Parameter(torch.zeros(int(out_dim), device=reference.device,
                                              dtype=reference.dtype))
        self.log_scale = nn.Parameter(torch.zeros_like(self.shift))

    @torch.no_grad()
    def reset_parameters(self, init_generator: torch.Generator | None = None) -> None:
        super().reset_parameters(init_generator)
        last = self.layers[-1]
        last.weight.zero_()
        last.bias.zero_()
        if hasattr(self, "shift"):
            self.shift.zero_()
            self.log_scale.zero_()

    @torch.no_grad()
    def match_moments(self, draws: Tensor) -> None:
        """Set ``b`` and ``a`` to the per-coordinate mean and s.d. of ``draws`` ``(m, d)``."""
        draws = draws.to(self.shift.dtype).reshape(-1, self.shift.shape[0])
        self.shift.copy_(draws.mean(dim=0))
        self.log_scale.copy_(draws.std(dim=0).clamp_min(torch.finfo(draws.dtype).eps).log())

    def forward(self, x: Tensor) -> Tensor:
        return self.shift + self.log_scale.exp() * (x + self.layers(x))


def _draw_uniform_(module: nn.Module, init_generator: torch.Generator) -> None:
    """PyTorch's default law for ``Linear``/``Conv2d`` (uniform on ``±1/sqrt(fan_in)``),
    drawn from ``init_generator`` in float64 and copied into the parameters."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            fan_in = layer.weight[0].numel()  # in_features, or in_channels * kh * kw
            bound = 1.0 / math.sqrt(fan_in)
            for parameter in (layer.weight, layer.bias):
                draw = torch.rand(parameter.shape, generator=init_generator, dtype=torch.float64)
                parameter.copy_((2.0 * draw - 1.0) * bound)


def _num_resolutions(image_shape: tuple[int, int, int]) -> int:
    """Halvings from ``H`` down to a 4×4 base: 8×8 -> 1, 16×16 -> 2, 32×32 -> 3."""
    channels, height, width = (int(v) for v in image_shape)
    if height != width or height < 4 or height & (height - 1):
        raise ValueError(f"convolutional networks need square images of side 2^k >= 4, "
                         f"got image_shape {tuple(image_shape)}")
    return int(math.log2(height // 4))


class ConvGenerator(nn.Module):
    """A small DCGAN-style generator ``z -> image``, flattened: ``(n, d_z) -> (n, C·H·W)``.

    ``Linear(d_z -> c_0·4·4)``, then per resolution doubling a nearest-neighbour upsample and
    two 3×3 convolutions, channels halving from ``c_0 = channels·2^(levels-1)`` down to
    ``channels`` (never below 8), and a final 3×3 convolution to ``C`` channels, with no
    output non-linearity (pixels are not clamped: the EBM's density lives on ``R^d``).
    8×8 images get one doubling, 32×32 three. Nearest upsampling plus convolution avoids the
    checkerboard artefacts of transposed convolutions (Odena, Dumoulin & Olah 2016).

    Args:
        latent_dim: ``d_z``.
        image_shape: ``(C, H, W)`` with ``H = W = 2^k >= 4``.
        channels: feature maps at full resolution (doubling per halving of the resolution).
        activation: a key of :data:`ACTIVATIONS`.
        device, dtype: where and how the parameters live.
        init_generator: CPU generator the initial weights are drawn from.

    Shapes:
        ``forward``: ``(n, latent_dim) -> (n, C·H·W)``.
    """

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], channels: int = 32,
                 activation: str = "silu", device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32,
                 init_generator: torch.Generator | None = None) -> None:
        super().__init__()
        levels = _num_resolutions(image_shape)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.latent_dim = int(latent_dim)
        widths = [max(8, int(channels) * 2 ** (levels - i)) for i in range(levels + 1)]
        act = ACTIVATIONS[activation]
        self.project = nn.Linear(self.latent_dim, widths[0] * 16, device="meta", dtype=dtype)
        blocks: list[nn.Module] = [act()]
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(fan_in, fan_out, 3, padding=1, device="meta", dtype=dtype),
                       act(),
                       nn.Conv2d(fan_out, fan_out, 3, padding=1, device="meta", dtype=dtype),
                       act()]
        blocks.append(nn.Conv2d(widths[-1], self.image_shape[0], 3, padding=1, device="meta",
                                dtype=dtype))
        self.body = nn.Sequential(*blocks)
        self.base_channels = widths[0]
        self.to_empty(device=torch.device(device))
        with torch.no_grad():
            _draw_uniform_(self, init_generator or torch.Generator().manual_seed(0))

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z).reshape(z.shape[0], self.base_channels, 4, 4)
        return self.body(h).reshape(z.shape[0], -1)


class ConvScoreNet(nn.Module):
    """An image-shaped score network ``s_phi``: a small U-Net, ``(n, C·H·W) -> (n, C·H·W)``.

    Input images go through a 3×3 convolution to ``channels`` maps, ``levels`` downsampling
    stages (stride-2 3×3 convolution doubling the channels, then a 3×3 convolution) down to
    4×4, and back up (nearest upsample, 3×3 convolution halving the channels, added to the
    skip connection of the same resolution, another 3×3 convolution), then a 3×3 convolution
    to ``C`` channels. Every layer is smooth (SiLU by default) because DFT-NS differentiates
    ``s_phi`` with respect to its input. The last convolution is scaled by ``1/sigma``
    (``output_scale``): the DSM target ``-eps/sigma`` has that size, so the network learns an
    O(1) quantity whatever ``sigma`` is.

    Args:
        image_shape: ``(C, H, W)`` with ``H = W = 2^k >= 4``.
        channels: feature maps at full resolution.
        activation: a key of :data:`ACTIVATIONS`.
        output_scale: multiplies the output (``1/sigma`` for a DSM score network).
        device, dtype, init_generator: as for :class:`ConvGenerator`.

    Shapes:
        ``forward``: ``(n, C·H·W) -> (n, C·H·W)``.
    """

    def __init__(self, image_shape: tuple[int, int, int], channels: int = 32,
                 activation: str = "silu", output_scale: float = 1.0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 init_generator: torch.Generator | None = None) -> None:
        super().__init__()
        levels = _num_resolutions(image_shape)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.output_scale = float(output_scale)
        widths = [int(channels) * 2**i for i in range(levels + 1)]
        self.act = ACTIVATIONS[activation]()

        def conv(fan_in: int, fan_out: int, stride: int = 1) -> nn.Conv2d:
            return nn.Conv2d(fan_in, fan_out, 3, stride=stride, padding=1, device="meta",
                             dtype=dtype)

        self.stem = conv(self.image_shape[0], widths[0])
        self.down = nn.ModuleList(nn.ModuleList([conv(widths[i], widths[i + 1], 2),
                                                 conv(widths[i + 1], widths[i + 1])])
                                  for i in range(levels))
        self.up = nn.ModuleList(nn.ModuleList([conv(widths[i + 1], widths[i]),
                                               conv(widths[i], widths[i])])
                                for i in reversed(range(levels)))
        self.head = conv(widths[0], self.image_shape[0])
        self.to_empty(device=torch.device(device))
        with torch.no_grad():
            _draw_uniform_(self, init_generator or torch.Generator().manual_seed(0))

    def forward(self, x: Tensor) -> Tensor:
        act = self.act
        h = act(self.stem(x.reshape(x.shape[0], *self.image_shape)))
        skips = [h]
        for downsample, conv in self.down:
            h = act(conv(act(downsample(h))))
            skips.append(h)
        skips.pop()  # the coarsest map is h itself
        for reduce, conv in self.up:
            h = nn.functional.interpolate(h, scale_factor=2.0, mode="nearest")
            h = act(conv(act(reduce(h)) + skips.pop()))
        return self.output_scale * self.head(h).reshape(x.shape[0], -1)


@contextlib.contextmanager
def swapped_weights(module: nn.Module, weights: list[Tensor] | None) -> Iterator[None]:
    """``weights`` (one tensor per parameter of ``module``, e.g. their moving average) in
    ``module`` while inside, the live weights restored after; a no-op for ``None``."""
    if weights is None:
        yield
        return
    live = list(module.parameters())
    with torch.no_grad():
        saved = [p.detach().clone() for p in live]
        torch._foreach_copy_(live, weights)
    try:
        yield
    finally:
        with torch.no_grad():
            torch._foreach_copy_(live, saved)
