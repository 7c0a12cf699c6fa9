"""The detection task: MONAI's RetinaNet trained by MONAI's ``RetinaNetDetector`` machinery (anchor
generator, ATSS matcher, hard-negative sampler, box coder, focal-free BCE + smooth-L1 losses).

MONAI 1.6's detector checks ``isinstance(matcher, torchvision...Matcher)`` before its ATSS branch,
which fails without torchvision; :class:`AtssDetector` overrides ``compute_anchor_matched_idxs`` (the
extension point MONAI's error message names) with the ATSS branch alone. Inference does not use the
detector: the network's per-anchor outputs go through :mod:`medsight.tasks.detect.postprocess`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from medsight.config import TrainConfig
from medsight.engine.contract import OptimizerSpec, StepContext, StepOutput
from medsight.tasks.detect.planning import DetectPlan

HARD_NEGATIVES = {"batch_size_per_image": 64, "positive_fraction": 0.3, "pool_size": 20, "min_neg": 16}


def build_detector(model: nn.Module, plan: DetectPlan) -> Any:
    """MONAI's RetinaNetDetector around ``model.retinanet``, set up for training on ``plan``."""
    from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
    from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape

    class AtssDetector(RetinaNetDetector):
        """RetinaNetDetector whose anchor matching needs no torchvision (ATSS only)."""

        def compute_anchor_matched_idxs(
            self,
            anchors: list[torch.Tensor],
            targets: list[dict[str, torch.Tensor]],
            num_anchor_locs_per_level: Any,
        ) -> list[torch.Tensor]:
            out = []
            for anchors_i, target in zip(anchors, targets, strict=True):
                boxes = target[self.target_box_key]
                if boxes.numel() == 0:
                    out.append(
                        torch.full((anchors_i.size(0),), -1, dtype=torch.int64, device=anchors_i.device)
                    )
                    continue
                _, matched = self.proposal_matcher(
                    boxes.to(anchors_i.device), anchors_i, num_anchor_locs_per_level, self.num_anchors_per_loc
                )
                out.append(matched)
            return out

    scales = [s / plan.strides[0] for s in plan.strides]
    generator = AnchorGeneratorWithAnchorShape(
        feature_map_scales=scales, base_anchor_shapes=plan.anchor_shapes
    )
    detector = AtssDetector(model.retinanet, generator)
    detector.set_atss_matcher(num_candidates=plan.atss_candidates, center_in_gt=False)
    detector.set_hard_negative_sampler(**HARD_NEGATIVES)
    return detector


class DetectTask:
    """The trainable half of the detect task (see medsight.engine.contract.TrainableTask)."""

    name = "detect"
    monitor = "val_map"
    monitor_mode = "max"

    def __init__(self, plan: DetectPlan, train_config: TrainConfig | None = None) -> None:
        self.plan = plan
        self.train_config = train_config or TrainConfig()
        self._detector: Any = None

    def build_model(self) -> nn.Module:
        from medsight.models import build_model

        plan = self.plan
        return build_model(
            plan.network,
            spatial_dims=plan.dim,
            in_channels=plan.in_channels,
            out_channels=len(plan.class_names),
            patch_size=plan.input_size,
            **plan.network_kwargs,
        )

    def configure_optimizers(self, model: nn.Module) -> list[OptimizerSpec]:
        from medsight.engine import build_optimizer

        config = self.train_config
        if config.lr is None:
            config = config.model_copy(update={"lr": self.plan.lr})
        return build_optimizer(model, config)

    def detector(self, model: nn.Module) -> Any:
        """The MONAI detector sharing ``model``'s network (built once)."""
        inner = getattr(model, "module", model)  # DDP
        if self._detector is None or self._detector.network is not inner.retinanet:
            self._detector = build_detector(inner, self.plan)
        return self._detector

    def losses(
        self, model: nn.Module, image: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """MONAI's classification and box-regression losses of a batch (boxes: array order, input grid)."""
        detector = self.detector(model)
        detector.train()
        targets = [{"boxes": b.float(), "labels": lab.long()} for b, lab in zip(boxes, labels, strict=True)]
        return detector(image, targets)

    def training_step(self, model: nn.Module, batch: dict[str, Any], step: StepContext) -> StepOutput:
        with step.autocast():
            losses = self.losses(model, batch["image"], batch["boxes"], batch["labels"])
        cls, box = losses["classification"].float(), losses["box_regression"].float()
        return StepOutput.single(cls + box, cls_loss=float(cls.detach()), box_loss=float(box.detach()))

    def validation_step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        output = model(batch["image"]).float().cpu().numpy()
        return {"output": output, "boxes": batch["boxes"], "labels": batch["labels"]}

    def aggregate_validation(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        from medsight.metrics.detection import coco_map
        from medsight.tasks.detect.postprocess import anchors, select

        anchor_boxes = anchors(self.plan)
        preds, refs = [], []
        for o in outputs:
            for out, b, lab in zip(o["output"], o["boxes"], o["labels"], strict=True):
                preds.append(select(out, anchor_boxes, self.plan))
                refs.append({"boxes": b.cpu().numpy(), "labels": lab.cpu().numpy()})
        m = coco_map(preds, refs, num_classes=len(self.plan.class_names))
        finite = lambda v: float(v) if np.isfinite(v) else 0.0  # noqa: E731
        return {"val_map": finite(m["map_50_95"]), "val_map_50": finite(m["map_50"])}
