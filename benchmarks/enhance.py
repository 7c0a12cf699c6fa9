"""Enhancement and reconstruction on real data, ours beside every classical method: reproduces BENCHMARKS.md.

Usage (from the repo root)::

    .venv/bin/python benchmarks/enhance.py kspace4x --time-budget 4m
    .venv/bin/python benchmarks/enhance.py kspace8x lowdose-ct rician sr2x --time-budget 4m

Settings (degradations are simulated from real images: k-space from magnitude images, low-dose CT by
Poisson noise on a parallel-beam sinogram of the CT in HU):

- ``kspace4x`` / ``kspace8x``: brain MR. Train: the BraTS example OtherEXampleFromTCIA (t1, t1c, t2,
  flair), the MNI152 T1 template and the prostate T2 of monai-testing; validation (checkpoint choice and
  the baselines' weights): the VoxelMorph T1 subject; test (held-out subjects): BraTS-GLI-00001-000
  (4 contrasts) and TCGA-DU-7294 (4 contrasts). Network: the unrolled k-space cascade.
- ``rician`` (sigma 0.05 of the range) and ``sr2x`` (in-plane 2x): the same brain split, residual U-Net.
- ``lowdose-ct`` (25% dose, each image's own pixel size): train on TotalSegmentator's example CT (3 mm)
  and on copies of it resampled in-plane to 1 and 0.75 mm (the test series' pixel size: the noise of a
  dose depends on it), validate on its small version at 1 mm, test on the 20-slice DICOM CT series
  (0.98 mm) and pydicom's CT_small.dcm (0.66 mm).

Each trains with ``medsight.api.train`` on a CSV manifest (written into the run's parent folder),
evaluates the test split with ``medsight.api.evaluate`` (ours and every baseline on the same degraded
slices, PSNR / SSIM / NMSE with 95% bootstrap CIs over subjects, seconds per slice), prints a table and
writes ``benchmarks/results/enhance-<setting>.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from medsight import api
from medsight.utils import atomic_write_text, cpu_count, shared_data_root

RESULTS = Path(__file__).parent / "results"
BRAIN_TRAIN = [
    *(
        ("OtherEXampleFromTCIA", f"brats-tcga/OtherEXampleFromTCIA/OtherEXampleFromTCIA_{c}.nii.gz")
        for c in ("t1", "t1c", "t2", "fla")
    ),
    ("mni152", "mni152/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"),
    ("prostate", "monai-testing/test_0000_t2_tse_tra_4.nii.gz"),
]
# a brain: with the prostate as validation the SSIM stayed flat over 13 minutes of training while the
# training loss fell by a third, so the checkpoint it chose was a first-minute one
BRAIN_VAL = [("voxelmorph", "voxelmorph-subject/test_vol.nii.gz")]
BRAIN_TEST = [
    *(
        ("BraTS-GLI-00001-000", f"brats-tcga/BraTS-GLI-00001-000/BraTS-GLI-00001-000-{c}.nii.gz")
        for c in ("t1n", "t1c", "t2w", "t2f")
    ),
    *(
        ("TCGA-DU-7294", f"brats-tcga/TCGA-DU-7294/TCGA-DU-7294_{c}.nii.gz")
        for c in ("t1", "t1c", "t2", "fla")
    ),
]
CT_PIXELS_MM = (1.0, 0.75)  # the 3 mm training CT also resampled in-plane to the test series' pixel sizes
CT = {
    "train": [
        ("totalseg-ct", "totalseg-examples/example_ct.nii.gz"),
        *(("totalseg-ct", f"totalseg-examples/example_ct.nii.gz@{mm}mm") for mm in CT_PIXELS_MM),
    ],
    "val": [("totalseg-ct-small", "totalseg-examples/example_ct_sm.nii.gz@1.0mm")],
    "test": [
        ("totalseg-dicom", "totalseg-examples/example_ct_dicom"),
        ("pydicom-ct", "dicom/pydicom/CT_small.dcm"),
    ],
}
BRAIN = {"train": BRAIN_TRAIN, "val": BRAIN_VAL, "test": BRAIN_TEST}
CASCADE = ["plan.slice_size=[192, 192]", "plan.network_kwargs={base_filters: 16, cascades: 4}"]
SETTINGS: dict[str, dict[str, Any]] = {
    "kspace4x": {"data": BRAIN, "degradation": "kspace:4x", "plan": CASCADE},
    "kspace8x": {"data": BRAIN, "degradation": "kspace:8x", "plan": CASCADE},
    "lowdose-ct": {"data": CT, "degradation": "lowdose-ct:0.25,input=hu,spacing=image",
                   "plan": ["plan.network_kwargs={base_filters: 16}"]},
    "rician": {"data": BRAIN, "degradation": "rician:0.05",
               "plan": ["plan.slice_size=[192, 192]", "plan.network_kwargs={base_filters: 16}"]},
    "sr2x": {"data": BRAIN, "degradation": "sr:2x",
             "plan": ["plan.slice_size=[192, 192]", "plan.network_kwargs={base_filters: 16}"]},
}  # fmt: skip
ANCHORS = {
    "kspace4x": "fastMRI brain 4x (multi-coil raw k-space): U-Net SSIM 0.944, E2E-VarNet 0.965",
    "lowdose-ct": "RED-CNN: +4.6 dB PSNR over the low-dose input on the Mayo abdomen data",
}


def peak_rss_gb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024**2


def resampled_in_plane(source: Path, mm: float, target: Path) -> Path:
    """A CT ``source`` resampled (B-spline) to ``mm`` pixels in its first two axes, the slice spacing kept,
    air (-1024 HU) outside."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(source), sitk.sitkFloat32)
    spacing = [mm, mm, *img.GetSpacing()[2:]]
    size = [
        max(1, round(n * old / new))
        for n, old, new in zip(img.GetSize(), img.GetSpacing(), spacing, strict=True)
    ]
    out = sitk.Resample(img, size, sitk.Transform(), sitk.sitkBSpline, img.GetOrigin(), spacing,
                        img.GetDirection(), -1024.0, sitk.sitkFloat32)  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(out, str(target))
    return target


