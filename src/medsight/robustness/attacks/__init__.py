"""Attacks by name: ``ATTACKS.get("pgd")(forward, loss_fn, x, y, eps=2/255)`` (contract: ``base``).

Registered: fgsm, bim, pgd, pgd-l2 (``gradient``), cw-l2 (``cw``), deepfool (``deepfool``), square
(``square``), universal (``universal``; ``fit_universal``/``apply_universal`` to fit on one split and
apply to another).
"""

from medsight.robustness.attacks import cw, deepfool, gradient, square  # noqa: F401  (register the attacks)
from medsight.robustness.attacks.base import (
    ATTACKS,
    Forward,
    LossFn,
    class_margin,
    input_gradient,
    margin_loss,
    misclassified,
    project,
)
from medsight.robustness.attacks.universal import apply_universal, fit_universal

__all__ = [
    "ATTACKS",
    "Forward",
    "LossFn",
    "apply_universal",
    "class_margin",
    "fit_universal",
    "input_gradient",
    "margin_loss",
    "misclassified",
    "project",
]
