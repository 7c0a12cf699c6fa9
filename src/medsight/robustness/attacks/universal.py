"""Universal adversarial perturbations (Moosavi-Dezfooli et al. 2017), fitted by stochastic gradient.

One perturbation ``delta`` (1, C, *spatial) for every input: projected sign-gradient ascent (L2: normalised
gradient) on the mean loss of minibatches, the SGD variant of the original DeepFool-based algorithm.

For an honest evaluation fit on one split and apply to another::

    delta = fit_universal(forward, loss_fn, x_train, y_train, eps=8 / 255)
    x_adv = apply_universal(x_test, delta)

The registered ``"universal"`` attack fits ``delta`` on the batch it attacks (an upper bound of the harm).
"""

from __future__ import annotations

import math

import torch

from medsight.errors import ConfigError
from medsight.robustness.attacks.base import (
    ATTACKS,
    Forward,
    LossFn,
    ascent,
    check_norm,
    input_gradient,
    project,
)


def fit_universal(
    forward: Forward,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    epochs: int = 5,
    step_size: float | None = None,
    batch_size: int = 32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The perturbation (1, C, *spatial) in the ``norm`` ball of ``eps`` that maximises the mean loss over
    ``x``; ``step_size`` defaults to 2.5 * eps / (number of steps)."""
    check_norm("universal", norm)
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"universal: epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    x, n = x.detach(), x.shape[0]
    alpha = step_size if step_size is not None else 2.5 * eps / (epochs * math.ceil(n / batch_size))
    device = generator.device if generator is not None else x.device
    delta = torch.zeros_like(x[:1])
    for _ in range(epochs):
        for batch in torch.randperm(n, generator=generator, device=device).to(x.device).split(batch_size):
            grad = _delta_gradient(forward, loss_fn, x[batch], y[batch], delta)
            delta = project(delta + alpha * ascent(grad, norm), eps, norm)
    return delta.detach()


def apply_universal(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``x + delta`` inside [0, 1]; ``delta`` is (1, C, *spatial) as returned by ``fit_universal``."""
    if delta.dim() != x.dim() or delta.shape[0] != 1 or delta.shape[1:] != x.shape[1:]:
        raise ConfigError(
            f"universal perturbation of shape {tuple(delta.shape)} does not fit inputs of shape "
            f"{tuple(x.shape)}: expected (1, {', '.join(str(s) for s in x.shape[1:])})"
        )
    return (x + delta.to(x.device, x.dtype)).clamp(0, 1).detach()


@ATTACKS.register("universal")
def universal(
    forward: Forward,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    generator: torch.Generator | None = None,
    **options: object,
) -> torch.Tensor:
    """Fits one universal perturbation on ``x`` and applies it to ``x`` (see the module's note); options:
    those of :func:`fit_universal` (norm, epochs, step_size, batch_size), others are ignored."""
    known = {k: v for k, v in options.items() if k in ("norm", "epochs", "step_size", "batch_size")}
    delta = fit_universal(forward, loss_fn, x, y, eps=eps, generator=generator, **known)  # type: ignore[arg-type]
    return apply_universal(x, delta)


def _delta_gradient(
    forward: Forward, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor
) -> torch.Tensor:
    """d (summed loss of clamp(x + delta)) / d delta, shape (1, C, *spatial)."""
    _, grad = input_gradient(lambda d: forward((x + d).clamp(0, 1)), loss_fn, delta.expand_as(x), y)
    return grad.sum(dim=0, keepdim=True)
