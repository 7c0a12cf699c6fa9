"""Real data (../shared/data): learning happens on DRIVE, and DICOM in keeps its geometry out.

These check that a metric is clearly above chance after a short training, never a timing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsight import api
from medsight.data import load_dataset, read_case
from medsight.io import read_image
from medsight.metrics import pixel_metrics
from medsight.runs import open_run
from medsight.tasks.segment.pipeline import load_model

pytestmark = pytest.mark.realdata


def test_drive_vessels_are_learned_above_chance(data_root: Path, tmp_path: Path) -> None:
    overrides = [
        "data.fold=all",
        "train.max_iterations=80",
        "train.iterations_per_epoch=40",
        "train.progress=false",
        "plan.patch_size=[128,128]",
        "plan.batch_size=4",
        "plan.tta=false",
    ]
    run = api.train("drive", overrides=overrides, out=tmp_path, measure=False)
    task, model = load_model(open_run(run))
    spec = load_dataset("drive")
    aucs, f1s = [], []
    for case in spec.test[:3]:
        data = read_case(spec, case)
        pred = task.predict(model, data)
        m = pixel_metrics(pred.probabilities, data.label.array[0] == 1, roi=data.roi.array[0])
        aucs.append(m["auc"])
        f1s.append(m["f1"])
    # chance is AUC 0.5 and F1 ~0.2 (vessels are ~12% of the field of view); 80 steps gave 0.92 / 0.71
    assert np.mean(aucs) > 0.85, aucs
    assert np.mean(f1s) > 0.5, f1s


def test_dicom_series_in_nifti_out_keeps_geometry(data_root: Path, tmp_path: Path) -> None:
    overrides = [
        "data.fold=all",
        "train.max_iterations=2",
        "train.iterations_per_epoch=2",
        "train.progress=false",
        "plan.patch_size=[32,32,32]",
        "plan.batch_size=2",
        "plan.tta=false",
    ]
    run = api.train("totalseg", overrides=overrides, out=tmp_path, measure=False)
    series = data_root / "totalseg-examples" / "example_ct_dicom"
    written = api.predict(run, series, tmp_path / "pred")
    assert [p.name for p in written] == ["example_ct_dicom.nii.gz"]
    source, mask = read_image(series), read_image(written[0])
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.spacing, source.spacing, atol=1e-4)
    np.testing.assert_allclose(mask.origin, source.origin, atol=1e-3)
    np.testing.assert_allclose(mask.direction, source.direction, atol=1e-5)
    assert set(np.unique(mask.array)) <= set(open_run(run).plan.label_values)
