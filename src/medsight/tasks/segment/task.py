"""The segmentation task: U-Net family networks, Dice + CE (or focal) loss, deep supervision,
region-based training for nested labels, sliding-window inference with flip TTA, metrics per class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsight.config import TrainConfig
from medsight.data.reading import CaseData
from medsight.engine.contract import OptimizerSpec, Prediction, StepContext, StepOutput
from medsight.engine.inference import predict_with_deep_supervision_head, sliding_window_predict
from medsight.metrics import case_metrics, pixel_metrics
from medsight.metrics.segmentation import dice_coefficient
from medsight.tasks.segment.planning import Plan
from medsight.transforms.segmentation import (
    Preprocessed,
    largest_components,
    preprocess,
    restore,
    to_label_map,
)

MAX_AUC_PIXELS = 4_000_000  # above this, the probability map is not kept for AUC (memory)


class SegmentTask:
    """The trainable half of the segment task (see medsight.engine.contract.TrainableTask)."""

    name = "segment"
    monitor = "val_dice"
    monitor_mode = "max"

    def __init__(self, plan: Plan, train_config: TrainConfig | None = None) -> None:
        self.plan = plan
        self.train_config = train_config or TrainConfig()
        self.loss_fn = self._build_loss()
        self.adversary = _adversary(self)

    # ------------------------------------------------------------------ model and optimisation
    def build_model(self) -> nn.Module:
        from medsight.models import build_model

        plan = self.plan
        return build_model(
            plan.network,
            spatial_dims=plan.dim,
            in_channels=plan.in_channels,
            out_channels=plan.out_channels,
            patch_size=plan.patch_size,
            deep_supervision=plan.deep_supervision,
            **plan.network_kwargs,
        )

    def configure_optimizers(self, model: nn.Module) -> list[OptimizerSpec]:
        from medsight.engine import build_optimizer

        return build_optimizer(model, self.train_config)

    def _build_loss(self) -> nn.Module:
        from monai.losses import DeepSupervisionLoss, DiceCELoss, DiceFocalLoss

        smooth = {"batch": True, "smooth_nr": 1e-5, "smooth_dr": 1e-5}
        if self.plan.loss == "dice_focal":
            kwargs = {"sigmoid": True} if self.plan.regions else {"softmax": True, "to_onehot_y": True}
            base: nn.Module = DiceFocalLoss(**kwargs, **smooth)
        elif self.plan.regions:
            base = DiceBCELoss(**smooth)
        else:
            base = DiceCELoss(softmax=True, to_onehot_y=True, **smooth)
        return DeepSupervisionLoss(base, weight_mode="exp") if self.plan.deep_supervision else base

    # ------------------------------------------------------------------ train / validate
    def training_step(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: StepContext
    ) -> StepOutput:
        image = batch["image"].to(step.device, non_blocking=True)
        label = batch["label"].to(step.device, non_blocking=True)
        if self.adversary is not None:
            image = self.adversary.training_inputs(model, image, label, step.progress)
        with step.autocast():
            raw = model(image)
            out = raw
            if self.plan.deep_supervision and raw.dim() == image.dim() + 1:
                out = list(torch.unbind(raw, dim=1))
            loss = self.loss_fn(out, label)
        if self.adversary is not None:
            loss = loss + self.adversary.extra_loss(model, image, raw, step.progress)
        return StepOutput.single(loss)

    def per_sample_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Dice + cross-entropy (BCE for regions) of each sample, shape (B,): what attacks increase.
        ``target``: class indices (B, 1, *spatial), or region masks (B, R, *spatial)."""
        from monai.losses import DiceLoss

        logits = logits.float()
        if self.plan.regions:
            dice = DiceLoss(sigmoid=True, reduction="none")(logits, target)
            ce = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
        else:
            dice = DiceLoss(softmax=True, to_onehot_y=True, reduction="none")(logits, target)
            ce = F.cross_entropy(logits, target[:, 0].long(), reduction="none")
        return dice.flatten(1).mean(dim=1) + ce.flatten(1).mean(dim=1)

    def validation_step(self, model: nn.Module, batch: Preprocessed) -> dict[str, torch.Tensor]:
        """Dice per foreground class of one whole case, on the network's grid (no TTA)."""
        device = next(model.parameters()).device
        labels = self._predict_grid(model, batch.image, device, tta=False)
        ref = batch.label[0]
        if self.plan.regions:
            masks = labels
            targets = [np.isin(ref, v) for v in self.plan.regions.values()]
            pairs = [(masks[i] > 0, targets[i]) for i in range(len(targets))]
        else:
            pairs = [(labels[0] == v, ref == v) for v in self.plan.label_values[1:]]
        dice = [dice_coefficient(p, r) for p, r in pairs]  # the metrics' Dice: both empty 1.0
        return {"dice": torch.tensor(dice, dtype=torch.float64)}

    def aggregate_validation(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        per_class = torch.stack([o["dice"] for o in outputs]).nanmean(dim=0)
        logs = {"val_dice": float(per_class.nanmean())}
        names = self.plan.class_names if self.plan.regions else self.plan.class_names[1:]
        logs.update({f"val_dice_{n}": float(v) for n, v in zip(names, per_class, strict=True)})
        return logs

    # ------------------------------------------------------------------ inference
    def _predict_grid(
        self,
        model: nn.Module,
        image: np.ndarray,
        device: torch.device,
        *,
        tta: bool,
        probabilities: bool = False,
    ) -> Any:
        x = torch.from_numpy(image)
        region = self.plan.regions is not None
        out = sliding_window_predict(
            HeadOnly(model),
            x,
            patch_size=self.plan.patch_size,
            out_channels=self.plan.out_channels,
            overlap=self.plan.sliding_window_overlap,
            tta_flips=tta,
            activation="sigmoid" if region else "softmax",
            device=device,
            batch_size=self.plan.batch_size,
            output="probabilities" if probabilities else "labels",
        )
        return out if probabilities else out.numpy()

    def predict(self, model: nn.Module, sample: CaseData) -> Prediction:
        """Segment one case (read with medsight.data.read_case) in its original geometry."""
        device = next(model.parameters()).device
        pre = preprocess(sample.image, None, self.plan, sample.case.case_id)
        probs = self._predict_grid(model, pre.image, device, tta=self.plan.tta, probabilities=True)
        region = self.plan.regions is not None
        full = restore(probs.cpu().numpy(), pre, background=0.0 if region else 1.0)
        labels = to_label_map(full, self.plan.label_values, self.plan.regions)
        if self.plan.postprocess_lcc:
            labels = largest_components(labels, self.plan.label_values[1:])
        binary = not region and full.shape[0] == 2 and full[0].size <= MAX_AUC_PIXELS
        fg = full[1].astype(np.float32) if binary else None  # kept for pixel AUC
        output = sample.image.with_array(labels[None], kind="label")
        return Prediction(case_id=sample.case.case_id, output=output, probabilities=fg)

    # ------------------------------------------------------------------ evaluation
    def classes(self) -> dict[str, Any]:
        if self.plan.regions:
            return dict(self.plan.regions)
        return dict(zip(self.plan.class_names[1:], self.plan.label_values[1:], strict=True))

    def case_rows(self, pred: Prediction, ref: CaseData) -> list[dict[str, Any]]:
        """Metric rows of one case (one per class), with pixel metrics inside the ROI for binary 2D."""
        if ref.label is None:
            return []
        roi = ref.roi.array[0] if ref.roi is not None else None
        rows = case_metrics(
            pred.output.array[0], ref.label.array[0], self.classes(), spacing=ref.image.spacing, roi=roi
        )
        if pred.probabilities is not None and len(rows) == 1:
            pix = pixel_metrics(pred.probabilities, ref.label.array[0] == self.plan.label_values[1], roi=roi)
            rows[0].update({f"pixel_{k}": v for k, v in pix.items()})
        return [{"case_id": pred.case_id, **r} for r in rows]


class DiceBCELoss(nn.Module):
    """Dice + binary cross-entropy on sigmoid outputs, for region-based training of nested labels.

    MONAI's DiceCELoss applies a softmax cross-entropy to multi-channel targets, which is wrong when
    regions overlap (a voxel of the enhancing tumour is also in the core and the whole tumour).
    """

    def __init__(self, **dice_kwargs: Any) -> None:
        super().__init__()
        from monai.losses import DiceLoss

        self.dice = DiceLoss(sigmoid=True, **dice_kwargs)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice(logits, target) + self.bce(logits, target.float())


class HeadOnly(nn.Module):
    """Eval-mode view of a network that keeps only the full-resolution head."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return predict_with_deep_supervision_head(self.net(x))


def _adversary(task: SegmentTask) -> Any:
    """Adversarial training (``train.adversarial``) of this task, or None."""
    if task.train_config.adversarial is None:
        return None
    from medsight.robustness.training import make_adversary

    return make_adversary(
        task.train_config.adversarial,
        task.plan.normalization,
        task.per_sample_loss,
        sigmoid=task.plan.regions is not None,
    )
