"""Classification metrics against scikit-learn, hand-computed ECE, bootstrap CIs and Youden thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from medsight.errors import ConfigError, DataError
from medsight.metrics.classification import (
    bootstrap_summary,
    choose_thresholds,
    confusion_matrix,
    expected_calibration_error,
    point_metrics,
    predict_labels,
    reliability_bins,
)


def _softmax_data(n: int, k: int, seed: int = 0, signal: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += signal
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def _multilabel_data(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.4).astype(int)
    p = np.clip(0.4 + 0.35 * (y - 0.4) + rng.normal(0, 0.2, (n, k)), 0, 1)
    return y, p


NAMES3 = ["a", "b", "c"]


# ---------------------------------------------------------------------------------- known answers: sklearn


@pytest.mark.parametrize("problem", ["multiclass", "ordinal"])
def test_point_metrics_match_sklearn_multiclass(problem: str) -> None:
    y, p = _softmax_data(300, 3, seed=1)
    pred = p.argmax(axis=1)
    m = point_metrics(y, p, problem, NAMES3)
    assert m["all"]["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["all"]["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["all"]["auc_macro"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"))
    assert m["all"]["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["all"]["sensitivity_macro"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    for c, name in enumerate(NAMES3):
        assert m[name]["auc"] == pytest.approx(skm.roc_auc_score(y == c, p[:, c]))
        assert m[name]["f1"] == pytest.approx(skm.f1_score(y == c, pred == c))
        assert m[name]["precision"] == pytest.approx(skm.precision_score(y == c, pred == c))
        assert m[name]["sensitivity"] == pytest.approx(skm.recall_score(y == c, pred == c))
        assert m[name]["specificity"] == pytest.approx(skm.recall_score(y != c, pred != c))
    if problem == "ordinal":
        kappa = skm.cohen_kappa_score(y, pred, weights="quadratic", labels=[0, 1, 2])
        assert m["all"]["quadratic_weighted_kappa"] == pytest.approx(kappa)
        assert m["all"]["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    else:
        assert "quadratic_weighted_kappa" not in m["all"]


def test_point_metrics_match_sklearn_binary_with_threshold() -> None:
    y, p = _softmax_data(200, 2, seed=2, signal=1.0)
    pred = (p[:, 1] >= 0.3).astype(int)
    m = point_metrics(y, p, "binary", ["neg", "pos"], thresholds=[0.3])
    assert m["all"]["auc"] == pytest.approx(skm.roc_auc_score(y, p[:, 1]))
    assert m["all"]["auc_macro"] == pytest.approx(m["all"]["auc"])
    assert m["all"]["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["all"]["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - pred))
    assert m["all"]["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["all"]["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["all"]["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["all"]["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["all"]["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["pos"]["f1"] == pytest.approx(m["all"]["f1"])


def test_point_metrics_match_sklearn_multilabel() -> None:
    y, p = _multilabel_data(250, 4, seed=3)
    thr = [0.5, 0.4, 0.6, 0.45]
    pred = (p >= np.array(thr)).astype(int)
    names = ["w", "x", "y", "z"]
    m = point_metrics(y, p, "multilabel", names, thresholds=thr)
    assert m["all"]["accuracy"] == pytest.approx(1 - skm.hamming_loss(y, pred))
    assert m["all"]["exact_match"] == pytest.approx(skm.accuracy_score(y, pred))  # subset accuracy
    assert m["all"]["auc_macro"] == pytest.approx(skm.roc_auc_score(y, p, average="macro"))
    assert m["all"]["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    ba = np.mean([skm.balanced_accuracy_score(y[:, j], pred[:, j]) for j in range(4)])
    assert m["all"]["balanced_accuracy"] == pytest.approx(ba)
    for j, name in enumerate(names):
        assert m[name]["auc"] == pytest.approx(skm.roc_auc_score(y[:, j], p[:, j]))
        assert m[name]["sensitivity"] == pytest.approx(skm.recall_score(y[:, j], pred[:, j]))


def test_auc_handles_ties_like_sklearn() -> None:
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    s = np.array([0.2, 0.2, 0.5, 0.5, 0.5, 0.9, 0.9, 0.1])
    p = np.stack([1 - s, s], axis=1)
    assert point_metrics(y, p, "binary", ["n", "p"])["all"]["auc"] == pytest.approx(skm.roc_auc_score(y, s))


def test_auc_of_a_class_with_one_label_value_is_nan() -> None:
    y = np.array([0, 0, 1, 1, 0])  # class 2 never occurs
    p = np.full((5, 3), 1 / 3)
    p[:, 0] += np.linspace(-0.1, 0.1, 5)
    p[:, 1] -= np.linspace(-0.1, 0.1, 5)
    m = point_metrics(y, p, "multiclass", NAMES3)
    assert math.isnan(m["c"]["auc"]) and math.isnan(m["c"]["sensitivity"])
    assert math.isfinite(m["a"]["auc"]) and math.isfinite(m["all"]["auc_macro"])
    assert m["all"]["auc_macro"] == pytest.approx(np.mean([m["a"]["auc"], m["b"]["auc"]]))


def test_confusion_matrix_matches_sklearn() -> None:
    y, p = _softmax_data(100, 4, seed=4, signal=0.5)
    pred = p.argmax(axis=1)
    assert np.array_equal(confusion_matrix(y, pred, 4), skm.confusion_matrix(y, pred, labels=range(4)))
    yl, pl = _multilabel_data(60, 3, seed=5)
    predl = (pl >= 0.5).astype(int)
    assert np.array_equal(confusion_matrix(yl, predl, 3), skm.multilabel_confusion_matrix(yl, predl))
    with pytest.raises(DataError, match="pred"):
        confusion_matrix(y, pred + 4, 4)


def test_predict_labels() -> None:
    p = np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]])
    assert predict_labels(p, "binary").tolist() == [0, 1, 1]
    assert predict_labels(p, "binary", [0.65]).tolist() == [0, 0, 0]
    assert predict_labels(np.array([[0.2, 0.5, 0.3]]), "ordinal").tolist() == [1]
    ml = np.array([[0.2, 0.5], [0.9, 0.1]])
    assert predict_labels(ml, "multilabel").tolist() == [[0, 1], [1, 0]]
    assert predict_labels(ml, "multilabel", [0.1, 0.6]).tolist() == [[1, 0], [1, 0]]
    with pytest.raises(DataError, match="thresholds"):
        predict_labels(ml, "multilabel", [0.5])
    with pytest.raises(ConfigError, match="problem"):
        predict_labels(p, "regression")


def test_bad_inputs_raise_data_errors() -> None:
    p = np.array([[0.7, 0.3], [0.4, 0.6]])
    with pytest.raises(DataError, match="y"):
        point_metrics(np.array([0, 2]), p, "binary", ["a", "b"])
    with pytest.raises(DataError, match="probs"):
        point_metrics(np.array([0, 1]), np.array([[np.nan, 0.5], [0.5, 0.5]]), "binary", ["a", "b"])
    with pytest.raises(DataError, match="class_names"):
        point_metrics(np.array([0, 1]), p, "binary", ["a"])
    with pytest.raises(DataError, match="shape"):
        point_metrics(np.array([0, 1, 1]), p, "multiclass", ["a", "b"])


# ------------------------------------------------------------------------------------ calibration by hand


def test_ece_hand_computed_top_label() -> None:
    # 4 bins of width 0.25. Confidences 0.9, 0.8 (bin 4), 0.6 (bin 3), 0.3 (bin 2).
    p = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4]])
    y = np.array([0, 0, 0, 2])  # right, wrong, right, right
    # bin 4: conf mean 0.85, acc 0.5, 2 cases -> 0.35 * 2/4; bin 3: |0.6 - 1| * 1/4; bin 2: |0.4 - 1| * 1/4
    expected = 0.35 * 0.5 + 0.4 * 0.25 + 0.6 * 0.25
    assert expected_calibration_error(y, p, "multiclass", n_bins=4) == pytest.approx(expected)
    bins = reliability_bins(y, p, "multiclass", n_bins=4)
    assert bins["count"] == [0, 1, 1, 2]
    assert bins["accuracy"][1:] == pytest.approx([1.0, 1.0, 0.5])
    assert bins["confidence"][1:] == pytest.approx([0.4, 0.6, 0.85])
    assert math.isnan(bins["accuracy"][0]) and bins["edges"] == pytest.approx([0, 0.25, 0.5, 0.75, 1])


def test_ece_hand_computed_multilabel_and_point_metric() -> None:
    # every label probability is a binary prediction with confidence max(p, 1 - p)
    p = np.array([[0.9, 0.2], [0.7, 0.6]])
    y = np.array([[1, 0], [0, 0]])
    # confidences 0.9 (right), 0.8 (right), 0.7 (wrong), 0.6 (wrong); 2 bins: (0.5, 1] holds all four
    expected = abs((0.9 + 0.8 + 0.7 + 0.6) / 4 - 0.5)
    assert expected_calibration_error(y, p, "multilabel", n_bins=2) == pytest.approx(expected)
    y2, p2 = _multilabel_data(50, 3, seed=6)
    ece = expected_calibration_error(y2, p2, "multilabel")
    assert point_metrics(y2, p2, "multilabel", NAMES3)["all"]["ece"] == pytest.approx(ece)


def test_perfect_confident_predictions_have_zero_ece() -> None:
    y = np.array([0, 1, 2, 1])
    p = np.eye(3)[y]
    assert expected_calibration_error(y, p, "multiclass") == pytest.approx(0.0)


# ----------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_point_value_and_narrows_with_more_cases() -> None:
    widths = []
    for n in (100, 1600):
        y, p = _softmax_data(n, 3, seed=7, signal=1.0)
        s = bootstrap_summary(y, p, "multiclass", NAMES3, n_boot=300, seed=0)
        point = point_metrics(y, p, "multiclass", NAMES3)
        for group, metrics in s.items():
            for metric, v in metrics.items():
                assert v["n"] == n
                assert v["mean"] == pytest.approx(point[group][metric])
                assert v["ci_low"] <= v["mean"] <= v["ci_high"], (group, metric, v)
        widths.append({m: v["ci_high"] - v["ci_low"] for m, v in s["all"].items()})
    for metric in ("accuracy", "auc_macro", "f1_macro", "ece"):
        assert widths[1][metric] < 0.6 * widths[0][metric], metric


def test_bootstrap_auc_matches_sklearn_on_a_resample() -> None:
    """The weighted-rank AUC of a resample equals sklearn's AUC on the resampled cases."""
    from medsight.metrics import classification as cls

    y, p = _softmax_data(80, 3, seed=8, signal=0.8)
    p[:, 0] = np.round(p[:, 0], 1)  # ties
    idx = np.random.default_rng(1).integers(0, 80, 80)
    w = np.bincount(idx, minlength=80)[None, :].astype(float)
    prep = cls._prepare(y, p, "multiclass", NAMES3, None)
    stats = cls._stats(w, prep)
    for c, name in enumerate(NAMES3):
        assert stats[name]["auc"][0] == pytest.approx(skm.roc_auc_score(y[idx] == c, p[idx, c]))
    assert stats["all"]["f1_macro"][0] == pytest.approx(
        skm.f1_score(y[idx], p[idx].argmax(1), average="macro")
    )


