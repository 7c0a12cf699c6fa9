"""Segmentation on real data with default planning, on this machine: reproduces BENCHMARKS.md.

Usage (from the repo root, after `make setup`)::

    .venv/bin/python benchmarks/segmentation.py drive --time-budget 25m
    .venv/bin/python benchmarks/segmentation.py isic --time-budget 25m
    .venv/bin/python benchmarks/segmentation.py isbi --time-budget 4m --folds 5
    .venv/bin/python benchmarks/segmentation.py brats --time-budget 8m

Each trains with ``medsight.api.train`` (default plan, only the time budget set), scores the held-out
split, prints a table and writes ``benchmarks/results/segmentation-<dataset>.json`` with the numbers,
the config, the machine, the date, wall times and peak memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight import api
from medsight.data import load_dataset, read_case
from medsight.data.spec import Case
from medsight.io import read_image
from medsight.metrics import bootstrap_ci, pixel_metrics, segmentation_metrics, thresholded_jaccard
from medsight.runs import open_run
from medsight.tasks.segment.pipeline import load_model
from medsight.utils import atomic_write_text, cpu_count

RESULTS = Path(__file__).parent / "results"


def peak_rss_gb() -> float:
    """Peak resident memory of this process and its (loader) children, GB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024**2


def train(
    dataset: str, budget: str, out: Path, fold: str, extra: list[str], run: Path | None = None
) -> tuple[Path, float]:
    """Train with the default plan, or reuse ``run`` (a finished run: its training time is read back)."""
    if run is not None:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return run, float(json.loads(lines[-1])["elapsed"])
    start = time.perf_counter()
    run = api.train(dataset, overrides=[f"train.time_budget={budget}", f"data.fold={fold}", *extra], out=out)
    return run, time.perf_counter() - start


def predict_cases(run: Path, dataset: str, cases: list[Case]) -> list[tuple[Case, Any, Any, Any]]:
    """(case, prediction, case data, seconds) for every case, probabilities kept for 2D binary tasks."""
    r = open_run(run)
    task, model = load_model(r)
    spec = load_dataset(dataset)
    out = []
    with torch.inference_mode():
        for case in cases:
            data = read_case(spec, case)
            t0 = time.perf_counter()
            pred = task.predict(model, data)
            out.append((case, pred, data, time.perf_counter() - t0))
    return out


def ci(values: list[float]) -> dict[str, float]:
    mean, low, high = bootstrap_ci(values)
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": len(values)}


def pooled_pixels(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Pixel metrics over all test pixels inside the FOV together (how DRIVE papers report)."""
    prob = np.concatenate([p[m] for p, _, m in pairs])[None]  # (1, N): one 2D "image" of all pixels
    ref = np.concatenate([r[m] for _, r, m in pairs])[None]
    return pixel_metrics(prob, ref)


def bench_drive(args: argparse.Namespace) -> dict[str, Any]:
    run, seconds = train("drive", args.time_budget, args.out, "all", args.set, args.run)
    spec = load_dataset("drive")
    rows, pairs, human_pairs, human_rows = [], [], [], []
    for case, pred, data, _ in predict_cases(run, "drive", spec.test):
        fov, ref = data.roi.array[0], data.label.array[0] == 1
        pairs.append((pred.probabilities, ref, fov))
        rows.append(pixel_metrics(pred.probabilities, ref, roi=fov))
        second = case.extra.get("second_manual")
        if second is not None:
            human = read_image(second).array.mean(axis=0) > 127  # the 2nd manual: near-black / near-white RGB
            human_pairs.append((human.astype(np.float32), ref, fov))
            human_rows.append(pixel_metrics(human.astype(np.float32), ref, roi=fov))
    keys = ["f1", "auc", "accuracy", "sensitivity", "specificity"]
    table = {
        "medsight (per image)": {k: ci([r[k] for r in rows]) for k in keys},
        "medsight (pooled)": pooled_pixels(pairs),
        "2nd observer (pooled)": pooled_pixels(human_pairs),
        "2nd observer (per image)": {k: ci([r[k] for r in human_rows]) for k in keys},
    }
    return {"run": run.name, "train_wall_s": seconds, "table": table}


def bench_isic(args: argparse.Namespace) -> dict[str, Any]:
    run, seconds = train("isic2018", args.time_budget, args.out, "all", args.set, args.run)
    spec = load_dataset("isic2018")
    dice, iou = [], []
    for _, pred, data, _ in predict_cases(run, "isic2018", spec.test):
        m = segmentation_metrics(pred.output.array[0] == 1, data.label.array[0] == 1)
        dice.append(m["dice"])
        iou.append(m["iou"])
    table = {
        "medsight": {"dice": ci(dice), "jaccard": ci(iou), "thresholded_jaccard": thresholded_jaccard(iou)}
    }
    return {"run": run.name, "train_wall_s": seconds, "table": table}


def bench_isbi(args: argparse.Namespace) -> dict[str, Any]:
    folds, seconds, f1 = [], [], []
    for fold in range(args.folds):
        run, s = train(
            "isbi2012", args.time_budget, args.out, str(fold), args.set + [f"data.num_folds={args.folds}"]
        )
        seconds.append(s)
        summary = json.loads((run / "eval" / "val" / "summary.json").read_text())
        group = next(k for k in summary if k not in ("info", "mean"))
        folds.append(
            {"run": run.name, "dice": summary[group]["dice"], "pixel_f1": summary[group].get("pixel_f1")}
        )
        f1.append(summary[group]["dice"]["mean"])
    return {"folds": folds, "train_wall_s": seconds, "table": {"medsight 5-fold CV": {"membrane_f1": ci(f1)}}}


def bench_brats(args: argparse.Namespace) -> dict[str, Any]:
    run, seconds = train("brats", args.time_budget, args.out, "0", args.set)
    summary = json.loads((run / "eval" / "val" / "summary.json").read_text())
    table = {
        region: {m: summary[region][m]["mean"] for m in ("dice", "hd95", "nsd")}
        for region in summary
        if region not in ("info", "mean")
    }
    return {
        "run": run.name,
        "train_wall_s": seconds,
        "table": table,
        "note": "labels are outputs of BraTS algorithms (fusion), not manual; "
        "1 training case, 1 validation case",
    }


BENCHES = {"drive": bench_drive, "isic": bench_isic, "isbi": bench_isbi, "brats": bench_brats}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=sorted(BENCHES))
    parser.add_argument("--time-budget", default="25m")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--set", action="append", default=[], help="extra config overrides")
    parser.add_argument("--run", type=Path, default=None, help="score this finished run instead of training")
    args = parser.parse_args()
    start = time.perf_counter()
    result = BENCHES[args.dataset](args)
    result.update(
        {
            "dataset": args.dataset,
            "time_budget": args.time_budget,
            "overrides": args.set,
            "wall_s": time.perf_counter() - start,
            "peak_rss_gb": peak_rss_gb(),
            "machine": {
                "platform": platform.platform(),
                "cpus": cpu_count(),
                "torch": torch.__version__,
                "python": sys.version.split()[0],
            },
            "date": datetime.now().isoformat(timespec="seconds"),
        }
    )
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(
        RESULTS / f"segmentation-{args.dataset}.json", json.dumps(result, indent=2, default=float)
    )
    print(json.dumps(result["table"], indent=2, default=float))
    print(f"wall {result['wall_s']:.0f} s, peak RSS {result['peak_rss_gb']:.2f} GB")


if __name__ == "__main__":
    main()
