"""FGSM and PGD agree with torchattacks on the same model, inputs and seed (torchattacks: test-only)."""

from __future__ import annotations

import pytest
import torch
from robustness_testutils import Trained, per_sample_ce
from torch import nn

from medsight.robustness.attacks import ATTACKS

torchattacks = pytest.importorskip(
    "torchattacks", reason="torchattacks is not installed (the Makefile installs it for the cross-check)"
)


class UnitModel(nn.Module):
    """The trained model seen from unit-space inputs, as torchattacks expects ([0, 1] in, logits out)."""

    def __init__(self, trained: Trained) -> None:
        super().__init__()
        self.trained, self.model = trained, trained.model

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.trained.forward(u)


def _accuracy(trained: Trained, u: torch.Tensor) -> float:
    with torch.no_grad():
        return (trained.forward(u).argmax(1) == trained.y).float().mean().item()


# 64 samples: a power of two, so torchattacks' batch-mean loss has exactly the gradient signs of our sum
@pytest.mark.parametrize("eps", [4 / 255, 12 / 255])
def test_fgsm_matches_torchattacks(classifier: Trained, eps: float) -> None:
    theirs = torchattacks.FGSM(UnitModel(classifier), eps=eps)(classifier.u, classifier.y)
    ours = ATTACKS.get("fgsm")(classifier.forward, per_sample_ce, classifier.u, classifier.y, eps=eps)
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    assert _accuracy(classifier, ours) == _accuracy(classifier, theirs)
    if eps > 10 / 255:  # the images compared really are adversarial
        assert _accuracy(classifier, ours) < 0.5


@pytest.mark.parametrize("eps", [4 / 255, 12 / 255])
def test_pgd_with_random_start_matches_torchattacks(classifier: Trained, eps: float) -> None:
    alpha, steps = eps / 4, 7
    torch.manual_seed(123)
    attack = torchattacks.PGD(UnitModel(classifier), eps=eps, alpha=alpha, steps=steps, random_start=True)
    theirs = attack(classifier.u, classifier.y)
    torch.manual_seed(123)
    ours = ATTACKS.get("pgd")(
        classifier.forward, per_sample_ce, classifier.u, classifier.y, eps=eps, steps=steps, step_size=alpha
    )
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    assert _accuracy(classifier, ours) == _accuracy(classifier, theirs)
    if eps > 10 / 255:
        assert _accuracy(classifier, ours) < 0.5
    torch.manual_seed(124)  # and the random start matters: another seed gives another result
    other = ATTACKS.get("pgd")(
        classifier.forward, per_sample_ce, classifier.u, classifier.y, eps=eps, steps=steps, step_size=alpha
    )
    assert not torch.allclose(other, theirs, atol=1e-6, rtol=0)
