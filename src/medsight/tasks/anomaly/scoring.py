"""Anomaly scores and maps of a trained model, one definition for validation, evaluation, prediction,
serving and export (:class:`Scorer` is the exported network).

* ``reconstruction``: the map is the squared reconstruction error, averaged over channels; the image
  score is its mean;
* ``free_energy``: the image score is the RBM's free energy ``F(v)`` (low for likely, normal images);
  the map is the reconstruction error of its mean-field up-down pass;
* ``mahalanobis`` (PaDiM): the map is the Mahalanobis distance of each position's features, upsampled to
  the input grid; the image score is its maximum.

Higher is more anomalous for every score. Energy models see their inputs clipped to [0, 1] (the
planned normalisation already maps the data there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medsight.tasks.anomaly.planning import ENERGY, AnomalyPlan


def scores_and_maps(
    model: nn.Module, x: torch.Tensor, plan: AnomalyPlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores (B,), maps (B, 1, *input_size))`` of a normalised batch ``x``."""
    if plan.score == "mahalanobis":
        grid = model(x)
        mode = "bilinear" if x.dim() == 4 else "trilinear"
        maps = F.interpolate(grid, size=x.shape[2:], mode=mode, align_corners=False)
        return maps.flatten(1).amax(dim=1), maps
    if plan.model in ENERGY:
        x = x.clamp(0.0, 1.0)
        recon = model.reconstruction(x)
    else:
        recon = model(x)
    maps = (recon.float() - x).pow(2).mean(dim=1, keepdim=True)
    if plan.score == "free_energy":
        return model.free_energy(x), maps
    return maps.flatten(1).mean(dim=1), maps


class Scorer(nn.Module):
    """A model and its score as one network: ``(B, C, *size) -> (B, 1 + prod(size))``, column 0 the
    image score, the rest the anomaly map on the plan's grid (what export writes to ONNX)."""

    def __init__(self, model: nn.Module, plan: AnomalyPlan) -> None:
        super().__init__()
        self.model, self.plan = model, plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores, maps = scores_and_maps(self.model, x, self.plan)
        return torch.cat([scores[:, None].float(), maps.flatten(1).float()], dim=1)
