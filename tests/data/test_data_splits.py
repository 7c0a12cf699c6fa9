"""Patient-level folds: no patient in two validation folds, reproducible, saved atomically."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from medsight.data import Case, load_splits, make_folds, save_splits
from medsight.errors import DataError


def _cases() -> list[Case]:
    # 11 patients with 1 to 3 cases each (23 cases)
    cases = []
    for p in range(11):
        for v in range(1 + p % 3):
            cases.append(Case(f"p{p:02d}_v{v}", (Path(f"p{p}_{v}.nii.gz"),), patient_id=f"patient{p:02d}"))
    return cases


def test_folds_are_patient_level_and_cover_every_case_once() -> None:
    cases = _cases()
    folds = make_folds(cases, k=5, seed=0)
    patient_of = {c.case_id: c.patient for c in cases}
    assert len(folds) == 5
    val_ids = [cid for f in folds for cid in f["val"]]
    assert sorted(val_ids) == sorted(patient_of)  # each case validated exactly once
    for f in folds:
        assert set(f["train"]).isdisjoint(f["val"]) and len(f["train"]) + len(f["val"]) == len(cases)
        assert {patient_of[c] for c in f["train"]}.isdisjoint({patient_of[c] for c in f["val"]})
    sizes = [len(f["val"]) for f in folds]
    assert max(sizes) - min(sizes) <= 3  # balanced up to one patient's cases


def test_folds_are_reproducible_and_seeded() -> None:
    cases = _cases()
    assert make_folds(cases, k=5, seed=0) == make_folds(list(reversed(cases)), k=5, seed=0)
    assert make_folds(cases, k=5, seed=0) != make_folds(cases, k=5, seed=1)


def test_fewer_patients_than_folds(caplog: pytest.LogCaptureFixture) -> None:
    cases = [Case(f"c{i}", (Path("x"),), patient_id=f"p{i % 3}") for i in range(6)]
    with caplog.at_level(logging.WARNING):
        folds = make_folds(cases, k=5)
    assert len(folds) == 3 and "only 3 patients for 5 folds" in caplog.text
    with pytest.raises(DataError, match=r"2 case\(s\) from 1 patient\(s\)"):
        make_folds([Case("a", (), patient_id="p"), Case("b", (), patient_id="p")])
    with pytest.raises(DataError, match="appears twice"):
        make_folds(["a", "a", "b"])
    with pytest.raises(DataError, match="k must be at least 2"):
        make_folds(["a", "b"], k=1)


def test_save_and_load_splits(tmp_path: Path) -> None:
    folds = make_folds([f"case_{i}" for i in range(7)], k=3, seed=4)
    path = save_splits(tmp_path / "splits.json", folds)
    assert load_splits(path) == folds
    path.write_text('[{"train": ["a"], "val": ["a"]}]')
    with pytest.raises(DataError, match="both train and val"):
        load_splits(path)
    path.write_text('{"train": []}')
    with pytest.raises(DataError, match="non-empty list of folds"):
        load_splits(path)
    with pytest.raises(DataError, match="cannot read splits"):
        load_splits(tmp_path / "missing.json")
