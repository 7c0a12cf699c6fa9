"""Carlini-Wagner L2 (Carlini & Wagner 2017): the smallest L2 perturbation that flips the prediction.

The image is written as x' = (tanh(w) + 1) / 2, so it stays in [0, 1] without clipping, and Adam minimises
``||x' - x||_2^2 + c * f(x')`` per sample with the margin term ``f = max(Z_y - max_{i != y} Z_i, -kappa)``;
a binary search per sample finds the smallest ``c`` that succeeds. Task-agnostic for class scores: for a
segmenter (output (B, K, *spatial), label map y (B, *spatial) or (B, 1, *spatial)) ``f`` is the per-pixel
margin averaged over the image, and a sample counts as fooled when at least ``success_fraction`` of its
pixels are misclassified by more than ``kappa``.
"""

from __future__ import annotations

import torch

from medsight.errors import ConfigError
from medsight.robustness.attacks.base import ATTACKS, Forward, LossFn, bounded, class_margin


@ATTACKS.register("cw-l2")
def cw_l2(
    forward: Forward,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | None = None,
    c: float = 1e-2,
    kappa: float = 0.0,
    steps: int = 100,
    binary_steps: int = 6,
    lr: float = 0.01,
    success_fraction: float = 0.5,
    **_: object,
) -> torch.Tensor:
    """Carlini-Wagner L2 on the model's class scores (``loss_fn`` is not used: CW has its own objective).

    Returns, per sample, the fooling image of smallest L2 distance found, or ``x`` itself where none was
    found. ``eps``, when given, bounds the result's L2 distance (the perturbation is scaled into the ball,
    which can undo its success) so that it sits in the same robustness table as the other L2 attacks.
    """
    if steps < 1 or binary_steps < 1 or c <= 0:
        raise ConfigError(f"cw-l2: steps, binary_steps and c must be > 0, got {steps}, {binary_steps}, {c}")
    x = x.detach()
    n = x.shape[0]
    best, best_l2 = x.clone(), torch.full((n,), float("inf"), device=x.device)
    lower, upper = torch.zeros(n, device=x.device), torch.full((n,), float("inf"), device=x.device)
    const = torch.full((n,), float(c), device=x.device)
    for _ in range(binary_steps):
        found = _minimise(forward, x, y, const, kappa, steps, lr, success_fraction, best, best_l2)
        upper = torch.where(found, torch.minimum(upper, const), upper)
        lower = torch.where(found, lower, torch.maximum(lower, const))
        const = torch.where(upper < float("inf"), (lower + upper) / 2, const * 10)
    return bounded(x, best - x, eps, "l2")


def _minimise(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    const: torch.Tensor,
    kappa: float,
    steps: int,
    lr: float,
    success_fraction: float,
    best: torch.Tensor,
    best_l2: torch.Tensor,
) -> torch.Tensor:
    """Adam on the CW objective for one ``const`` per sample; updates ``best``/``best_l2`` in place and
    returns (B,) whether each sample was fooled at some step."""
    w = torch.atanh((2 * x - 1) * (1 - 1e-6)).requires_grad_(True)
    optimizer = torch.optim.Adam([w], lr=lr)
    found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(steps):
        with torch.enable_grad():
            adv = (torch.tanh(w) + 1) / 2
            margin = class_margin(forward(adv), y).reshape(x.shape[0], -1)
            l2_sq = (adv - x).flatten(1).pow(2).sum(dim=1)
            objective = l2_sq + const * margin.clamp(min=-kappa).mean(dim=1)
            (w.grad,) = torch.autograd.grad(objective.sum(), w)
        fooled = (margin.detach() < -kappa).float().mean(dim=1) >= success_fraction
        better = fooled & (l2_sq.detach().sqrt() < best_l2)
        best[better], best_l2[better] = adv.detach()[better], l2_sq.detach().sqrt()[better]
        found |= fooled
        optimizer.step()
    return found
