"""The anomaly task: models trained on normal images only, scored on normal and anomalous ones.

Training, by method (``plan.model``):

* ``ae``: mean squared reconstruction error; ``dae``: the same from inputs with Gaussian noise
  (``plan.noise_std``); ``sparse-ae``: + ``plan.sparsity`` x the mean absolute code;
  ``contractive-ae``: + ``plan.contractive`` x ``||d code / d x||_F^2`` (Rifai et al. 2011), estimated
  with one random projection per sample (Hutchinson: ``E ||J^T e||^2`` over ``e ~ N(0, I)``);
  ``vae``: reconstruction + ``plan.beta`` x KL(q(z|x) || N(0, I)) per pixel;
* ``rbm``, ``dbn``, ``dbm``: fit themselves by contrastive divergence (no optimiser; see
  :mod:`medsight.models.energy_images`), their schedules following the training progress;
* ``padim``: fits itself: one pass of sums over the normal training images.

Validation scores every validation image (normal and anomalous); ``val_auroc`` (image level) picks
``best.pt``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsight.config import TrainConfig
from medsight.engine.contract import OptimizerSpec, StepContext, StepOutput
from medsight.errors import DataError
from medsight.tasks.anomaly.planning import ENERGY, AnomalyPlan
from medsight.tasks.anomaly.scoring import scores_and_maps

SELF_FITTING = (*ENERGY, "padim")


class AnomalyTask:
    """The trainable half of the anomaly task (see medsight.engine.contract.TrainableTask)."""

    name = "anomaly"
    monitor = "val_auroc"
    monitor_mode = "max"

    def __init__(self, plan: AnomalyPlan, train_config: TrainConfig | None = None) -> None:
        self.plan = plan
        self.train_config = train_config or TrainConfig()
        self.generator = torch.Generator().manual_seed(self.train_config.seed)

    # ------------------------------------------------------------------ model and optimisation
    def build_model(self) -> nn.Module:
        from medsight.models import build_model

        plan = self.plan
        out = plan.code_size if plan.model in ENERGY else (2 if plan.model == "padim" else plan.in_channels)
        net = build_model(
            plan.network,
            spatial_dims=plan.dim,
            in_channels=plan.in_channels,
            out_channels=out,
            patch_size=plan.input_size,
            **plan.network_kwargs,
        )
        if plan.model != "padim":
            return net
        from medsight.models.padim import PaDiM

        if plan.pretrained:
            from medsight.models.pretrained import load_pretrained

            load_pretrained(net, plan.pretrained)
        return PaDiM(net, plan.padim_features, max_samples=plan.n_normal_train, seed=self.train_config.seed)

    def configure_optimizers(self, model: nn.Module) -> list[OptimizerSpec] | None:
        if self.plan.model in SELF_FITTING:
            return None
        from medsight.engine import build_optimizer

        config = self.train_config
        if config.lr is None:
            config = config.model_copy(update={"lr": self.plan.lr})
        return build_optimizer(model, config)

    def training_step(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: StepContext
    ) -> StepOutput:
        x = batch["image"]
        plan = self.plan
        if plan.model == "padim":
            return StepOutput(logs=model.fit_step(x))
        if plan.model in ENERGY:
            _check_unit_range(x, plan)
            lr = self.train_config.lr or plan.lr
            return StepOutput(logs=model.fit_step(x, step.progress, lr, plan.cd_k, self.generator))
        with step.autocast():
            loss, logs = self._loss(model, x)
        return StepOutput({"main": loss}, {"loss": float(loss.detach()), **logs})

    def _loss(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        plan = self.plan
        if plan.model == "vae":
            recon, mu, logvar = model.variational(x)
            rec = F.mse_loss(recon.float(), x)
            kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp()) * mu.shape[1] / x[0].numel()
            return rec + plan.beta * kl, {"recon": float(rec.detach()), "kl": float(kl.detach())}
        if plan.model == "dae":
            noisy = x + plan.noise_std * torch.randn(x.shape, generator=self.generator).to(x)
            return F.mse_loss(model(noisy).float(), x), {}
        if plan.model == "contractive-ae":
            x = x.clone().requires_grad_(True)
        code = model.code(x)
        rec = F.mse_loss(model.decode(code).float(), x.detach())
        if plan.model == "sparse-ae":
            penalty = plan.sparsity * code.abs().mean()
        elif plan.model == "contractive-ae":
            penalty = plan.contractive * _jacobian_norm(code, x, self.generator)
        else:
            return rec, {}
        return rec + penalty, {"recon": float(rec.detach()), "penalty": float(penalty.detach())}

    # ------------------------------------------------------------------ validation
    def validation_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        scores, _ = scores_and_maps(model, batch["image"], self.plan)
        return {"scores": scores.float(), "anomalous": batch["anomalous"]}

    def aggregate_validation(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        from medsight.metrics.anomaly import image_auroc

        scores = torch.cat([o["scores"] for o in outputs]).cpu().numpy()
        y = torch.cat([o["anomalous"] for o in outputs]).cpu().numpy()
        auroc = image_auroc(y, scores)
        return {
            "val_auroc": float(auroc) if np.isfinite(auroc) else 0.5,
            "val_score_normal": float(scores[y == 0].mean()) if (y == 0).any() else float("nan"),
            "val_score_anomalous": float(scores[y == 1].mean()) if (y == 1).any() else float("nan"),
        }


def _jacobian_norm(code: torch.Tensor, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Hutchinson estimate of ``mean_b ||d code_b / d x_b||_F^2`` (one projection per sample)."""
    e = torch.randn(code.shape, generator=generator).to(code)
    (vjp,) = torch.autograd.grad(code, x, grad_outputs=e, create_graph=True)
    return vjp.pow(2).flatten(1).sum(1).mean() / code[0].numel()


def _check_unit_range(x: torch.Tensor, plan: AnomalyPlan) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(
            f"plan.model={plan.model}: the Bernoulli visible units need inputs in [0, 1], found "
            f"[{lo:.4g}, {hi:.4g}]; keep the planned plan.normalization (it scales to [0, 1])"
        )


def stack_inputs(cases: list[Any], plan: AnomalyPlan) -> torch.Tensor:
    """Cases as normalised ``(N, C, *input_size)`` float32 inputs."""
    from medsight.tasks.anomaly.outputs import input_array

    out = torch.empty((len(cases), plan.in_channels, *plan.input_size), dtype=torch.float32)
    for i, case in enumerate(cases):
        try:
            out[i] = torch.from_numpy(input_array(case.read(), plan))
        except DataError as exc:
            raise DataError(f"case {case.case_id}: {exc}") from exc
    return out
