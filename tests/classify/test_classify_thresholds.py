"""Decision thresholds chosen on validation: Youden's J, kept at 0.5 where validation is too small."""

from __future__ import annotations

import numpy as np

from medsight.tasks.classify.pipeline import MIN_THRESHOLD_CASES, youden_thresholds


def _binary(n_per_class: int, shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positive-class scores centred on 0.75 + shift (positives) and 0.55 + shift (negatives)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_class)
    p1 = np.clip(np.where(y == 1, 0.75, 0.55) + shift + rng.normal(0, 0.03, y.size), 0, 1)
    return y, np.stack([1 - p1, p1], axis=1)


def test_enough_validation_cases_move_the_threshold_to_youdens_optimum() -> None:
    y, probs = _binary(4 * MIN_THRESHOLD_CASES, shift=0.0)
    [t], reason = youden_thresholds(y, probs, "binary", ["neg", "pos"])
    assert 0.6 < t < 0.7  # between the two score clusters, far from 0.5
    assert reason.startswith("Youden's J on the") and "kept" not in reason


def test_too_few_cases_of_one_class_keep_half() -> None:
    y, probs = _binary(MIN_THRESHOLD_CASES - 1, shift=0.0)
    [t], reason = youden_thresholds(y, probs, "binary", ["neg", "pos"])
    assert t == 0.5 and "0.5 kept for pos" in reason


def test_multilabel_keeps_half_only_for_the_rare_label() -> None:
    rng = np.random.default_rng(1)
    n = 400
    common = np.arange(n) % 2
    rare = (np.arange(n) % 40 == 0).astype(int)  # 10 positives
    y = np.stack([common, rare], axis=1)
    probs = np.clip(
        np.stack([0.55 + 0.3 * common, 0.2 + 0.5 * rare], axis=1) + rng.normal(0, 0.02, (n, 2)), 0, 1
    )
    thresholds, reason = youden_thresholds(y, probs, "multilabel", ["common", "rare"])
    assert thresholds[1] == 0.5 and thresholds[0] != 0.5
    assert "0.5 kept for rare" in reason
