"""Adversarial training, the same for every task: PGD adversarial training and TRADES.

A task that trains with ``train.adversarial`` set builds one :class:`AdversarialTraining` and calls it
inside its ``training_step``::

    image = adversary.training_inputs(model, image, label, step.progress)   # PGD-AT: adversarial
    out = model(image)
    loss = task_loss(out, label) + adversary.extra_loss(model, image, out, step.progress)  # TRADES

Examples are made in the attack space (see ``InputSpace``) with the model in eval mode (batch-norm
statistics are not updated by the attack), then mapped back to normalised inputs. Epsilon ramps up
linearly over the first ``warmup`` fraction of the training budget.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from medsight.config import AdversarialConfig
from medsight.planning.plan import ChannelNorm
from medsight.robustness.attacks import ATTACKS
from medsight.robustness.space import InputSpace

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class AdversarialTraining:
    """Makes the adversarial examples of a training batch for PGD-AT or TRADES."""

    def __init__(
        self, config: AdversarialConfig, norms: list[ChannelNorm], attack_loss: LossFn, sigmoid: bool = False
    ) -> None:
        """``attack_loss``: the task's loss per sample; ``sigmoid``: outputs are independent labels
        (multi-label, nested regions) rather than a softmax over classes."""
        self.config = config
        self.space = InputSpace(norms)
        self.eps = self.space.eps(config.eps)
        self.step_size = self.space.eps(config.step_size) if config.step_size else None
        self.attack_loss = attack_loss
        self.sigmoid = sigmoid

    def training_inputs(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, progress: float
    ) -> torch.Tensor:
        """The batch to train on: PGD examples for PGD-AT, the clean batch for TRADES."""
        return self.examples(model, x, y, progress) if self.config.method == "pgd" else x

    def extra_loss(
        self, model: nn.Module, x: torch.Tensor, out: torch.Tensor, progress: float
    ) -> torch.Tensor:
        """What is added to the task loss: TRADES' robustness term, else zero."""
        if self.config.method != "trades":
            return torch.zeros((), device=x.device)
        return self.trades_term(model, x, main_output(out, x.dim()), progress)

    def current_eps(self, progress: float) -> float:
        """Epsilon after the warm-up ramp (``progress``: fraction of the budget used)."""
        warmup = self.config.warmup
        return self.eps if warmup <= 0 else self.eps * min(1.0, progress / warmup)

    def examples(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, progress: float) -> torch.Tensor:
        """PGD examples of the normalised batch ``x`` against the task's per-sample loss."""
        return self._attack(model, x, self.attack_loss, y, progress)

    def trades_term(
        self, model: nn.Module, x: torch.Tensor, clean_logits: torch.Tensor, progress: float
    ) -> torch.Tensor:
        """TRADES' robustness term: beta x KL(p(x) || p(x')) with x' maximising that KL near x."""
        target = clean_logits.detach().float()
        x_adv = self._attack(model, x, self._kl, target, progress, random_start=True, small_start=True)
        adv_logits = main_output(model(x_adv), x.dim())
        return self.config.beta * self._kl(adv_logits.float(), clean_logits.float()).mean()

    def _kl(self, logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
        """KL(p_target || p) per sample, averaged over labels or pixels (Bernoulli KL for sigmoid outputs)."""
        if self.sigmoid:
            log_p, log_q = F.logsigmoid(target_logits), F.logsigmoid(logits)
            log_p1, log_q1 = F.logsigmoid(-target_logits), F.logsigmoid(-logits)
            kl = log_p.exp() * (log_p - log_q) + log_p1.exp() * (log_p1 - log_q1)
        else:
            kl = F.kl_div(
                F.log_softmax(logits, 1), F.log_softmax(target_logits, 1), log_target=True, reduction="none"
            )
            kl = kl.sum(dim=1, keepdim=True)
        return kl.flatten(1).mean(dim=1)

    def _attack(
        self,
        model: nn.Module,
        x: torch.Tensor,
        loss_fn: LossFn,
        target: torch.Tensor,
        progress: float,
        random_start: bool = True,
        small_start: bool = False,
    ) -> torch.Tensor:
        eps = self.current_eps(progress)
        if eps <= 0:
            return x
        u, state = self.space.to_unit(x.detach().float())
        forward = self.space.forward_fn(model, state)

        def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return loss_fn(main_output(out, x.dim()).float(), t)

        if small_start:  # TRADES starts from x + 0.001 N(0, 1) rather than a uniform draw in the ball
            u = (u + 0.001 * torch.randn_like(u)).clamp(0, 1)
        was_training = model.training
        model.eval()
        try:
            u_adv = ATTACKS.get("pgd")(
                forward,
                loss,
                u,
                target,
                eps=eps,
                steps=self.config.steps,
                step_size=self.step_size,
                random_start=random_start and not small_start,
            )
        finally:
            model.train(was_training)
        return self.space.from_unit(u_adv, state).to(x.dtype).detach()


def main_output(out: torch.Tensor | list[torch.Tensor], input_dim: int) -> torch.Tensor:
    """The full-resolution output of a model (deep supervision stacks heads on dim 1 in training)."""
    if isinstance(out, list | tuple):
        return out[0]
    return out[:, 0] if out.dim() == input_dim + 1 else out


def make_adversary(
    config: AdversarialConfig | None, norms: list[ChannelNorm], attack_loss: LossFn, sigmoid: bool
) -> AdversarialTraining | None:
    """An :class:`AdversarialTraining` when ``config`` is set, else None."""
    return None if config is None else AdversarialTraining(config, norms, attack_loss, sigmoid)
