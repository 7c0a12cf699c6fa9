"""The classification task: binary, multi-class, multi-label and ordinal; 2D and 3D; any backbone of
the model registry (ResNet, DenseNet, EfficientNet, SEResNet, ViT, TransMed).

Losses: cross-entropy (class-weighted when the plan says so) for single-label problems, BCE with a
per-label positive weight for multi-label ones. Probabilities: softmax, or a sigmoid per label.
Inference averages the probabilities over flips (``plan.tta``) along the plan's flip axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsight.config import TrainConfig
from medsight.engine.contract import OptimizerSpec, Prediction, StepContext, StepOutput
from medsight.tasks.classify.planning import ClassifyPlan
from medsight.transforms.classification import to_input


class ClassifyTask:
    """The trainable half of the classify task (see medsight.engine.contract.TrainableTask)."""

    name = "classify"
    monitor = "val_auc"
    monitor_mode = "max"

    def __init__(self, plan: ClassifyPlan, train_config: TrainConfig | None = None) -> None:
        self.plan = plan
        self.train_config = train_config or TrainConfig()
        self.loss_fn = self._build_loss()
        self.adversary = _adversary(self)

    @property
    def multilabel(self) -> bool:
        return self.plan.problem == "multilabel"

    # ------------------------------------------------------------------ model and optimisation
    def build_model(self) -> nn.Module:
        from medsight.models import build_model

        plan = self.plan
        return build_model(
            plan.network,
            spatial_dims=plan.dim,
            in_channels=plan.in_channels,
            out_channels=plan.out_channels,
            patch_size=plan.input_size,
            **plan.network_kwargs,
        )

    def configure_optimizers(self, model: nn.Module) -> list[OptimizerSpec]:
        from medsight.engine import build_optimizer

        config = self.train_config
        if config.lr is None:  # the plan's learning rate unless the user set one
            config = config.model_copy(update={"lr": self.plan.lr})
        return build_optimizer(model, config)

    def _build_loss(self) -> nn.Module:
        weights = torch.tensor(self.plan.class_weights) if self.plan.class_weights else None
        if self.multilabel:
            return nn.BCEWithLogitsLoss(pos_weight=weights)
        return nn.CrossEntropyLoss(weight=weights)

    def per_sample_loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """The unweighted loss of each sample, shape (B,): what attacks increase."""
        if self.multilabel:
            bce = F.binary_cross_entropy_with_logits(logits.float(), label.float(), reduction="none")
            return bce.flatten(1).mean(dim=1)
        return F.cross_entropy(logits.float(), label.long(), reduction="none")

    def loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        self.loss_fn.to(logits.device)
        target = label.float() if self.multilabel else label.long()
        return self.loss_fn(logits.float(), target)

    # ------------------------------------------------------------------ train / validate
    def training_step(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: StepContext
    ) -> StepOutput:
        image = batch["image"].to(step.device, non_blocking=True)
        label = batch["label"].to(step.device, non_blocking=True)
        if self.adversary is not None:
            image = self.adversary.training_inputs(model, image, label, step.progress)
        with step.autocast():
            logits = model(image)
        loss = self.loss(logits, label)
        if self.adversary is not None:
            loss = loss + self.adversary.extra_loss(model, image, logits, step.progress)
        return StepOutput.single(loss)

    def validation_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        device = next(model.parameters()).device
        image, label = batch["image"].to(device), batch["label"].to(device)
        logits = model(image).float()
        return {"probs": self.probabilities(logits), "label": label, "loss": self.loss(logits, label)[None]}

    def aggregate_validation(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        from medsight.metrics.classification import point_metrics

        probs = torch.cat([o["probs"] for o in outputs]).cpu().numpy()
        label = torch.cat([o["label"] for o in outputs]).cpu().numpy()
        metrics = point_metrics(label, probs, self.plan.problem, self.plan.class_names)["all"]
        auc = metrics["auc_macro"]
        return {
            "val_auc": float(auc) if np.isfinite(auc) else 0.5,
            "val_accuracy": float(metrics["accuracy"]),
            "val_loss": float(torch.cat([o["loss"] for o in outputs]).mean()),
        }

    # ------------------------------------------------------------------ inference
    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)

    def predict_batch(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Probabilities of a normalised batch, averaged over flips when ``plan.tta``."""
        views = [x] + ([x.flip(a + 2) for a in self.plan.flip_axes] if self.plan.tta else [])
        return torch.stack([self.probabilities(model(v).float()) for v in views]).mean(dim=0)

    def predict(self, model: nn.Module, sample: Any) -> Prediction:
        """Class probabilities and label of one sample (a ``medsight.data.Case``)."""
        from medsight.metrics.classification import predict_labels

        device = next(model.parameters()).device
        x = to_input(sample.read(), self.plan)[None].to(device)
        probs = self.predict_batch(model, x)[0].cpu().numpy()
        label = predict_labels(probs[None], self.plan.problem, self.plan.thresholds)[0]
        return Prediction(sample.case_id, output=label, probabilities=probs)

    def case_row(self, pred: Prediction, reference: Any) -> dict[str, Any]:
        names = self.plan.class_names
        row: dict[str, Any] = {"case_id": pred.case_id}
        if self.multilabel:
            row["reference"] = ";".join(n for n, v in zip(names, reference, strict=True) if v) or "-"
            row["predicted"] = ";".join(n for n, v in zip(names, pred.output, strict=True) if v) or "-"
            row["correct"] = bool(np.array_equal(np.asarray(reference), np.asarray(pred.output)))
        else:
            row["reference"], row["predicted"] = names[int(reference)], names[int(pred.output)]
            row["correct"] = int(reference) == int(pred.output)
        row.update({f"p_{n}": round(float(p), 6) for n, p in zip(names, pred.probabilities, strict=True)})
        return row


def _adversary(task: ClassifyTask) -> Any:
    """Adversarial training (``train.adversarial``) of this task, or None."""
    if task.train_config.adversarial is None:
        return None
    from medsight.robustness.training import make_adversary

    return make_adversary(
        task.train_config.adversarial, task.plan.normalization, task.per_sample_loss, sigmoid=task.multilabel
    )
