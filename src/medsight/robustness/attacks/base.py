"""What every attack shares: its signature, the registry, projections onto the epsilon ball.

An attack is ``attack(forward, loss_fn, x, y, *, eps, generator=None, **options) -> x_adv``:

- ``forward``: unit-space input (B, C, *spatial) in [0, 1] -> the model's output (logits), see
  ``InputSpace.forward_fn``; the model is differentiated, never changed;
- ``loss_fn(output, y)``: the task's loss *per sample*, shape (B,), which the attack increases;
- ``x``: clean unit-space inputs; ``y``: their targets (labels, label maps);
- ``eps``: the perturbation budget in unit-space units (L-inf or L2 by the attack's norm).

The result stays in [0, 1] (valid intensities) and within ``eps`` of ``x``. Attacks run the model in
its current mode (the caller puts it in eval mode) and never set a parameter's ``.grad``.

``margin_loss`` is the per-sample margin loss of class scores (classifiers, and per pixel for segmenters),
the loss of choice for score-based attacks such as ``square``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from medsight.errors import ConfigError
from medsight.registry import Registry

Forward = Callable[[torch.Tensor], torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Attack = Callable[..., torch.Tensor]

ATTACKS: Registry[Attack] = Registry("attack")


def per_sample_norm(v: torch.Tensor, p: float) -> torch.Tensor:
    """The L-``p`` norm of each sample of a batch, shape (B, 1, ..., 1) for broadcasting."""
    norms = v.flatten(1).norm(p=p, dim=1)
    return norms.view(-1, *([1] * (v.dim() - 1)))


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """``delta`` projected onto the ``norm`` ball of radius ``eps`` (``linf`` or ``l2``)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    factor = (eps / per_sample_norm(delta, 2).clamp_min(1e-12)).clamp(max=1.0)
    return delta * factor


def check_norm(attack: str, norm: str) -> None:
    """ConfigError unless ``norm`` is ``linf`` or ``l2``."""
    if norm not in ("linf", "l2"):
        raise ConfigError(f"{attack} norm: expected 'linf' or 'l2', got {norm!r}")


def ascent(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit ``norm`` size: sign(grad) for L-inf, grad / ||grad||_2 for L2."""
    if norm == "linf":
        return grad.sign()
    return grad / per_sample_norm(grad, 2).clamp_min(1e-12)


def input_gradient(forward: Forward, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """(per-sample loss, d loss.sum() / d x) at ``x``; the model's parameter gradients are untouched."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(forward(x), y)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad.detach()


def bounded(x: torch.Tensor, delta: torch.Tensor, eps: float | None, norm: str) -> torch.Tensor:
    """``x + delta`` with ``delta`` projected onto the ``norm`` ball of ``eps`` (none when ``eps`` is None),
    inside [0, 1]; detached."""
    if eps is not None:
        delta = project(delta, eps, norm)
    return (x + delta).clamp(0, 1).detach()


def uniform(x: torch.Tensor, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform noise shaped like ``x`` on ``x``'s device, drawn from ``generator`` (or the global RNG:
    then identical to ``torch.empty_like(x).uniform_(low, high)``)."""
    device = generator.device if generator is not None else x.device
    noise = torch.empty(x.shape, dtype=x.dtype, device=device).uniform_(low, high, generator=generator)
    return noise.to(x.device)


def class_margin(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Z_y - max_{i != y} Z_i`` for each sample (output (B, K), y (B,)) or each position of a label map
    (output (B, K, *spatial), y (B, *spatial) or (B, 1, *spatial)); a single channel (K = 1) is read as the
    logit of class 1 against 0. Negative where the prediction is wrong."""
    if output.shape[1] == 1:
        output = torch.cat([torch.zeros_like(output), output], dim=1)
    labels = _labels(output, y)
    true = output.gather(1, labels.unsqueeze(1)).squeeze(1)
    others = output.masked_fill(F.one_hot(labels, output.shape[1]).movedim(-1, 1).bool(), -float("inf"))
    return true - others.amax(dim=1)


def margin_loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample margin loss ``max_{i != y} Z_i - Z_y`` (averaged over positions for label maps), shape
    (B,); positive when a sample is misclassified."""
    margin = class_margin(output, y)
    return -margin.reshape(margin.shape[0], -1).mean(dim=1)


def misclassified(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the class scores (B, K) predict another class than ``y``."""
    return output.argmax(dim=1) != y.reshape(-1)


def is_classification(output: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether ``output`` holds class scores (B, K) for labels ``y`` (B,)."""
    return output.dim() == 2 and y.numel() == output.shape[0]


def _labels(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    expected = (output.shape[0], *output.shape[2:])
    labels = y.squeeze(1) if y.dim() == output.dim() and y.shape[1] == 1 else y
    if tuple(labels.shape) != expected:
        raise ConfigError(
            f"targets of shape {tuple(y.shape)} do not fit an output of shape {tuple(output.shape)}: "
            f"expected labels of shape {expected} (or with a channel axis of 1)"
        )
    return labels.long()
