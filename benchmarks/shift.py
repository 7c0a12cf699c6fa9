"""Another camera on real data: a run's score on its test images under natural shifts, at file level.

Usage (from the repo root, after `make setup`)::

    .venv/bin/python benchmarks/shift.py drive --run runs/benchmarks/segment-drive-... --label before
    .venv/bin/python benchmarks/shift.py drive --run runs/benchmarks/segment-drive-... --label after \
        --photo-scale
    .venv/bin/python benchmarks/shift.py drive --run ... --label ood --ood-only    # only the flag, no network
    .venv/bin/python benchmarks/shift.py report --runs RUN1 RUN2 RUN3 --label pneumoniamnist

``report`` gathers the natural-shift report of each run (``medsight robustness --run RUN --shifts all
--attack none``, its ``RUN/robustness/robustness.json``) into one table: the task's metrics per shift and
severity, mean and sd over the runs (seeds).

``--tta off`` predicts without flip TTA (four times faster); ``--settings`` keeps only some settings
(the clean one is always scored).

Each test image (and its reference and field-of-view mask) is changed as another camera would change it
(rescaled by 1.5-1.8x, the usual resolution gap between fundus cameras; another white balance; gamma,
contrast, blur, sensor noise, JPEG compression; a rescale together with a colour change) and predicted
through the run's own predictor (its preprocessing, photo scale and TTA included), so what the planner
does about scale is part of what is measured. Writes ``benchmarks/results/shift-<dataset>-<label>.json``
with per-setting F1 / sensitivity / specificity inside the field of view (95% bootstrap CIs over images),
and the out-of-distribution flag's rate on the clean images and its AUROC per shift (the run's
``input_profile.json``, fitted from its training images when the run predates it).

``--photo-scale`` predicts with the plan today's planner makes for the same run: the field-of-view scale
(:mod:`medsight.transforms.photo_scale`) measured on the training images. On DRIVE, whose images all come
from one camera, it leaves every training image as it is (each is within 5% of the median), so the
network it would train is the very network of the run: only prediction changes.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.data import load_dataset, read_case
from medsight.data.reading import CaseData
from medsight.deploy.feature_profile import FeatureCheck, feature_profile, network_view
from medsight.deploy.ood import InputProfile, case_image, fit_profile
from medsight.io import Image
from medsight.metrics import bootstrap_ci, pixel_metrics
from medsight.runs import open_run
from medsight.tasks.segment.pipeline import load_model
from medsight.tasks.segment.planning import plan_photo_scale
from medsight.transforms.segmentation import resize
from medsight.utils import atomic_write_text, cpu_count

RESULTS = Path(__file__).parent / "results"
WARM_CAMERA = (1.15, 0.92, 0.8)  # per-channel gains: a warmer white balance

Shift = Callable[[np.ndarray], np.ndarray]  # (C, H, W) intensities 0..255 -> the same


def rescale(factor: float) -> Callable[[np.ndarray, bool], np.ndarray]:
    """The whole picture at ``factor`` times the pixels (a higher-resolution camera, same field). Label
    maps (the reference, the field of view) are resampled as nnU-Net resamples segmentations: each label's
    mask linearly, then the label of the largest value; nearest-neighbour sampling would give a 1-2 px
    vessel the staircase edges of an enlarged pixel grid, which no annotation at the new resolution has."""

    def apply(array: np.ndarray, labels: bool) -> np.ndarray:
        shape = tuple(round(s * factor) for s in array.shape[1:])
        if not labels:
            return resize(array.astype(np.float32), shape)
        values = np.unique(array)
        masks = np.stack([resize((array == v).astype(np.float32), shape)[0] for v in values])
        return values[np.argmax(masks, axis=0)][None].astype(array.dtype)

    return apply


def colour(array: np.ndarray) -> np.ndarray:
    return array * np.asarray(WARM_CAMERA, dtype=np.float32).reshape(-1, 1, 1)


def gamma(value: float) -> Shift:
    return lambda a: 255 * (np.clip(a, 0, 255) / 255) ** value


def contrast(factor: float) -> Shift:
    return lambda a: a.mean() + (a - a.mean()) * factor


def blur(sigma: float) -> Shift:
    from scipy import ndimage

    return lambda a: ndimage.gaussian_filter(a, (0, sigma, sigma))


def noise(sd: float) -> Shift:
    return lambda a: a + np.random.default_rng(0).normal(0, sd, a.shape)


def jpeg(quality: int) -> Shift:
    from PIL import Image as PILImage

    def apply(a: np.ndarray) -> np.ndarray:
        buffer = io.BytesIO()
        pixels = np.moveaxis(np.clip(a, 0, 255).round().astype(np.uint8), 0, -1)
        PILImage.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        return np.moveaxis(np.asarray(PILImage.open(io.BytesIO(buffer.getvalue())), dtype=np.float32), -1, 0)

    return apply


def settings() -> dict[str, tuple[Shift | None, float | None]]:
    """Name -> (intensity change or None, rescale factor or None)."""
    return {
        "clean": (None, None),
        "rescale 1.5x": (None, 1.5),
        "rescale 1.7x": (None, 1.7),
        "rescale 1.8x": (None, 1.8),
        "colour (warm camera)": (colour, None),
        "gamma 1.6": (gamma(1.6), None),
        "gamma 0.6": (gamma(0.6), None),
        "contrast x0.6": (contrast(0.6), None),
        "blur sigma 1.5": (blur(1.5), None),
        "noise sd 8": (noise(8.0), None),
        "jpeg q20": (jpeg(20), None),
        "rescale 1.7x + colour": (colour, 1.7),
    }


def shifted_case(data: CaseData, shift: Shift | None, factor: float | None) -> CaseData:
    """The case as another camera would show it: image, reference and field of view moved alike."""
    image, label, roi = data.image.array, data.label.array, data.roi.array
    if factor is not None:
        move = rescale(factor)
        image, label, roi = move(image, False), move(label, True), move(roi, True)
    if shift is not None:
        image = shift(image.astype(np.float32))
    image = np.clip(image, 0, 255).astype(np.float32)
    as_image = lambda a: Image.from_array(a)  # noqa: E731  (photographs: unit spacing)
    return CaseData(data.case, as_image(image), as_image(label), as_image(roi))


def ci(values: list[float]) -> dict[str, float]:
    mean, low, high = bootstrap_ci(values)
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": len(values)}


def bench(args: argparse.Namespace) -> dict[str, Any]:
    run = open_run(args.run)
    task, model = load_model(run)
    spec = load_dataset(args.dataset)
    if args.photo_scale:
        task.plan = plan_photo_scale(spec.train, task.plan.model_copy(update={"photo_scale": None}), {})
    if args.tta is not None:
        task.plan = task.plan.model_copy(update={"tta": args.tta == "on"})
    profile = InputProfile.load(run.path) or fit_profile([case_image(c) for c in spec.train])
    profile_note = f"{profile.fitted_on} images, threshold {profile.threshold:.2f} ({profile.calibration})"
    features = feature_check(run, spec)
    features_note = f"{len(features.profile.layers)} layers, threshold {features.threshold:.2f}"
    cases = [read_case(spec, c) for c in spec.test[: args.max_cases]]
    table, seconds, ood, feats = {}, {}, {}, {}
    chosen = {k: v for k, v in settings().items() if args.settings is None or k in {"clean", *args.settings}}
    for name, (shift, factor) in chosen.items():
        started = time.perf_counter()
        rows = []
        with torch.inference_mode():
            for data in cases:
                moved = shifted_case(data, shift, factor)
                ood.setdefault(name, []).append(profile.check(moved.image).score)
                feats.setdefault(name, []).append(features.score(moved.image))
                if not args.ood_only:
                    pred = task.predict(model, moved)
                    fov, ref = moved.roi.array[0] > 0, moved.label.array[0] == 1
                    rows.append(pixel_metrics(pred.probabilities, ref, roi=fov))
        seconds[name] = round(time.perf_counter() - started, 1)
        if rows:
            table[name] = {k: ci([r[k] for r in rows]) for k in ("f1", "sensitivity", "specificity", "auc")}
            print(f"{name:24s} F1 {table[name]['f1']['mean']:.3f}  ({seconds[name]:.0f} s)", flush=True)
    flags = flag_summaries(ood, profile.threshold, feats, features.threshold)
    notes = {"profile": profile_note, "feature_profile": features_note + f" ({features.profile.calibration})"}
    if args.ood_only:
        return {"run": run.path.name, **flags, **notes}
    clean = table["clean"]["f1"]["mean"]
    drops = {name: round(clean - row["f1"]["mean"], 4) for name, row in table.items() if name != "clean"}
    return {
        "run": run.path.name,
        "tta": task.plan.tta,
        "plan": _plan_summary(task.plan),
        "table": table,
        "f1_drop": drops,
        **flags,
        **notes,
        "seconds": seconds,
    }


def feature_check(run: Any, spec: Any) -> FeatureCheck:
    """The run's feature check, or (a run that predates feature profiles) one fitted now on its training
    images with leave-one-out calibration, as training would have fitted it."""
    saved = FeatureCheck.load(run)
    if saved is not None:
        return saved
    view = network_view(run)
    fitted = feature_profile(view, [case_image(c) for c in spec.train], None)
    return FeatureCheck(view, fitted)


def flag_summaries(
    ood: dict[str, list[float]], threshold: float, feats: dict[str, list[float]], feature_threshold: float
) -> dict[str, Any]:
    """The flag on image statistics, on the network's features, and both together (either beyond its
    threshold; ranked by the larger of score / threshold)."""
    both = {
        name: [max(a / threshold, b / feature_threshold) for a, b in zip(ood[name], feats[name], strict=True)]
        for name in ood
    }
    return {
        "ood": ood_summary(ood, threshold),
        "ood_features": ood_summary(feats, feature_threshold),
        "ood_combined": ood_summary(both, 1.0),
    }


def ood_summary(scores: dict[str, list[float]], threshold: float) -> dict[str, dict[str, float]]:
    """Per setting: the share of images the flag raises, and its AUROC at telling them from clean ones."""
    from sklearn.metrics import roc_auc_score

    clean = np.nan_to_num(np.array(scores["clean"]), posinf=1e9)
    out = {}
    for name, values in scores.items():
        shifted = np.nan_to_num(np.array(values), posinf=1e9)
        row = {"flagged": round(float(np.mean(shifted > threshold)), 4)}
        if name != "clean":
            truth = np.r_[np.zeros(len(clean)), np.ones(len(shifted))]
            row["auroc"] = round(float(roc_auc_score(truth, np.r_[clean, shifted])), 4)
        out[name] = row
    return out


def shift_report(runs: list[Path]) -> dict[str, Any]:
    """Mean and sd over ``runs`` of each metric, clean and per shift and severity, from their reports."""
    reports = [json.loads((run / "robustness" / "robustness.json").read_text()) for run in runs]
    rows: dict[str, list[dict[str, float]]] = {"clean": [r["clean"] for r in reports]}
    for report in reports:
        for row in report["shifts"]:
            key = f"{row['shift']} {row['severity']} ({row['parameter']:g})"
            rows.setdefault(key, []).append(row["metrics"])
    table = {key: {m: _mean_sd([v[m] for v in values]) for m in values[0]} for key, values in rows.items()}
    return {"runs": [run.name for run in runs], "cases": reports[0]["cases"], "table": table}


def _mean_sd(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(float(np.mean(values)), 4),
        "sd": round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else 0.0,
    }


def _plan_summary(plan: Any) -> dict[str, Any]:
    scale = plan.photo_scale.model_dump() if getattr(plan, "photo_scale", None) else None
    return {
        "augment": plan.augment,
        "photo_scale": scale,
        "reasons": {k: plan.reasons.get(k) for k in ("augment", "photo_scale")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=["drive", "report"])
    parser.add_argument("--run", type=Path, help="A trained run of the dataset.")
    parser.add_argument("--runs", type=Path, nargs="+", help="report: runs with a natural-shift report.")
    parser.add_argument("--label", default="after", help="Name of this result (before / after).")
    parser.add_argument("--max-cases", type=int, default=None, help="Only the first N test images.")
    parser.add_argument("--photo-scale", action="store_true", help="Predict with today's photo scale.")
    parser.add_argument("--ood-only", action="store_true", help="Only the out-of-distribution flag.")
    parser.add_argument("--tta", choices=["on", "off"], default=None, help="Override the plan's flip TTA.")
    parser.add_argument(
        "--settings", nargs="+", default=None, choices=list(settings()), help="Only these settings."
    )
    args = parser.parse_args()
    torch.set_num_threads(cpu_count())
    started = time.perf_counter()
    if (args.run if args.dataset == "drive" else args.runs) is None:
        parser.error("drive needs --run RUN; report needs --runs RUN ...")
    result = bench(args) if args.dataset == "drive" else shift_report(args.runs)
    result.update(
        {
            "dataset": args.dataset,
            "label": args.label,
            "command": " ".join(["benchmarks/shift.py", *sys.argv[1:]]),
            "machine": {"platform": platform.platform(), "cpus": cpu_count(), "torch": torch.__version__},
            "date": datetime.now().isoformat(timespec="seconds"),
            "wall_s": round(time.perf_counter() - started, 1),
        }
    )
    name = args.label if args.dataset == "report" else f"{args.dataset}-{args.label}"
    path = RESULTS / f"shift-{name}.json"
    atomic_write_text(path, json.dumps(result, indent=2))
    print(path)


if __name__ == "__main__":
    main()