def test_bootstrap_is_seeded_and_nan_aware() -> None:
    y = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 0])  # most resamples lack class 1 entirely
    p = np.tile([0.6, 0.4], (10, 1))
    p[3] = [0.3, 0.7]
    a = bootstrap_summary(y, p, "binary", ["n", "p"], n_boot=200, seed=3)
    b = bootstrap_summary(y, p, "binary", ["n", "p"], n_boot=200, seed=3)
    assert a == b
    assert a["all"]["auc"]["mean"] == 1.0 and a["all"]["auc"]["ci_low"] == 1.0  # finite resamples only
    one_class = bootstrap_summary(
        np.zeros(4, int), np.tile([0.6, 0.4], (4, 1)), "binary", ["n", "p"], n_boot=20
    )
    assert all(math.isnan(one_class["all"]["auc"][k]) for k in ("mean", "ci_low", "ci_high"))


def test_bootstrap_is_vectorised_over_resamples(monkeypatch: pytest.MonkeyPatch) -> None:
    """1000 resamples of 1000 cases cost a couple of batched metric evaluations, not 1000 (no timing)."""
    from medsight.metrics import classification as cls

    calls: list[np.ndarray] = []
    stats = cls._stats

    def counting(w: np.ndarray, prep: object) -> dict:
        calls.append(w)
        return stats(w, prep)

    monkeypatch.setattr(cls, "_stats", counting)
    y, p = _softmax_data(1000, 5, seed=9)
    s = bootstrap_summary(y, p, "ordinal", [str(i) for i in range(5)], n_boot=1000)
    chunk = cls._BOOT_CHUNK_ELEMENTS // 1000
    assert len(calls) == 1 + math.ceil(1000 / chunk) <= 3  # the point value, then whole chunks
    assert [w.shape for w in calls[1:]] == [(min(chunk, 1000), 1000)]
    assert np.all(calls[1].sum(axis=1) == 1000)  # each row: one resample's case counts
    qwk = s["all"]["quadratic_weighted_kappa"]
    assert 0 < qwk["ci_low"] < qwk["mean"] < qwk["ci_high"]
    monkeypatch.setattr(cls, "_stats", stats)
    prep = cls._prepare(y, p, "ordinal", [str(i) for i in range(5)], None)
    batch = stats(calls[1][:3], prep)["all"]["quadratic_weighted_kappa"]
    one = [stats(calls[1][i : i + 1], prep)["all"]["quadratic_weighted_kappa"][0] for i in range(3)]
    np.testing.assert_allclose(batch, one)  # batching changes no resample's value


