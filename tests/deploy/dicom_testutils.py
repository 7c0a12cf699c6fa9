"""Helpers of the DICOM / PACS tests: a complete copy of the real CT series and a tiny 3D CT run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medsight.io import Image, read_image, write_image

PATIENT = {"PatientName": "Doe^Jane", "PatientID": "PID-4711-XYZ", "PatientBirthDate": "19610203"}

QUICK_3D = [
    "train.max_iterations=3",
    "train.iterations_per_epoch=3",
    "train.progress=false",
    "plan.batch_size=2",
    "plan.patch_size=[16,16,16]",
    "plan.tta=false",
    "plan.sliding_window_overlap=0.25",
    "data.fold=all",
]


def ct_series(data_root: Path) -> Path:
    """The real 20-slice CT series (skips the test when absent)."""
    import pytest

    folder = data_root / "totalseg-examples" / "example_ct_dicom"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


def complete_series(source: Path, dest: Path, tag: str = "") -> Path:
    """Copy the example series, filling the UIDs its anonymisation blanked (study, series, SOP) and
    giving it identifiable patient tags, so that logs and reports can be checked for leaks."""
    import pydicom
    from pydicom.uid import generate_uid

    dest.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(entropy_srcs=["study"]), generate_uid(entropy_srcs=["series", tag])
    for f in sorted(p for p in source.iterdir() if p.is_file()):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        for key, value in PATIENT.items():
            setattr(ds, key, value)
        ds.save_as(dest / f"{f.name}.dcm", enforce_file_format=True)
    return dest


def thresholds(hu: np.ndarray) -> np.ndarray:
    """1 where -500 < HU <= 300 (body), 2 where HU > 300 (bone), 0 elsewhere."""
    lab = np.zeros(hu.shape, np.uint8)
    lab[hu > -500] = 1
    lab[hu > 300] = 2
    return lab


def ct_dataset(data_root: Path, dest: Path, n_cases: int = 2) -> Path:
    """A tiny MSD folder of 3 mm CT crops labelled by :func:`thresholds` (classes body, bone)."""
    ct = read_image(data_root / "totalseg-examples" / "example_ct_sm.nii.gz")
    (dest / "imagesTr").mkdir(parents=True)
    (dest / "labelsTr").mkdir()
    for n in range(n_cases):
        crop = ct.array[0, 20 + 30 * n : 68 + 30 * n, 25:73, 5:29].astype(np.int16)
        img = Image.from_array(crop, spacing=ct.spacing, channel_first=False)
        write_image(img, dest / "imagesTr" / f"ct_{n:03d}_0000.nii.gz")
        write_image(img.with_array(thresholds(crop)[None]), dest / "labelsTr" / f"ct_{n:03d}.nii.gz")
    meta = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "body": 1, "bone": 2},
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
    }
    (dest / "dataset.json").write_text(json.dumps(meta))
    return dest


def train_ct_run(data_root: Path, tmp: Path) -> Path:
    """A 1-channel 3D segmentation run (classes body, bone) trained for a few iterations."""
    from medsight import api

    dataset = ct_dataset(data_root, tmp / "ct")
    return api.train(dataset, overrides=QUICK_3D, out=tmp / "runs", measure=False)
