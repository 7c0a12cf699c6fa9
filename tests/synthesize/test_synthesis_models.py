"""The synthesis networks and losses: sizes, the class projection, the gradient penalty, the G / D
optimisers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medsight.models import build_model
from medsight.models.synthesis import GAN, levels_for

torch.set_num_threads(1)


@pytest.mark.parametrize(("size", "levels"), [([28, 28], 2), ([32, 32], 3), ([64, 48], 3), ([16, 16], 2)])
def test_generator_makes_pictures_of_the_planned_size_in_unit_range(size: list[int], levels: int) -> None:
    assert levels_for(size) == levels
    g = build_model(
        "dcgan_generator", spatial_dims=2, in_channels=10, out_channels=3, patch_size=size, base_filters=4
    )
    with torch.no_grad():
        out = g(torch.randn(2, 10, 1, 1))
    assert out.shape == (2, 3, *size) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_conditional_latent_carries_one_hot_classes_and_projection_uses_them() -> None:
    g = build_model("dcgan_generator", spatial_dims=2, in_channels=6, out_channels=1, patch_size=[16, 16])
    d = build_model("dcgan_discriminator", spatial_dims=2, in_channels=1, out_channels=1, num_classes=2)
    gan = GAN(g, d, latent_size=4, num_classes=2)
    z = gan.latent(3, 2, torch.tensor([0, 1, 1]), torch.Generator().manual_seed(0))
    assert z.shape == (3, 6, 1, 1) and z[:, 4:, 0, 0].tolist() == [[1, 0], [0, 1], [0, 1]]
    x = torch.rand(2, 1, 16, 16)
    d.eval()
    assert not torch.allclose(d(x, torch.tensor([0, 0])), d(x, torch.tensor([1, 1])))


def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm_minus_one_squared() -> None:
    from medsight.tasks.synthesize.task import gradient_penalty

    critic = nn.Sequential(nn.Flatten(), nn.Linear(16, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.fill_(0.5)  # ||w|| = 0.5 * 4 = 2
    real, fake = torch.rand(4, 1, 4, 4), torch.rand(4, 1, 4, 4)
    gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0))
    assert float(gp.detach()) == pytest.approx(1.0)


def test_generator_and_discriminator_get_their_own_optimisers() -> None:
    from medsight.config import TrainConfig
    from medsight.planning.plan import ChannelNorm
    from medsight.tasks.synthesize.planning import SynthesisPlan
    from medsight.tasks.synthesize.task import SynthesisTask

    plan = SynthesisPlan(
        dim=2,
        in_channels=1,
        class_names=[],
        normalization=[ChannelNorm(scheme="rgb")],
        network="dcgan_generator",
        discriminator="dcgan_discriminator",
        batch_size=4,
        input_size=[16, 16],
        model="wgan-gp",
        latent_size=8,
        lr=1e-4,
        lr_d=3e-4,
        grad_clip_d=1.0,
        discriminator_kwargs={"norm": "none", "base_filters": 4},
        network_kwargs={"base_filters": 4},
    )
    task = SynthesisTask(plan, TrainConfig(grad_clip=5.0))
    model = task.build_model()
    g_spec, d_spec = task.configure_optimizers(model)
    assert (g_spec.name, d_spec.name) == ("generator", "discriminator")
    assert g_spec.optimizer.param_groups[0]["lr"] == 1e-4 and d_spec.optimizer.param_groups[0]["lr"] == 3e-4
    assert (g_spec.clip_norm, d_spec.clip_norm) == (5.0, 1.0)
    assert {id(p) for p in g_spec.parameters} == {id(p) for p in model.generator.parameters()}
    assert {id(p) for p in d_spec.parameters} == {id(p) for p in model.discriminator.parameters()}


def test_cyclegan_generator_optimiser_holds_both_generators() -> None:
    from medsight.config import TrainConfig
    from medsight.planning.plan import ChannelNorm
    from medsight.tasks.synthesize.planning import SynthesisPlan
    from medsight.tasks.synthesize.task import SynthesisTask

    plan = SynthesisPlan(
        dim=2, in_channels=1, class_names=[], normalization=[ChannelNorm(scheme="rgb")], network="unet",
        discriminator="patch_discriminator", batch_size=2, input_size=[16, 16], model="cyclegan",
        kind="paired", network_kwargs={"base_filters": 4, "depth": 2},
        discriminator_kwargs={"base_filters": 4, "layers": 2},
    )  # fmt: skip
    task = SynthesisTask(plan, TrainConfig())
    model = task.build_model()
    g_spec, d_spec = task.configure_optimizers(model)
    both = [*model.generator.parameters(), *model.inverse.parameters()]
    assert {id(p) for p in g_spec.parameters} == {id(p) for p in both}
    assert {id(p) for p in d_spec.parameters} == {id(p) for p in model.discriminator.parameters()}
