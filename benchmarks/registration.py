"""Registration on real data, learned beside every classical method in one run: reproduces BENCHMARKS.md.

Usage (from the repo root)::

    .venv/bin/python benchmarks/registration.py known --pairs 10 --spacing 3 --time-budget 5m
    .venv/bin/python benchmarks/registration.py head2d --time-budget 2m

Settings (issue 12):

- ``known`` (setting 1): the VoxelMorph T1 subject and its FreeSurfer aseg, resampled to ``--spacing``
  mm (labels nearest neighbour); ``--pairs`` known random smooth deformations (up to 8 mm, B-spline
  control points every 40 mm) of it, moving -> fixed. The learned run (``medsight.api.train``, atlas =
  the subject, trained on other random deformations of it for ``--time-budget``) and the classical
  affine, affine + B-spline and Demons register the same pairs (``medsight.api.evaluate``); Dice / HD95
  over the 30 evaluation labels of labels.npz, TRE against the true field inside the brain, folding %,
  SDlogJ, seconds per pair, and the speed ratio against SimpleITK B-spline in the same run.
- ``head2d`` (setting 4): the 2D CT head pair of monai-testing (no labels, no true field): NCC of the
  warped moving image to the fixed before and after, folding %, SDlogJ and seconds; the learned run is
  trained on random deformations of the fixed image (its atlas) for ``--time-budget``.

Writes ``benchmarks/results/registration-<setting>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from medsight import api
from medsight.utils import atomic_write_text, cpu_count, shared_data_root

RESULTS = Path(__file__).parent / "results"


def _known_dataset(root: Path, folder: Path, spacing: float) -> tuple[Path, list[int]]:
    """The subject and its aseg at ``spacing`` mm as images/ and labels/ (NIfTI), and the 30 labels."""
    import SimpleITK as sitk

    from medsight.tasks.register.images import working_image

    subject = root / "voxelmorph-subject"
    image = sitk.ReadImage(str(subject / "test_vol.nii.gz"), sitk.sitkFloat32)
    seg = np.load(subject / "test_scan.npz")["seg"]
    labels = sitk.GetImageFromArray(np.transpose(seg).astype(np.int16))  # the npz is (x, y, z)
    labels.CopyInformation(image)
    small = working_image(image, spacing)
    small_labels = sitk.Resample(labels, small, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    sitk.WriteImage(small, str(folder / "images" / "subject.nii.gz"))
    sitk.WriteImage(small_labels, str(folder / "labels" / "subject.nii.gz"))
    eval_labels = [int(v) for v in np.load(subject / "labels.npz")["labels"]]
    return folder, eval_labels


def known(args: argparse.Namespace, root: Path, work: Path) -> dict[str, Any]:
    data, eval_labels = _known_dataset(root, work / "voxelmorph-subject", args.spacing)
    overrides = [
        f"train.time_budget={args.time_budget}",
        "train.progress=false",
        f"plan.eval_pairs={args.pairs}",
        "plan.val_pairs=2",
        f"plan.eval_labels=[{', '.join(map(str, eval_labels))}]",
        f"plan.affine={args.affine}",
        f"plan.instance_steps={args.instance_steps}",
        f"plan.label_weight={args.label_weight}",
    ]
    t0 = time.perf_counter()
    run = api.train(data, task="register", overrides=overrides, out=work / "runs")
    summary = json.loads((run / "eval" / "val" / "summary.json").read_text())
    return _result("known", args, summary, run, time.perf_counter() - t0, overrides)


def head2d(args: argparse.Namespace, root: Path, work: Path) -> dict[str, Any]:
    import SimpleITK as sitk

    from medsight.tasks.register.pairwise import register
    from medsight.tasks.register.warping import scale_intensity

    fixed = root / "monai-testing" / "CT_2D_head_fixed.mha"
    moving = root / "monai-testing" / "CT_2D_head_moving.mha"
    data = work / "head2d"
    (data / "images").mkdir(parents=True)
    (data / "images" / "fixed.mha").write_bytes(fixed.read_bytes())
    overrides = [
        f"train.time_budget={args.time_budget}",
        "train.progress=false",
        "plan.eval_pairs=2",
        "plan.val_pairs=2",
        "plan.eval_baselines=[affine]",
        "plan.spacing=2.0",
        f"plan.instance_steps={args.instance_steps}",
    ]
    t0 = time.perf_counter()
    run = api.train(data, task="register", overrides=overrides, out=work / "runs")
    f_arr = scale_intensity(sitk.GetArrayFromImage(sitk.ReadImage(str(fixed), sitk.sitkFloat32)))

    def ncc(arr: np.ndarray) -> float:
        a, b = scale_intensity(arr) - 0.0, f_arr
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    rows: dict[str, Any] = {}
    m_arr = sitk.GetArrayFromImage(sitk.ReadImage(str(moving), sitk.sitkFloat32))
    rows["none"] = {"ncc": ncc(m_arr)}
    for method in ("affine", "bspline", "demons", "learned"):
        result = register(fixed, moving, method, run=run if method == "learned" else None, spacing=None)
        rows[method] = {
            "ncc": ncc(result.warped.array[0].T),
            "folding_pct": result.metrics["folding_pct"],
            "sdlogj": result.metrics["sdlogj"],
            "seconds": result.metrics["seconds"],
        }
    if "bspline" in rows:
        rows["speedup_learned_vs_bspline"] = round(rows["bspline"]["seconds"] / rows["learned"]["seconds"], 2)
    return _result("head2d", args, rows, run, time.perf_counter() - t0, overrides)


def _result(setting: str, args: argparse.Namespace, summary: dict[str, Any], run: Path, wall: float,
            overrides: list[str]) -> dict[str, Any]:  # fmt: skip
    return {
        "setting": setting,
        "command": f"benchmarks/registration.py {setting} "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "settings"),
        "overrides": overrides,
        "results": summary,
        "plan": json.loads((run / "plan.json").read_text()),
        "machine": {"cpus": cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        "date": datetime.now().isoformat(timespec="seconds"),
        "wall_s": round(wall, 1),
    }


def print_table(result: dict[str, Any]) -> None:
    res = result["results"]
    print(f"\n{result['setting']}  ({result['wall_s']} s)")
    if result["setting"] == "known":
        print(
            f"{'method':12s} {'Dice':>6s} {'HD95':>6s} {'TRE mm':>7s} {'fold %':>7s} {'SDlogJ':>7s} "
            f"{'s/pair':>7s}"
        )
        for method, m in res.items():
            if method in ("info", "mean"):
                continue
            print(
                f"{method:12s} {m['dice']['mean']:6.3f} {m['hd95']['mean']:6.2f} {m['tre']['mean']:7.2f} "
                f"{m['folding_pct']['mean']:7.3f} {m['sdlogj']['mean']:7.3f} {m['seconds']['mean']:7.2f}"
            )
        print(
            "info:",
            json.dumps(res.get("info", {}).get("seconds_per_pair")),
            res.get("info", {}).get("speedup_vs_bspline"),
        )
    else:
        print(json.dumps(res, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("settings", nargs="+", choices=["known", "head2d"])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--spacing", type=float, default=3.0)
    parser.add_argument("--time-budget", default="5m")
    parser.add_argument("--affine", default="none", choices=["none", "classical"])
    parser.add_argument("--instance-steps", type=int, default=0)
    parser.add_argument("--label-weight", type=float, default=0.0)
    args = parser.parse_args()
    root = shared_data_root()
    if root is None or not (root / "voxelmorph-subject").is_dir():
        raise SystemExit("../shared/data not found: the registration benchmark needs the real data")
    RESULTS.mkdir(exist_ok=True)
    for setting in args.settings:
        with tempfile.TemporaryDirectory(prefix=f"registration-{setting}-") as tmp:
            result = {"known": known, "head2d": head2d}[setting](args, root, Path(tmp))
            text = json.dumps(result, indent=2, default=float).replace(tmp, "<temporary folder>")
        atomic_write_text(RESULTS / f"registration-{setting}.json", text)
        print_table(result)


if __name__ == "__main__":
    main()
