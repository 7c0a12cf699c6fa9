"""White-box gradient attacks: FGSM, BIM and PGD (L-inf and L2, random start, restarts)."""

from __future__ import annotations

import torch

from medsight.errors import ConfigError
from medsight.robustness.attacks.base import (
    ATTACKS,
    Forward,
    LossFn,
    ascent,
    check_norm,
    input_gradient,
    per_sample_norm,
    project,
    uniform,
)


@ATTACKS.register("fgsm")
def fgsm(
    forward: Forward, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *, eps: float, **_: object
) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size ``eps`` along sign(grad)."""
    _, grad = input_gradient(forward, loss_fn, x, y)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


@ATTACKS.register("bim")
def bim(
    forward: Forward, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *, eps: float, **options: object
) -> torch.Tensor:
    """Basic iterative method (Kurakin et al. 2017): PGD without the random start."""
    return pgd(forward, loss_fn, x, y, eps=eps, **{**options, "random_start": False, "restarts": 1})


@ATTACKS.register("pgd")
def pgd(
    forward: Forward,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    restarts: int = 1,
    generator: torch.Generator | None = None,
    **_: object,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al. 2018) on the loss, in the L-inf or L2 ball of ``eps``.

    ``step_size`` defaults to 2.5 * eps / steps; with ``restarts`` > 1 each sample keeps the restart
    of highest loss.
    """
    check_norm("pgd", norm)
    if steps < 1 or restarts < 1:
        raise ConfigError(f"pgd: steps and restarts must be >= 1, got {steps} and {restarts}")
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    x = x.detach()
    best, best_loss = x.clone(), torch.full((x.shape[0],), -float("inf"), device=x.device)
    for _ in range(restarts):
        adv = _random_start(x, eps, norm, generator) if random_start else x.clone()
        for _ in range(steps):
            _, grad = input_gradient(forward, loss_fn, adv, y)
            adv = (x + project(adv + alpha * ascent(grad, norm) - x, eps, norm)).clamp(0, 1)
        with torch.no_grad():
            loss = loss_fn(forward(adv), y).float()
        better = loss > best_loss
        best[better], best_loss[better] = adv[better], loss[better]
    return best.detach()


ATTACKS.add("pgd-l2", lambda *a, **k: pgd(*a, **{**k, "norm": "l2"}))


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A random point of the ball inside [0, 1]; for L-inf the same draw as torchattacks' PGD."""
    if norm == "linf":
        return (x + uniform(x, -eps, eps, generator)).clamp(0, 1)
    device = generator.device if generator is not None else x.device  # a direction, a radius below eps
    direction = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)
    radius = uniform(x.new_empty(x.shape[0]), 0.0, eps, generator).view(-1, *([1] * (x.dim() - 1)))
    return (x + direction / per_sample_norm(direction, 2).clamp_min(1e-12) * radius).clamp(0, 1)
