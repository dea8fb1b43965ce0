"""The neural samplers' networks: initialisation laws and the residual generator option."""

from __future__ import annotations

import pytest
import torch

from samplers.neural import DFTNS
from samplers.neural.networks import MLP, ResidualMLP
from samplers.neural.training import default_width
from targets import make_target
from targets.base import make_generator


def test_residual_generator_starts_as_the_identity():
    net = ResidualMLP(3, 3, width=8, depth=2, init_generator=torch.Generator().manual_seed(0))
    z = torch.randn(50, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(net(z), z)


def test_plain_mlp_starts_far_from_the_identity():
    # Why the residual option exists: the plain MLP maps N(0, I) to a small blob.
    net = MLP(2, 2, init_generator=torch.Generator().manual_seed(0))
    x = net(torch.randn(4000, 2, generator=torch.Generator().manual_seed(1)))
    assert x.std(0).max() < 0.3


def test_residual_generator_needs_latent_dim_equal_to_dim():
    with pytest.raises(ValueError, match="latent_dim == dim"):
        ResidualMLP(3, 2)
    sampler = DFTNS(generator_architecture="residual", latent_dim=3)
    with pytest.raises(ValueError, match="latent_dim == dim"):
        sampler.train(make_target("mog2"), 0, make_generator(0))


def test_residual_sampler_checkpoint_round_trips():
    target = make_target("mog2")
    sampler = DFTNS(generator_architecture="residual", hidden_width=16, hidden_depth=1,
                    batch_size=32)
    sampler.train(target, 3, make_generator(0))
    restored = DFTNS()
    restored.load_state_dict(sampler.state_dict())
    assert restored.params.generator_architecture == "residual"
    assert torch.equal(restored.sample(7, make_generator(5)), sampler.sample(7, make_generator(5)))


def test_unknown_architecture_names_the_choices():
    with pytest.raises(ValueError, match="valid choices: mlp, residual"):
        DFTNS(generator_architecture="transformer")


@pytest.mark.parametrize(("dim", "width"), [(1, 256), (64, 256), (65, 260), (100, 400),
                                            (256, 1024), (257, 1024), (1024, 1024)])
def test_default_width_is_four_units_per_coordinate_between_256_and_1024(dim, width):
    assert default_width(dim) == width


def test_a_sampler_without_hidden_width_builds_networks_of_the_default_width():
    target = make_target("gaussian_d", dim=100)
    sampler = DFTNS(hidden_depth=1, score_warmup=0)
    sampler.init_training(target, 0, make_generator(0, "cpu"))
    widths = {m.out_features for m in sampler.generator_net.modules()
              if isinstance(m, torch.nn.Linear)}
    assert default_width(100) in widths
