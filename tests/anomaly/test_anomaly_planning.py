"""Planning an anomaly detector: the normal class, the method, and the errors for bad options."""

from __future__ import annotations

import pytest
from tests.anomaly.anomaly_testutils import tiny_data

from medsight.errors import ConfigError, DataError
from medsight.tasks.anomaly.planning import METHODS, normal_class, plan_anomaly


def test_normal_class_is_found_by_name_or_must_be_given() -> None:
    assert normal_class(["malignant", "normal, benign"], None, "breast") == "normal, benign"
    assert normal_class(["abnormal", "healthy"], None, "x") == "healthy"  # 'abnormal' is not normal
    with pytest.raises(ConfigError, match=r"data.normal_class: not set.*'cat', 'dog'"):
        normal_class(["cat", "dog"], None, "pets")
    with pytest.raises(
        ConfigError, match=r"data.normal_class: 'normall' is not a class of x \(did you mean 'normal'"
    ):
        normal_class(["normal", "pneumonia"], "normall", "x")


def test_plan_scales_to_unit_range_and_rounds_the_size_to_the_network_multiple() -> None:
    data = tiny_data()
    plan = plan_anomaly(data, overrides={"model": "vae"})
    assert plan.normal_class == "normal" and plan.network == "conv_vae" and plan.input_size == [32, 32]
    assert plan.normalization[0].scheme == "rgb" and plan.normalization[0].std == 1.0
    assert plan.n_normal_train == 24 and plan.batch_size == 6
    for name in METHODS:
        assert plan_anomaly(data, overrides={"model": name}).network == METHODS[name].network


def test_unknown_model_gets_did_you_mean() -> None:
    with pytest.raises(ConfigError, match=r"plan.model: unknown anomaly model 'rmb' \(did you mean 'rbm'"):
        plan_anomaly(tiny_data(), overrides={"model": "rmb"})


def test_no_normal_training_case_is_a_data_error() -> None:
    data = tiny_data()
    data.splits["train"] = [c for c in data.train if c.classes == 1]
    with pytest.raises(DataError, match="no case of the normal class 'normal' in the training split"):
        plan_anomaly(data)


def test_multilabel_data_is_refused() -> None:
    data = tiny_data()
    data.problem = "multilabel"
    with pytest.raises(DataError, match="single-label"):
        plan_anomaly(data)


def test_score_must_suit_the_model() -> None:
    assert (
        plan_anomaly(tiny_data(), overrides={"model": "dbn", "score": "free_energy"}).score == "free_energy"
    )
    with pytest.raises(ConfigError, match=r"plan.score: 'free_energy' is not a score of plan.model=ae"):
        plan_anomaly(tiny_data(), overrides={"model": "ae", "score": "free_energy"})
