"""DeepFool (Moosavi-Dezfooli et al. 2016): the minimal step across the nearest linearised class boundary.

Classification only: the model's output must be class scores (B, K) and ``y`` labels (B,). Each iteration
linearises the scores around the current image and steps to the nearest boundary between ``y`` and one of
the ``candidates`` classes scored highest on the clean image; the accumulated step is overshot by
``overshoot``. ``norm="l2"`` is the paper's attack, ``norm="linf"`` its L-inf variant.
"""

from __future__ import annotations

import torch

from medsight.errors import ConfigError
from medsight.robustness.attacks.base import (
    ATTACKS,
    Forward,
    LossFn,
    bounded,
    check_norm,
    is_classification,
    per_sample_norm,
)


@ATTACKS.register("deepfool")
def deepfool(
    forward: Forward,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | None = None,
    overshoot: float = 0.02,
    max_iter: int = 50,
    candidates: int = 10,
    norm: str = "l2",
    **_: object,
) -> torch.Tensor:
    """DeepFool on a classifier (``loss_fn`` is not used); samples already misclassified are left as they
    are. ``eps``, when given, bounds the result (projection into the ``norm`` ball)."""
    check_norm("deepfool", norm)
    x, y = x.detach(), y.detach()
    with torch.no_grad():
        clean = forward(x)
    if not is_classification(clean, y) or clean.shape[1] < 2:
        raise ConfigError(
            "deepfool attacks classifiers only: expected class scores (batch, classes >= 2) and labels "
            f"(batch,), got an output of shape {tuple(clean.shape)} and targets of shape {tuple(y.shape)}; "
            "use pgd or cw-l2 for other tasks"
        )
    y = y.reshape(-1).long()
    others = clean.scatter(1, y[:, None], -float("inf")).topk(min(candidates, clean.shape[1] - 1), dim=1)[1]
    classes = torch.cat([y[:, None], others], dim=1)  # (B, 1 + n): the label first
    total, adv = torch.zeros_like(x), x.clone()
    for _ in range(max_iter):
        with torch.no_grad():
            active = (forward(adv).argmax(dim=1) == y).nonzero().flatten()
        if active.numel() == 0:
            break
        total[active] += _boundary_step(forward, adv[active], classes[active], norm)
        adv = (x + (1 + overshoot) * total).clamp(0, 1).detach()
    return bounded(x, adv - x, eps, norm)


def _boundary_step(forward: Forward, x: torch.Tensor, classes: torch.Tensor, norm: str) -> torch.Tensor:
    """The step from ``x`` to the nearest linearised boundary between ``classes[:, 0]`` and the others."""
    scores, grads = _scores_and_gradients(forward, x, classes)
    gap = (scores[:, 1:] - scores[:, :1]).abs()  # (B, n)
    w = grads[:, 1:] - grads[:, :1]  # (B, n, C, *spatial)
    dual = w.flatten(2).norm(p=2 if norm == "l2" else 1, dim=2)
    distance = gap / dual.clamp_min(1e-12)
    nearest = distance.argmin(dim=1)
    rows = torch.arange(x.shape[0], device=x.device)
    w_l, d_l = w[rows, nearest], distance[rows, nearest].view(-1, *([1] * (x.dim() - 1)))
    direction = w_l / per_sample_norm(w_l, 2).clamp_min(1e-12) if norm == "l2" else w_l.sign()
    return (d_l + 1e-4) * direction


def _scores_and_gradients(
    forward: Forward, x: torch.Tensor, classes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The scores of ``classes`` (B, n) at ``x`` and their input gradients (B, n, C, *spatial)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = forward(x).gather(1, classes)
        grads = [
            torch.autograd.grad(scores[:, j].sum(), x, retain_graph=j < classes.shape[1] - 1)[0]
            for j in range(classes.shape[1])
        ]
    return scores.detach(), torch.stack(grads, dim=1)
