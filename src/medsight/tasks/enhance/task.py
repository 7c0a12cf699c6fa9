"""The trainable enhance task: degraded slice in, enhanced slice out, L1 and/or SSIM loss (MONAI's).

Batches are dicts of normalised tensors: ``image`` (B, C_in, H, W), the network's input, and ``target``
(B, 1, H, W), the reference in the same units (see :mod:`medsight.tasks.enhance.slices`). The loss and
the validation metrics are on the output's first channel (the magnitude for k-space networks).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsight.config import TrainConfig
from medsight.engine.contract import OptimizerSpec, StepContext, StepOutput
from medsight.tasks.enhance.planning import EnhancePlan


class EnhanceTask:
    """The trainable half of the enhance task (see medsight.engine.contract.TrainableTask)."""

    name = "enhance"
    monitor = "val_ssim"
    monitor_mode = "max"

    def __init__(self, plan: EnhancePlan, train_config: TrainConfig | None = None) -> None:
        self.plan = plan
        self.train_config = train_config or TrainConfig()

    def build_model(self) -> nn.Module:
        from medsight.models import build_model

        plan = self.plan
        return build_model(
            plan.network,
            spatial_dims=2,
            in_channels=plan.in_channels,
            out_channels=plan.out_channels,
            patch_size=plan.slice_size,
            **plan.network_kwargs,
        )

    def configure_optimizers(self, model: nn.Module) -> list[OptimizerSpec]:
        from medsight.engine import build_optimizer

        config = self.train_config
        if config.lr is None:
            config = config.model_copy(update={"lr": self.plan.lr})
        return build_optimizer(model, config)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The plan's loss (``l1``, ``ssim`` or ``l1+ssim``) of the output's first channel."""
        pred = output[:, :1].float()
        total = pred.new_zeros(())
        if "l1" in self.plan.loss:
            total = total + F.l1_loss(pred, target)
        if "ssim" in self.plan.loss:
            from monai.losses import SSIMLoss

            span = float((target.amax() - target.amin()).clamp_min(1e-6))
            total = total + SSIMLoss(spatial_dims=2, data_range=span)(pred, target)
        return total

    def per_sample_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The L1 error of each sample, shape (B,): what attacks increase."""
        return (output[:, :1].float() - target).abs().flatten(1).mean(dim=1)

    def training_step(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: StepContext
    ) -> StepOutput:
        image = batch["image"].to(step.device, non_blocking=True)
        target = batch["target"].to(step.device, non_blocking=True)
        with step.autocast():
            out = model(image)
        return StepOutput.single(self.loss(out, target))

    def validation_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """PSNR and SSIM of each validation slice, in normalised units (each slice's own data range)."""
        from medsight.metrics.enhancement import psnr, ssim

        device = next(model.parameters()).device
        out = model(batch["image"].to(device))[:, 0].float().cpu().numpy()
        ref = batch["target"][:, 0].cpu().numpy()
        p = [min(psnr(o, r), 100.0) for o, r in zip(out, ref, strict=True)]
        s = [ssim(o, r) for o, r in zip(out, ref, strict=True)]
        return {"psnr": torch.tensor(p, dtype=torch.float64), "ssim": torch.tensor(s, dtype=torch.float64)}

    def aggregate_validation(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        psnr = torch.cat([o["psnr"] for o in outputs])
        ssim = torch.cat([o["ssim"] for o in outputs])
        return {"val_ssim": float(np.nanmean(ssim.numpy())), "val_psnr": float(np.nanmean(psnr.numpy()))}
