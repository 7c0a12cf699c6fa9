"""The trainable register task: VoxelMorph-style unsupervised learning with MONAI's losses and warps.

Batches are dicts of tensors on the working grid (array order): ``moving`` and ``fixed`` (B, 1, *grid),
in [0, 1]; optionally ``moving_labels`` / ``fixed_labels`` (B, K, *grid) one-hot for weak supervision;
validation batches also hold ``truth`` (B, dim, *grid), the true field in voxels, and ``mask``.
The network sees ``cat(moving, fixed)`` and returns a stationary velocity field (or, with
``integration_steps`` 0, a displacement), integrated by MONAI's ``DVF2DDF``; ``Warp`` resamples.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from medsight.config import TrainConfig
from medsight.engine.contract import OptimizerSpec, StepContext, StepOutput
from medsight.tasks.register.planning import RegisterPlan


class RegisterTask:
    """The trainable half of the register task (see medsight.engine.contract.TrainableTask)."""

    name = "register"
    monitor = "val_tre"
    monitor_mode = "min"

    def __init__(self, plan: RegisterPlan, train_config: TrainConfig | None = None) -> None:
        from monai.networks.blocks import DVF2DDF, Warp

        self.plan = plan
        self.train_config = train_config or TrainConfig()
        with warnings.catch_warnings():  # MONAI notes it uses torch's grid_sample (no compiled extension)
            warnings.filterwarnings("ignore", message=".*native grid_sample")
            self.warp = Warp(mode="bilinear", padding_mode="zeros")
        steps = plan.integration_steps
        self.dvf2ddf = DVF2DDF(num_steps=steps, mode="bilinear", padding_mode="zeros") if steps else None
        self._similarity = _similarity(plan)
        self._regulariser = _regulariser(plan)

    def build_model(self) -> nn.Module:
        from medsight.models import build_model

        plan = self.plan
        return build_model(
            plan.network,
            spatial_dims=plan.dim,
            in_channels=2 * plan.in_channels,
            out_channels=plan.dim,
            patch_size=plan.grid_array_shape,
            **plan.network_kwargs,
        )

    def configure_optimizers(self, model: nn.Module) -> list[OptimizerSpec]:
        from medsight.engine import build_optimizer

        config = self.train_config
        if config.lr is None:
            config = config.model_copy(update={"lr": self.plan.lr})
        return build_optimizer(model, config)

    def displacement(self, velocity: torch.Tensor) -> torch.Tensor:
        """The displacement (voxels) of the network's output (integrated when it is a velocity)."""
        return self.dvf2ddf(velocity) if self.dvf2ddf is not None else velocity

    def loss(
        self, ddf: torch.Tensor, moving: torch.Tensor, fixed: torch.Tensor, labels: tuple | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Similarity of the warped moving image to the fixed + regularisation (+ label Dice)."""
        warped = self.warp(moving, ddf)
        sim = self._similarity(warped, fixed)
        reg = self._regulariser(ddf)
        total = sim + self.plan.reg_weight * reg
        logs = {"similarity": float(sim.detach()), "regularisation": float(reg.detach())}
        if labels is not None and self.plan.label_weight > 0:
            from monai.losses import DiceLoss

            moved = self.warp(labels[0], ddf)
            dice = DiceLoss(include_background=False)(moved, labels[1])
            total = total + self.plan.label_weight * dice
            logs["label_dice_loss"] = float(dice.detach())
        return total, logs

    def training_step(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: StepContext
    ) -> StepOutput:
        moving = batch["moving"].to(step.device, non_blocking=True)
        fixed = batch["fixed"].to(step.device, non_blocking=True)
        with step.autocast():
            velocity = model(torch.cat([moving, fixed], dim=1))
        ddf = self.displacement(velocity.float())
        labels = None
        if "moving_labels" in batch:
            labels = (batch["moving_labels"].to(step.device), batch["fixed_labels"].to(step.device))
        total, logs = self.loss(ddf, moving, fixed, labels)
        return StepOutput.single(total, **logs)

    def validation_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The mean error (mm) of the predicted field against the true one inside the mask, per pair."""
        device = next(model.parameters()).device
        moving, fixed = batch["moving"].to(device), batch["fixed"].to(device)
        ddf = self.displacement(model(torch.cat([moving, fixed], dim=1)).float()).cpu()
        err = ((ddf - batch["truth"]) * self.plan.spacing).norm(dim=1)  # (B, *grid) mm
        mask = batch["mask"].bool()
        tre = torch.stack([e[m].mean() if m.any() else e.mean() for e, m in zip(err, mask, strict=True)])
        return {"tre": tre.double()}

    def aggregate_validation(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        return {"val_tre": float(torch.cat([o["tre"] for o in outputs]).mean())}


def _similarity(plan: RegisterPlan):  # noqa: ANN202
    from monai.losses import GlobalMutualInformationLoss, LocalNormalizedCrossCorrelationLoss

    if plan.similarity == "lncc":
        return LocalNormalizedCrossCorrelationLoss(spatial_dims=plan.dim, kernel_size=plan.lncc_kernel)
    if plan.similarity == "mi":
        return GlobalMutualInformationLoss(num_bins=32)
    return nn.MSELoss()


def _regulariser(plan: RegisterPlan):  # noqa: ANN202
    from monai.losses import BendingEnergyLoss, DiffusionLoss

    return BendingEnergyLoss() if plan.regularization == "bending" else DiffusionLoss()
