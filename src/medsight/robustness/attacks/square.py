"""Square Attack, L-inf (Andriushchenko et al. 2020): a score-based black-box attack.

It only queries ``loss_fn(forward(x), y)`` per sample, under ``torch.no_grad()``: no gradient is taken.
Starting from random vertical stripes of +-eps, each query sets one random square (a cube in 3D) of the
perturbation to +-eps per channel and keeps it when the loss rises. The square's area is the fraction
``p`` of the image, shrinking on the paper's schedule from ``p_init``. For classifiers pass
``margin_loss`` (``base``) as ``loss_fn``, as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from medsight.errors import ConfigError
from medsight.robustness.attacks.base import ATTACKS, Forward, LossFn, is_classification, misclassified

SuccessFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# the paper's schedule: up to iteration (rescaled to a budget of 10 000 queries) BOUND, p = p_init / 2**K
_SCHEDULE = tuple(zip((10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000), range(9), strict=True))


@ATTACKS.register("square")
def square(
    forward: Forward,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    n_queries: int = 1000,
    p_init: float = 0.05,
    success_fn: SuccessFn | None = None,
    generator: torch.Generator | None = None,
    **_: object,
) -> torch.Tensor:
    """Square Attack maximising the per-sample loss within the L-inf ball of ``eps``, ``n_queries`` model
    queries per sample at most.

    ``p_init`` 0.05 is the paper's value for ImageNet-sized images; small images (e.g. 16x16) fool faster
    with 0.3-0.8. A sample stops once ``success_fn(output, y)`` (B,) is true for it; by default that is
    misclassification when the output holds class scores (B, K) for labels (B,), and never otherwise (the
    whole budget is used).
    """
    if n_queries < 1 or not 0 < p_init <= 1:
        raise ConfigError(f"square: expected n_queries >= 1 and 0 < p_init <= 1, got {n_queries}, {p_init}")
    with torch.no_grad():
        x = x.detach()
        adv = (x + eps * _stripes(x, generator)).clamp(0, 1)
        out = forward(adv)
        loss, done = loss_fn(out, y).float(), _success(success_fn, out, y)
        for i in range(n_queries - 1):
            todo = (~done).nonzero().flatten()
            if todo.numel() == 0:
                break
            side = _side(_fraction(p_init, i, n_queries), x.shape[2:])
            candidate = _propose(x[todo], adv[todo], eps, side, generator)
            out = forward(candidate)
            new_loss = loss_fn(out, y[todo]).float()
            better = new_loss > loss[todo]
            accepted = todo[better]
            adv[accepted], loss[accepted] = candidate[better], new_loss[better]
            done[accepted] = _success(success_fn, out, y[todo])[better]
    return adv


def _success(success_fn: SuccessFn | None, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if success_fn is not None:
        return success_fn(output, y).bool().reshape(-1)
    if is_classification(output, y):
        return misclassified(output, y)
    return torch.zeros(output.shape[0], dtype=torch.bool, device=output.device)


def _fraction(p_init: float, i: int, n_queries: int) -> float:
    """The paper's schedule of the square's area fraction at iteration ``i``."""
    it = int(i / n_queries * 10000)
    halvings = next((k for bound, k in _SCHEDULE if it <= bound), 9)
    return p_init / 2**halvings


def _side(p: float, spatial: torch.Size) -> int:
    side = round((p * math.prod(spatial)) ** (1 / len(spatial)))
    return max(1, min(side, min(spatial) - 1))


def _randint(
    high: int, shape: tuple[int, ...], x: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randint(high, shape, generator=generator, device=device).to(x.device)


def _stripes(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """+-1 per sample, channel and last-axis position, constant along the other spatial axes."""
    shape = (*x.shape[:2], *([1] * (x.dim() - 3)), x.shape[-1])
    return (_randint(2, shape, x, generator) * 2 - 1).to(x.dtype)


def _propose(
    x: torch.Tensor, adv: torch.Tensor, eps: float, side: int, generator: torch.Generator | None
) -> torch.Tensor:
    """``adv`` with one random square per sample set to +-eps (one sign per channel)."""
    n, spatial = x.shape[0], x.shape[2:]
    window = torch.ones((n, *([1] * len(spatial))), dtype=torch.bool, device=x.device)
    for axis, size in enumerate(spatial):
        start = _randint(size - side + 1, (n, 1), x, generator)
        pos = torch.arange(size, device=x.device)
        inside = (pos >= start) & (pos < start + side)  # (n, size)
        window = window & inside.view(n, *[size if a == axis else 1 for a in range(len(spatial))])
    signs = (_randint(2, (*x.shape[:2], *([1] * len(spatial))), x, generator) * 2 - 1).to(x.dtype)
    delta = torch.where(window.unsqueeze(1), eps * signs, adv - x)
    return (x + delta).clamp(0, 1)
