"""The trainable side of ``medsight pretrain`` (see :mod:`medsight.tasks.anomaly.pretraining`): the
encoder with the head of each method, and the engine's view of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medsight.engine.contract import OptimizerSpec, StepContext, StepOutput
from medsight.models.padim import resnet_features
from medsight.tasks.anomaly.pretraining import DBN_HIDDEN, MASK_RATIO, PATCH

PRETRAIN_LR = 1e-3
DBN_LR = 1e-3  # Gaussian visible units: small CD steps


def stack_inputs(cases: list[Any], plan: Any) -> torch.Tensor:
    """The cases as the classify network's normalised inputs."""
    from medsight.transforms.classification import to_input

    return torch.stack([to_input(c.read(), plan) for c in cases])


class NormalisedBatches:
    """Shuffled passes over in-memory inputs, one pass per iteration."""

    def __init__(self, x: torch.Tensor, batch_size: int, seed: int) -> None:
        self.x, self.batch_size = x, min(batch_size, len(x))
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = torch.randperm(len(self.x), generator=self.generator)
        for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
            yield {"image": self.x[order[start : start + self.batch_size]]}


def encoder_state(model: nn.Module, method: str) -> dict[str, torch.Tensor]:
    """The encoder's tensors in the layout of the classify network, without its head."""
    if method == "dbn":
        net = model.dbn.classifier(2)
        head = f"{len(model.dbn.rbms) * 2 + 1}."
        return {k: v for k, v in net.state_dict().items() if not k.startswith(head)}
    return {k: v for k, v in model.encoder.state_dict().items() if not k.startswith("fc.")}


def patch_mask(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """1 where pixels are kept, 0 on MASK_RATIO of the PATCH x PATCH patches (random per image)."""
    grid = [max(1, s // PATCH) for s in x.shape[2:]]
    keep = (torch.rand((x.shape[0], 1, *grid), generator=generator) >= MASK_RATIO).to(x)
    return F.interpolate(keep, size=x.shape[2:], mode="nearest")


class PretrainNet(nn.Module):
    """A MONAI ResNet encoder and the head of one pretraining method (see the pretraining module)."""

    def __init__(self, encoder: nn.Module, method: str, channels: int, size: list[int]) -> None:
        super().__init__()
        self.encoder, self.method = encoder, method
        width = int(encoder.layer4[-1].conv2.out_channels)
        conv = nn.Conv2d if len(size) == 2 else nn.Conv3d
        mode = "bilinear" if len(size) == 2 else "trilinear"
        self.decoder = nn.Sequential(
            conv(width, 64, 1),
            nn.ReLU(),
            nn.Upsample(size=tuple(size), mode=mode),
            conv(64, 32, 3, padding=1),
            nn.ReLU(),
            conv(32, channels, 3, padding=1),
        )
        if method == "vae":
            self.mu, self.logvar = nn.Linear(width, width), nn.Linear(width, width)
        if method == "simclr":
            self.projection = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 64))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's last feature map (layer4)."""
        return self.encoder.layer4(resnet_features(self.encoder, x)[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.features(x))

    def loss(self, x: torch.Tensor, generator: torch.Generator, flip_axes: list[int]) -> torch.Tensor:
        if self.method == "ae":
            return F.mse_loss(self(x).float(), x)
        if self.method == "mae":
            keep = patch_mask(x, generator)
            hidden = (1 - keep).expand_as(x)
            return ((self(x * keep).float() - x).pow(2) * hidden).sum() / hidden.sum().clamp_min(1)
        if self.method == "vae":
            return self._vae_loss(x, generator)
        from monai.losses import ContrastiveLoss

        from medsight.transforms.classification import augment_batch

        views = [augment_batch(x, flip_axes, generator) for _ in range(2)]
        z = [self.projection(self.features(v).flatten(2).mean(-1)) for v in views]
        return ContrastiveLoss(temperature=0.5)(z[0].float(), z[1].float())

    def _vae_loss(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        f = self.features(x)
        pooled = f.flatten(2).mean(-1)
        mu, logvar = self.mu(pooled), self.logvar(pooled).clamp(-8, 8)
        z = mu + torch.randn(mu.shape, generator=generator).to(mu) * (0.5 * logvar).exp()
        code = z.view(*z.shape, *(1,) * (f.dim() - 2)).expand_as(f)
        kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp()) * mu.shape[1] / x[0].numel()
        return F.mse_loss(self.decoder(code).float(), x) + kl


class PretrainTask:
    """The engine's view of a pretraining run: one loss (the DBN fits itself); no validation."""

    name = "pretrain"
    monitor = "loss"
    monitor_mode = "min"

    def __init__(self, method: str, plan: Any, train_config: Any) -> None:
        self.method, self.plan, self.train_config = method, plan, train_config
        self.generator = torch.Generator().manual_seed(train_config.seed)

    def build_model(self) -> nn.Module:
        from medsight.models import build_model

        plan = self.plan
        if self.method == "dbn":
            return build_model(
                "dbn",
                spatial_dims=plan.dim,
                in_channels=plan.in_channels,
                out_channels=DBN_HIDDEN[-1],
                patch_size=plan.input_size,
                visible="gaussian",
                hidden=DBN_HIDDEN[:-1],
            )
        encoder = build_model(
            plan.network,
            spatial_dims=plan.dim,
            in_channels=plan.in_channels,
            out_channels=plan.out_channels,
            patch_size=plan.input_size,
            **plan.network_kwargs,
        )
        return PretrainNet(encoder, self.method, plan.in_channels, plan.input_size)

    def configure_optimizers(self, model: nn.Module) -> list[OptimizerSpec] | None:
        if self.method == "dbn":
            return None
        from medsight.engine import build_optimizer

        config = self.train_config
        if config.lr is None:
            config = config.model_copy(update={"lr": PRETRAIN_LR})
        return build_optimizer(model, config)

    def training_step(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: StepContext
    ) -> StepOutput:
        x = batch["image"]
        if self.method == "dbn":
            lr = self.train_config.lr or DBN_LR
            return StepOutput(logs=model.fit_step(x, step.progress, lr, 1, self.generator))
        with step.autocast():
            loss = model.loss(x, self.generator, self.plan.flip_axes)
        return StepOutput.single(loss)

    def validation_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        return {}

    def aggregate_validation(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        return {}