# ---------------------------------------------------------------------------------------------- thresholds


def test_youden_threshold_known_answer() -> None:
    neg = [0.1, 0.2, 0.3, 0.6, 0.65]
    pos = [0.5, 0.7, 0.75, 0.8, 0.9]
    # cut in (0.65, 0.7]: sensitivity 4/5, specificity 1 -> J 0.8 (best); cut in (0.3, 0.5]: J 0.6
    s = np.array(neg + pos)
    y = np.array([0] * 5 + [1] * 5)
    thr = choose_thresholds(y, np.stack([1 - s, s], axis=1), "binary")
    assert thr == [pytest.approx(0.675)]
    fpr, tpr, _ = skm.roc_curve(y, s)
    pred = (s >= thr[0]).astype(int)
    j = skm.recall_score(y, pred) + skm.recall_score(1 - y, 1 - pred) - 1
    assert j == pytest.approx((tpr - fpr).max())


def test_youden_ties_go_to_the_threshold_closest_to_half() -> None:
    # J 0.75 for a cut in (0.3, 0.35] and in (0.45, 0.6]; the latter holds 0.5 itself
    s = np.array([0.1, 0.2, 0.3, 0.45, 0.35, 0.6, 0.7, 0.8])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert choose_thresholds(y, np.stack([1 - s, s], axis=1), "binary") == [0.5]
    # J 0.75 in (0.55, 0.6] (midpoint 0.575) and (0.65, 0.7] (midpoint 0.675): the first is closer to 0.5
    s = np.array([0.1, 0.2, 0.55, 0.65, 0.6, 0.7, 0.8, 0.9])
    assert choose_thresholds(y, np.stack([1 - s, s], axis=1), "binary") == [pytest.approx(0.575)]


