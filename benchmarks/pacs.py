"""The PACS round trip on the real 20-slice CT series, against a local Orthanc with DICOMweb.

Usage (from the repo root, after `make setup`; needs the Debian packages orthanc and orthanc-dicomweb)::

    .venv/bin/python benchmarks/pacs.py                  # trains a tiny 3D CT run first (seconds)
    .venv/bin/python benchmarks/pacs.py --run RUN --repeats 5

Starts Orthanc on a loopback port, uploads ``totalseg-examples/example_ct_dicom`` with STOW-RS (its
blanked study / series / SOP UIDs filled in), then times ``medsight.deploy.pacs.pacs_predict``:
QIDO-RS search, WADO-RS retrieve, read, load the model, predict, build the DICOM SEG, STOW-RS store.
Without ``--run`` the model is a 1-channel 3D U-Net trained for a few iterations on 3 mm crops of
``example_ct_sm.nii.gz`` labelled by HU thresholds (body, bone): the timing, not the accuracy, is
measured. Prints a table and writes ``benchmarks/results/pacs.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from medsight.utils import atomic_write_text, cpu_count, shared_data_root

RESULTS = Path(__file__).parent / "results"


def tiny_run(data: Path, tmp: Path) -> Path:
    """A few-iteration 3D run on HU-threshold labels of CT crops (classes body, bone)."""
    from medsight import api
    from medsight.io import Image, read_image, write_image

    ct = read_image(data / "totalseg-examples" / "example_ct_sm.nii.gz")
    root = tmp / "ct"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for n in range(2):
        crop = ct.array[0, 20 + 30 * n : 68 + 30 * n, 25:73, 5:29].astype(np.int16)
        labels = np.where(crop > 300, 2, np.where(crop > -500, 1, 0)).astype(np.uint8)
        img = Image.from_array(crop, spacing=ct.spacing, channel_first=False)
        write_image(img, root / "imagesTr" / f"ct_{n:03d}_0000.nii.gz")
        write_image(img.with_array(labels[None]), root / "labelsTr" / f"ct_{n:03d}.nii.gz")
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "body": 1, "bone": 2}, "numTraining": 2}
    (root / "dataset.json").write_text(json.dumps({**meta, "file_ending": ".nii.gz"}))
    overrides = [
        "train.max_iterations=3",
        "train.progress=false",
        "plan.batch_size=2",
        "plan.patch_size=[16,16,16]",
        "plan.tta=false",
        "data.fold=all",
    ]
    return api.train(root, overrides=overrides, out=tmp / "runs", measure=False)


def series_datasets(folder: Path) -> list[Any]:
    """The example series with the UIDs its anonymisation blanked filled in (one study, one series)."""
    import pydicom
    from pydicom.uid import generate_uid

    study, series = generate_uid(), generate_uid()
    out = []
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPClassUID = ds.SOPClassUID or ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.SOPInstanceUID or ds.file_meta.MediaStorageSOPInstanceUID
        out.append(ds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a segmentation run (default: train a tiny one)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from medsight.deploy.dicomweb import DicomWeb
    from medsight.deploy.orthanc import LocalOrthanc
    from medsight.deploy.pacs import pacs_predict

    data = shared_data_root()
    if data is None:
        raise SystemExit("../shared/data not found (set MEDSIGHT_DATA)")
    with tempfile.TemporaryDirectory() as tmp, LocalOrthanc() as pacs:
        run = args.run or tiny_run(data, Path(tmp))
        datasets = series_datasets(data / "totalseg-examples" / "example_ct_dicom")
        start = time.perf_counter()
        DicomWeb(pacs.dicomweb_url).store(datasets)
        upload_s = time.perf_counter() - start
        rounds = []
        for _ in range(args.repeats):
            result = pacs_predict(pacs.dicomweb_url, datasets[0].StudyInstanceUID, run)
            rounds.append(result.timings)
    totals = [r["total"] for r in rounds]
    steps = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"PACS round trip, 20-slice CT (512x512), {args.repeats} repeats, Orthanc on loopback")
    print(f"  upload (STOW-RS, 20 instances): {upload_s:.2f} s")
    for k, v in steps.items():
        print(f"  {k:12s} {v:7.3f} s (median)")
    print(f"  total: median {statistics.median(totals):.2f} s, min {min(totals):.2f}, max {max(totals):.2f}")
    report = {
        "benchmark": "pacs",
        "series": "totalseg-examples/example_ct_dicom (20 slices, 512x512, JPEG 2000)",
        "run": str(run.name) if args.run else "tiny 3D U-Net (3 iterations, patch 16^3, 3 mm, no TTA)",
        "repeats": args.repeats,
        "upload_s": round(upload_s, 3),
        "round_trip_s": {"median": statistics.median(totals), "min": min(totals), "max": max(totals)},
        "steps_median_s": steps,
        "rounds": rounds,
        "machine": {
            "platform": platform.platform(),
            "cpus": cpu_count(),
            "python": platform.python_version(),
        },
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    path = atomic_write_text(RESULTS / "pacs.json", json.dumps(report, indent=2) + "\n")
    print(f"written {path}")


if __name__ == "__main__":
    main()
