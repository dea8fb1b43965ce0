"""Energy networks of the MDSM image EBMs (docs/targets.md#energy-network).

``Res12_Quadratic`` is the energy of Li, Chen & Sommer, "Learning energy-based models in
high-dimensional spaces with multi-scale denoising score matching" (MDSM, 2019): a residual
network without normalisation, ELU activations, and a *quadratic* head

    E(x) = ℓ₁(h)·ℓ₂(h) + ℓ_q(h ⊙ h),        h = flatten(ResNet(x)),

with three independent ``Linear(·→1)`` layers (the product and square terms let E grow
quadratically in h, so exp(−E) can be normalisable where a linear head could not be).

Both networks here are one class, :class:`ResQuadraticEnergy`: a 3×3 stem conv ``1 → C``,
then ``num_stages`` stages of two residual blocks each, the first of which halves the
resolution and doubles the channels (the channel multipliers are 2, 4, 8, ...), the second of
which keeps both. ``res12_quadratic`` (32×32 input, three stages, 4×4×8C features) is the MDSM
network; ``res8_quadratic`` (8×8 input, two stages, 2×2×4C features) is the same design sized
for scikit-learn's 8×8 digits; ``res8_quadratic16`` (16×16 input, two stages, 4×4×4C features) is
the one for ``mnist16``, MNIST at half resolution. Two stages rather than three there because
the final 4×4 grid then divides the image as Res12_Quadratic's 4×4 grid divides a 32×32 digit
(each cell a quarter of the side), and a third stage would leave a 2×2 grid and quadruple the
parameters; at the same width it costs about a sixth of Res12_Quadratic's multiply-adds per
image (a quarter of the pixels, one stage fewer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn import functional as F


class ResBlock(nn.Module):
    """``out = shortcut(x) + conv₂(ELU(conv₁(ELU(x))))``, no normalisation (MDSM).

    The shortcut is a learned 1×1 conv even when the widths match (as in MDSM's code, unlike the
    identity shortcut of a standard ResNet). A "down" block applies a 2×2 mean-pool after conv₂
    on the residual branch, and *before* the 1×1 conv on the shortcut (pooling first is 4× cheaper
    and the two commute anyway, both being linear).

    Args:
        in_channels: input channels.
        out_channels: output channels (conv₁ maps to them, conv₂ keeps them).
        down: halve the resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, down: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.down = down

    def forward(self, x: Tensor) -> Tensor:
        """``(n, in, H, W) -> (n, out, H', W')`` with ``H' = H/2`` for down blocks."""
        residual = self.conv2(F.elu(self.conv1(F.elu(x))))
        shortcut = x
        if self.down:
            residual = F.avg_pool2d(residual, 2)
            shortcut = F.avg_pool2d(shortcut, 2)
        return self.shortcut(shortcut) + residual


class ResQuadraticEnergy(nn.Module):
    """A residual energy with MDSM's quadratic head. ``(n, 1, S, S) -> (n,)`` energies.

    Args:
        image_size: side ``S`` of the square input (divisible by ``2**num_stages``).
        width: base width ``C``.
        num_stages: number of (down block, plain block) pairs; stage ``k`` (0-based) maps
            ``2^k C → 2^{k+1} C`` channels.
        in_channels: image channels.

    References:
        Li, Chen & Sommer (2019), arXiv:1910.07762, Res12_Quadratic.
    """

    def __init__(self, image_size: int, width: int, num_stages: int, in_channels: int = 1) -> None:
        super().__init__()
        if width < 1 or image_size % 2**num_stages:
            raise ValueError(f"invalid energy shape: width={width}, image_size={image_size}, "
                             f"num_stages={num_stages} (need width >= 1 and image_size divisible "
                             f"by 2**num_stages)")
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        blocks = []
        channels = width
        for _ in range(num_stages):
            blocks += [ResBlock(channels, 2 * channels, down=True),
                       ResBlock(2 * channels, 2 * channels, down=False)]
            channels *= 2
        self.blocks = nn.Sequential(*blocks)
        features = channels * (image_size // 2**num_stages) ** 2
        self.linear1 = nn.Linear(features, 1)
        self.linear2 = nn.Linear(features, 1)
        self.quadratic = nn.Linear(features, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Energies ``E(x)``, shape ``(n,)``, of images ``x`` of shape ``(n, C_in, S, S)``."""
        h = self.blocks(self.stem(x)).flatten(1)
        return (self.linear1(h) * self.linear2(h) + self.quadratic(h * h)).squeeze(-1)


@dataclass(frozen=True)
class Architecture:
    """A registry entry: how to build an energy for one image size from a width.

    Attributes:
        name: registry key (stored in checkpoints).
        image_size: input side.
        num_stages: residual stages (see :class:`ResQuadraticEnergy`).
    """

    name: str
    image_size: int
    num_stages: int

    def build(self, width: int, in_channels: int = 1) -> ResQuadraticEnergy:
        return ResQuadraticEnergy(self.image_size, width, self.num_stages, in_channels)


ARCHITECTURES: dict[str, Architecture] = {
    # MDSM's network: 3 stages, 6 blocks, 12 convs in the residual branches (hence the name).
    "res12_quadratic": Architecture("res12_quadratic", image_size=32, num_stages=3),
    # The same style for 8×8: 2 stages, 4 blocks, 2×2 final resolution.
    "res8_quadratic": Architecture("res8_quadratic", image_size=8, num_stages=2),
    # MNIST at half resolution (mnist16): 2 stages, 16 -> 8 -> 4, so the final 4×4 grid splits
    # the image as Res12_Quadratic's does a 32×32 one (see the module docstring).
    "res8_quadratic16": Architecture("res8_quadratic16", image_size=16, num_stages=2),
}


def build_energy(architecture: str, width: int, in_channels: int = 1) -> ResQuadraticEnergy:
    """Build registered ``architecture`` at base ``width``.

    Raises:
        ValueError: unknown architecture name (one line listing the valid ones).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture '{architecture}'; valid architectures: "
                         f"{', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture].build(width, in_channels)


def architecture_for(image_size: int) -> str:
    """The default architecture for square images of side ``image_size``."""
    matches = [a.name for a in ARCHITECTURES.values() if a.image_size == image_size]
    if not matches:
        raise ValueError(f"no energy architecture for {image_size}x{image_size} images; valid "
                         f"sizes: {sorted(a.image_size for a in ARCHITECTURES.values())}")
    return matches[0]


EnergyFn = Callable[[Tensor], Tensor]

__all__ = ["ARCHITECTURES", "Architecture", "EnergyFn", "ResBlock", "ResQuadraticEnergy",
           "architecture_for", "build_energy"]