def test_youden_threshold_reaches_the_best_j_of_the_roc_curve() -> None:
    rng = np.random.default_rng(10)
    for _ in range(5):
        y = rng.integers(0, 2, 60)
        s = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, 60), 0, 1).round(2)
        (thr,) = choose_thresholds(y, np.stack([1 - s, s], axis=1), "binary")
        fpr, tpr, _ = skm.roc_curve(y, s)
        pred = (s >= thr).astype(int)
        j = skm.recall_score(y, pred) + skm.recall_score(1 - y, 1 - pred) - 1
        assert j == pytest.approx((tpr - fpr).max())


def test_thresholds_multilabel_degenerate_and_argmax_problems() -> None:
    s = np.array([[0.1, 0.3], [0.2, 0.6], [0.8, 0.7], [0.9, 0.2]])
    y = np.array([[0, 1], [0, 1], [1, 1], [1, 1]])  # label 1 has positives only
    assert choose_thresholds(y, s, "multilabel") == [pytest.approx(0.5), 0.5]
    y1 = np.array([[0, 1], [0, 1], [1, 1], [1, 0]])
    thr = choose_thresholds(y1, s, "multilabel")
    assert thr[0] == 0.5 and thr[1] == pytest.approx(0.25)  # label 0: 0.5 separates; label 1: (0.2, 0.3]
    assert choose_thresholds(np.array([0, 1]), np.array([[0.6, 0.4], [0.3, 0.7]]), "multiclass") is None
