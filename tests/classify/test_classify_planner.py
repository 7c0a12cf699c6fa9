"""Planning a classifier: input size, normalisation, width against the time budget, class weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from classify_testutils import medmnist_like

from medsight.data.classification import load_classification
from medsight.planning import search
from medsight.planning.search import StepProbe, measure_step
from medsight.tasks.classify import planning as planner
from medsight.tasks.classify.planning import plan_classification


@pytest.fixture()
def bars(tmp_path: Path):  # noqa: ANN201
    return load_classification(medmnist_like(tmp_path / "bars.npz", n=(400, 20, 20)))


def test_width_is_the_widest_that_covers_the_passes(bars, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    seconds = {0.25: 0.01, 0.5: 0.04, 1.0: 0.16}  # a machine where a step costs ~ width^2
    monkeypatch.setattr(search, "measure_step", lambda probe: seconds[probe.options["widen_factor"]])
    batch = plan_classification(bars, measure=False).batch_size
    passes_needed_s = planner.MIN_EPOCHS * len(bars.train) / batch  # steps for MIN_EPOCHS passes
    plan = plan_classification(bars, time_budget_s=passes_needed_s * 0.05)  # 0.04 s steps fit, 0.16 do not
    assert (
        plan.network_kwargs["widen_factor"] == 0.5
        and "widen_factor=1: 0.160 s per step" in plan.reasons["width"]
    )
    assert "widen_factor" not in plan_classification(bars, measure=False).network_kwargs  # no budget: full


def test_measured_step_on_this_machine_is_positive(bars) -> None:  # noqa: ANN001
    options = {"small_input": True, "widen_factor": 0.25}
    assert measure_step(StepProbe("resnet18", 2, bars.channels, 2, [20, 20], 4, "cpu", options)) > 0


def test_eight_bit_images_and_balanced_classes(bars) -> None:  # noqa: ANN001
    plan = plan_classification(bars, measure=False)
    assert plan.input_size == [28, 28] and plan.network_kwargs["small_input"] is True
    assert plan.normalization[0].scheme == "rgb" and plan.class_weights is None
    assert "balanced" in plan.reasons["class_weights"]


def test_imbalanced_classes_get_weights_and_large_images_shrink(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 60), ("val", 10), ("test", 10)):
        arrays[f"{split}_images"] = rng.integers(0, 255, size=(n, 300, 200), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 4 == 0).astype(np.int64)[:, None]  # 1 in 4 positive
    np.savez(tmp_path / "big.npz", **arrays)
    plan = plan_classification(load_classification(tmp_path / "big.npz"), measure=False)
    assert plan.input_size == [128, 85]  # longest side to the CPU's 128, aspect kept
    w = plan.class_weights
    assert w is not None and w[1] > w[0] and "1/sqrt" in plan.reasons["class_weights"]


def test_a_network_override_is_the_network_timed_and_planned(bars, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    timed: list[StepProbe] = []
    monkeypatch.setattr(search, "measure_step", lambda probe: timed.append(probe) or 0.001)
    plan = plan_classification(bars, time_budget_s=60, overrides={"network": "resnet34"})
    assert [(p.network, p.options) for p in timed] == [
        ("resnet34", {"widen_factor": w}) for w in planner.WIDTHS
    ]
    assert plan.network == "resnet34" and plan.network_kwargs == {"widen_factor": 1.0}
    timed.clear()
    plan = plan_classification(bars, time_budget_s=60, overrides={"network": "densenet121"})
    assert [(p.network, p.options) for p in timed] == [("densenet121", {})]  # no width option: timed once
    assert plan.network_kwargs == {} and plan.reasons["network"] == "set by the user"