def image_file(rel: str, root: Path, folder: Path) -> tuple[str, Path]:
    """A data entry's case name and file: ``path@<mm>mm`` is ``path`` resampled in-plane into ``folder``."""
    rel, _, pixel = rel.partition("@")
    name = Path(rel).name.split(".")[0]
    if not pixel:
        return name, root / rel
    name = f"{name}-{pixel}"
    return name, resampled_in_plane(
        root / rel, float(pixel.removesuffix("mm")), folder / "resampled" / f"{name}.nii.gz"
    )


def write_manifest(folder: Path, data: dict[str, list[tuple[str, str]]], root: Path) -> Path:
    """A CSV manifest of the setting's files (paths relative to the CSV), one row per image."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case_id", "image", "patient_id", "split"])
        for split, items in data.items():
            for subject, rel in items:
                name, file = image_file(rel, root, folder)
                writer.writerow([f"{subject}/{name}", os.path.relpath(file, folder), subject, split])
    return path


def run_setting(name: str, budget: str, out: Path) -> dict[str, Any]:
    root = shared_data_root()
    if root is None:
        raise SystemExit("../shared/data not found: the enhance benchmark needs the real data")
    setting = SETTINGS[name]
    manifest = write_manifest(out / name, setting["data"], root)
    overrides = [
        f"plan.degradation={setting['degradation']}",
        f"train.time_budget={budget}",
        "train.progress=false",
        "train.iterations_per_epoch=20",
        "plan.eval_slices_per_case=4",
        *setting["plan"],
    ]
    start = time.perf_counter()
    run = api.train(manifest, task="enhance", overrides=overrides, out=out / name, measure=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    summary = api.evaluate(run, split="test")
    eval_s = time.perf_counter() - start
    plan = json.loads((run / "plan.json").read_text())
    return {
        "setting": name,
        "degradation": plan["degradation"],
        "simulated": "k-space simulated from magnitude images"
        if plan["simulated_kspace"]
        else "simulated degradation",
        "network": plan["network"],
        "network_kwargs": plan["network_kwargs"],
        "slice_size": plan["slice_size"],
        "results": {m: v for m, v in summary.items() if m != "info"},
        "info": summary.get("info", {}),
        "anchor": ANCHORS.get(name),
        "config": {"overrides": overrides, "data": setting["data"]},
        "run": str(run),
        "train_wall_s": round(train_s, 1),
        "eval_wall_s": round(eval_s, 1),
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['setting']}: {result['degradation']} ({result['simulated']}), test subjects "
          f"{result['info'].get('subjects')}, slices {result['info'].get('slices')}")  # fmt: skip
    print(f"{'method':<12} {'PSNR [95% CI]':<28} {'SSIM [95% CI]':<28} s/slice")
    for method, metrics in result["results"].items():
        p, s = metrics["psnr"], metrics["ssim"]
        sec = result["info"].get("seconds_per_slice", {}).get(method, float("nan"))
        print(f"{method:<12} {p['mean']:6.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}]{'':<8} "
              f"{s['mean']:.4f} [{s['ci_low']:.4f}, {s['ci_high']:.4f}]{'':<4} {sec:.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("settings", nargs="+", choices=sorted(SETTINGS))
    parser.add_argument("--time-budget", default="4m", help="training budget per setting")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-enhance"))
    args = parser.parse_args()
    for name in args.settings:
        start = time.perf_counter()
        result = run_setting(name, args.time_budget, args.out)
        result.update({
            "machine": {
                "platform": platform.platform(), "cpu_count": cpu_count(), "processor": platform.processor()
            },
            "date": datetime.now().isoformat(timespec="seconds"),
            "wall_s": round(time.perf_counter() - start, 1),
            "peak_rss_gb": round(peak_rss_gb(), 2),
            "time_budget": args.time_budget,
        })  # fmt: skip
        print_table(result)
        RESULTS.mkdir(exist_ok=True)
        atomic_write_text(RESULTS / f"enhance-{name}.json", json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
