"""MetricTable and bootstrap_ci: known answers, reproducibility, NaN handling, CSV/JSON round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medsight.metrics import MetricTable, bootstrap_ci


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible() -> None:
    values = np.random.default_rng(0).normal(0.8, 0.05, size=40)
    mean, low, high = bootstrap_ci(values, seed=3)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    # the percentile-bootstrap CI of a mean is close to mean +- 1.96 * sd / sqrt(n)
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert high - low == pytest.approx(2 * half, rel=0.2)
    assert bootstrap_ci(values, seed=3) == (mean, low, high)
    assert bootstrap_ci(values, seed=4) != (mean, low, high)


def test_bootstrap_ci_nan_handling_and_small_inputs() -> None:
    assert bootstrap_ci([1.0, float("nan"), 3.0, float("inf")])[0] == 2.0
    assert bootstrap_ci([0.5]) == (0.5, 0.5, 0.5)
    assert all(math.isnan(x) for x in bootstrap_ci([float("nan")]))
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1.0, 2.0], alpha=1.5)


def test_bootstrap_ci_many_rows_uses_bounded_chunks() -> None:
    values = np.random.default_rng(1).random(5000)  # 2000 x 5000 resamples: done in chunks
    mean, low, high = bootstrap_ci(values, n_boot=500)
    assert low < mean < high and high - low < 0.03


def _table() -> MetricTable:
    rows = [
        {"case_id": "001", "class": "liver", "dice": 0.9, "hd95": 2.0, "note": "ok"},
        {"case_id": "001", "class": "tumour", "dice": 0.5, "hd95": float("nan"), "note": "small"},
        {"case_id": "002", "class": "liver", "dice": 0.8, "hd95": 4.0, "note": "ok"},
        {"case_id": "002", "class": "tumour", "dice": 0.7, "hd95": 6.0, "note": "ok"},
    ]
    return MetricTable(rows=rows, keys=["case_id", "class"], info={"auc": np.float64(0.75), "n": np.int64(2)})


def test_summary_per_class_and_mean_group() -> None:
    s = _table().summary(n_boot=200)
    assert set(s) == {"liver", "tumour", "mean", "info"}
    assert s["liver"]["dice"]["mean"] == pytest.approx(0.85)
    assert s["tumour"]["hd95"] == {"mean": 6.0, "ci_low": 6.0, "ci_high": 6.0, "n": 1}
    # 'mean': per case the mean over classes (0.7 and 0.75), then over cases
    assert s["mean"]["dice"]["mean"] == pytest.approx(0.725)
    assert s["mean"]["hd95"]["mean"] == pytest.approx((2.0 + 5.0) / 2)  # case 001 ignores the NaN
    assert s["liver"]["dice"]["ci_low"] <= 0.85 <= s["liver"]["dice"]["ci_high"]
    assert "note" not in s["liver"]


def test_write_and_read_back(tmp_path) -> None:
    table = _table()
    table.write(tmp_path, n_boot=100)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tumour"]["hd95"]["n"] == 1
    assert summary["info"] == {"auc": 0.75, "n": 2}
    back = MetricTable.read_csv(tmp_path / "per_case.csv", keys=["case_id", "class"])
    assert back.rows[0]["case_id"] == "001"  # key columns stay text
    assert back.metric_names == ["dice", "hd95"]
    assert math.isnan(back.rows[1]["hd95"])
    assert back.summary(n_boot=100)["mean"]["dice"]["mean"] == pytest.approx(0.725)


def test_empty_csv_cells_are_missing_values(tmp_path) -> None:
    path = tmp_path / "per_case.csv"
    path.write_text("case_id,dice,hd95\na,0.5,\nb,0.7,3.0\n")
    table = MetricTable.read_csv(path)
    assert table.metric_names == ["dice", "hd95"]
    assert table.summary(n_boot=50)["all"]["hd95"]["n"] == 1


def test_boolean_columns_are_metrics() -> None:
    rows = [{"case_id": str(i), "correct": c} for i, c in enumerate([True, False, True, True])]
    assert MetricTable(rows=rows).summary(n_boot=50)["all"]["correct"]["mean"] == 0.75
