"""Datasets: load any layout into a :class:`DatasetSpec`, validate, fingerprint, split, convert.

Example::

    from medsight.data import load_dataset, validate_dataset, raise_on_issues, fingerprint_dataset
    spec = load_dataset("drive")                 # a registered name, an MSD folder or a CSV manifest
    raise_on_issues(validate_dataset(spec))
    fp = fingerprint_dataset(spec)
    folds = make_folds(spec.train, k=5, seed=0)
"""

from medsight.data import classification as _classification  # noqa: F401  (registers its datasets)
from medsight.data.adapters import DATASETS, DatasetAdapter
from medsight.data.convert import convert_to_msd
from medsight.data.fingerprint import (
    CaseFingerprint,
    ClassStats,
    Fingerprint,
    IntensityStats,
    channel_modality,
    default_cache_dir,
    fingerprint_dataset,
)
from medsight.data.loader import accepted_layouts, load_dataset
from medsight.data.phantoms import PHANTOMS, make_phantom_dataset
from medsight.data.reading import CaseData, read_case, read_case_image, read_label, read_roi
from medsight.data.spec import Case, DatasetSpec
from medsight.data.splits import load_splits, make_folds, save_splits
from medsight.data.validate import DataIssue, raise_on_issues, validate_dataset

__all__ = [
    "DATASETS",
    "PHANTOMS",
    "Case",
    "CaseData",
    "CaseFingerprint",
    "ClassStats",
    "DataIssue",
    "DatasetAdapter",
    "DatasetSpec",
    "Fingerprint",
    "IntensityStats",
    "accepted_layouts",
    "channel_modality",
    "convert_to_msd",
    "default_cache_dir",
    "fingerprint_dataset",
    "load_dataset",
    "load_splits",
    "make_folds",
    "make_phantom_dataset",
    "raise_on_issues",
    "read_case",
    "read_case_image",
    "read_label",
    "read_roi",
    "save_splits",
    "validate_dataset",
]
