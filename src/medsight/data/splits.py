"""Patient-level k-fold splits, saved as nnU-Net's ``splits_final.json`` layout.

Every patient's cases land in the same fold, each patient is in exactly one validation fold, and
the same (cases, k, seed) always gives the same folds::

    folds = make_folds(spec.train, k=5, seed=0)   # [{"train": [...], "val": [...]}, ...]
    save_splits(run_dir / "splits.json", folds)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medsight.data.spec import Case, DatasetSpec
from medsight.errors import DataError
from medsight.utils import atomic_write_text

log = logging.getLogger(__name__)

Folds = list[dict[str, list[str]]]


def _groups(cases: Sequence[Case | str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    seen: set[str] = set()
    for c in cases:
        cid, patient = (c, c) if isinstance(c, str) else (c.case_id, c.patient)
        if cid in seen:
            raise DataError(f"make_folds: case id {cid!r} appears twice")
        seen.add(cid)
        groups.setdefault(patient, []).append(cid)
    return groups


def make_folds(cases: Sequence[Case | str] | DatasetSpec, k: int = 5, seed: int = 0) -> Folds:
    """Split cases into ``k`` folds at patient level (cases are grouped by ``Case.patient``).

    Patients are shuffled with ``seed``, then assigned largest group first to the fold with the
    fewest cases (like scikit-learn's GroupKFold, but seeded). With fewer patients than ``k``,
    ``k`` drops to the number of patients and a warning is logged.

    Args:
        cases: training cases (or case ids, each its own patient), or a spec (its ``train`` cases).
        k: number of folds (>= 2).
        seed: shuffling seed.

    Returns:
        One ``{"train": [...], "val": [...]}`` per fold, case ids sorted.

    Raises:
        DataError: ``k`` < 2, duplicate case ids, or fewer than 2 patients.
    """
    if isinstance(cases, DatasetSpec):
        cases = cases.train
    if k < 2:
        raise DataError(f"make_folds: k must be at least 2, found {k}")
    groups = _groups(cases)
    if len(groups) < 2:
        raise DataError(
            f"make_folds: {len(cases)} case(s) from {len(groups)} patient(s); at least 2 patients are needed"
        )
    if len(groups) < k:
        log.warning("only %d patients for %d folds: using %d folds", len(groups), k, len(groups))
        k = len(groups)
    rng = np.random.default_rng(seed)
    patients = sorted(groups)
    order = [patients[i] for i in rng.permutation(len(patients))]
    order.sort(key=lambda p: -len(groups[p]))  # stable: ties keep the seeded order
    sizes = [0] * k
    members: list[list[str]] = [[] for _ in range(k)]
    for p in order:
        f = int(np.argmin(sizes))
        members[f] += groups[p]
        sizes[f] += len(groups[p])
    all_ids = sorted(cid for ids in groups.values() for cid in ids)
    return [{"train": sorted(set(all_ids) - set(val)), "val": sorted(val)} for val in members]


def save_splits(path: str | Path, folds: Folds) -> Path:
    """Write ``folds`` as JSON atomically (nnU-Net ``splits_final.json`` layout)."""
    _check(folds, str(path))
    return atomic_write_text(Path(path), json.dumps(folds, indent=1) + "\n")


def load_splits(path: str | Path) -> Folds:
    """Read folds written by :func:`save_splits` (or by nnU-Net).

    Raises:
        DataError: missing file, bad JSON, or not a list of ``{"train": [...], "val": [...]}``.
    """
    path = Path(path)
    try:
        folds = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read splits ({exc})") from exc
    _check(folds, str(path))
    return [{"train": list(f["train"]), "val": list(f["val"])} for f in folds]


def _check(folds: object, where: str) -> None:
    if not isinstance(folds, list) or not folds:
        raise DataError(f"{where}: splits must be a non-empty list of folds, found {type(folds).__name__}")
    for i, f in enumerate(folds):
        ok = isinstance(f, dict) and all(isinstance(f.get(s), list) for s in ("train", "val"))
        if not ok or not all(isinstance(x, str) for s in ("train", "val") for x in f[s]):
            raise DataError(f"{where}: fold {i} must be {{'train': [ids], 'val': [ids]}}, found {f!r}"[:300])
        overlap = set(f["train"]) & set(f["val"])
        if overlap:
            raise DataError(f"{where}: fold {i} has cases in both train and val: {sorted(overlap)[:5]}")
