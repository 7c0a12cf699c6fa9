"""Anomaly detection on real data, every model of the ``anomaly`` family and two baselines in one run, on
this machine: reproduces the anomaly tables of BENCHMARKS.md.

Usage (from the repo root, after `make setup`)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/anomaly.py pneumoniamnist --time-budget 60s
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/anomaly.py breastmnist --time-budget 30s
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/anomaly.py brats-slices --time-budget 30s

Each model is trained with ``medsight.api.train`` on the normal training images only (default plan,
``plan.model`` and the time budget set; PaDiM fits in one pass, once with a random ResNet-18 and once
with one ``medsight pretrain --method ae`` (or ``--pretrain-method``) pretrained on the dataset's
unlabelled training images), and scored on the test split by ``medsight.api.evaluate`` (image AUROC
and AP with 95% bootstrap CIs). The baselines are fitted in the same process on the same normal
training images, in [0, 1]:

* PCA reconstruction error: the principal components explaining 95% of the variance;
* Mahalanobis distance on the raw pixels, with a Ledoit-Wolf shrunk covariance.

PneumoniaMNIST: normal (0) vs pneumonia (1). BreastMNIST: ``normal, benign`` (1) is normal, malignant (0)
the anomaly. ``brats-slices`` (:mod:`medsight.data.brain_slices`): FLAIR axial slices of the two labelled
BraTS-like subjects, trained on healthy slices, tested on the second subject's slices: image and pixel
AUROC / AP and best Dice of the maps, beside the FLAIR-intensity threshold baseline (Meissen et al. 2021)
whose map is the FLAIR image itself (and its image score the slice's maximum).
Writes ``benchmarks/results/anomaly-<dataset>.json`` (numbers, config, machine, date, wall times, peak
memory).
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
from medsight.data.classification import load_classification
from medsight.metrics.anomaly import image_summary
from medsight.tasks.anomaly import pretrain
from medsight.tasks.anomaly.planning import METHODS, normal_class
from medsight.utils import atomic_write_text, cpu_count

RESULTS = Path(__file__).parent / "results"
ANCHORS = {
    "pneumoniamnist": "no published unsupervised anchor on PneumoniaMNIST at 28 px that we can cite; "
    "the supervised ResNet-18@28 of MedMNIST v2 reaches AUC 0.944",
    "breastmnist": "supervised ResNet-18@28 of MedMNIST v2: AUC 0.901",
    "brats-slices": "Meissen et al. 2021 on BraTS: thresholding FLAIR, best Dice 0.738, beats AE / VAE / "
    "f-AnoGAN (Baur et al. 2021: best Dice of the AE family 0.2-0.45)",
}


def peak_rss_gb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024**2


def unit_pixels(cases: list[Any], side: int) -> np.ndarray:
    """Images scaled to [0, 1] (8-bit / 255), resized to ``side`` x ``side`` (as the plan does), flattened."""
    from medsight.transforms.segmentation import resize

    return np.stack([np.asarray(resize(c.read() / 255.0, (side, side))).ravel() for c in cases])


def baselines(dataset: str) -> dict[str, dict[str, Any]]:
    """PCA reconstruction error and raw-pixel Mahalanobis distance, fitted on the normal training images;
    with masks (brats-slices), the FLAIR-intensity map and the PCA residual map scored per pixel too."""
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    from medsight.metrics.anomaly import pixel_summary
    from medsight.transforms.segmentation import resize

    data = load_classification(dataset)
    side = min(64, data.train[0].read().shape[-1])
    k = list(data.class_names).index(normal_class(list(data.class_names), None, data.name))
    train = unit_pixels([c for c in data.train if int(c.classes) == k], side)
    tests = data.splits["test"]
    test = unit_pixels(tests, side)
    y = np.array([int(int(c.classes) != k) for c in tests])
    out = {}
    start = time.perf_counter()
    pca = PCA(n_components=0.95, svd_solver="full").fit(train)
    residual = (pca.inverse_transform(pca.transform(test)) - test) ** 2
    out["pca-reconstruction"] = _row(y, residual.mean(1), start, f"{pca.n_components_} components")
    start = time.perf_counter()
    lw = LedoitWolf().fit(train)
    out["pixel-mahalanobis"] = _row(
        y, lw.mahalanobis(test), start, f"Ledoit-Wolf shrinkage {lw.shrinkage_:.3f}"
    )
    masks = [c.extra.get("mask") for c in tests]
    if any(m is not None for m in masks):
        grid = (
            np.stack(
                [
                    resize(
                        np.zeros((1, *c.read().shape[1:]), np.int16)
                        if m is None
                        else m[None].astype(np.int16),
                        (side, side),
                        labels=True,
                    )[0]
                    for c, m in zip(tests, masks, strict=True)
                ]
            )
            > 0
        )
        flair = test.reshape(-1, side, side)
        out["flair-threshold"] = {
            **_row(y, flair.reshape(len(y), -1).max(1), time.perf_counter(), "map: FLAIR"),
            **pixel_summary(flair, grid),
        }
        out["pca-reconstruction"].update(pixel_summary(residual.reshape(-1, side, side), grid))
    return out


def _row(y: np.ndarray, scores: np.ndarray, start: float, note: str) -> dict[str, Any]:
    summary = image_summary(y, scores, None)["all"]
    return {
        "image_auroc": summary["image_auroc"],
        "image_ap": summary["image_ap"],
        "train_s": time.perf_counter() - start,
        "note": note,
    }


def train_model(
    dataset: str, model: str, budget: str, out: Path, extra: list[str], reuse: Path | None = None
) -> dict[str, Any]:
    """Train ``model`` (or reuse the finished run ``reuse``: its training time is read back) and score
    the test split."""
    start = time.perf_counter()
    if reuse is None:
        overrides = [f"plan.model={model}", f"train.time_budget={budget}", "train.progress=false", *extra]
        run = api.train(dataset, task="anomaly", overrides=overrides, out=out)
    else:
        run = reuse
    lines = (run / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    train_s = time.perf_counter() - start if reuse is None else float(last["elapsed"])
    summary = api.evaluate(run, split="test")["all"]
    pixel = {k: summary[k] for k in ("pixel_auroc", "pixel_ap", "best_dice") if k in summary}
    return {
        "image_auroc": summary["image_auroc"],
        "image_ap": summary["image_ap"],
        **pixel,
        "sensitivity": summary.get("sensitivity"),
        "specificity": summary.get("specificity"),
        "val_auroc_best": last.get("best_metric"),
        "iterations": last.get("step"),
        "train_s": train_s,
        "run": run.name,
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    table: dict[str, Any] = baselines(args.dataset)
    reuse = {json.loads((r / "plan.json").read_text())["model"]: r for r in args.reuse}
    for name in args.models:
        print(f"--- {name}", flush=True)
        table[name] = train_model(args.dataset, name, args.time_budget, args.out, args.set, reuse.get(name))
        print(json.dumps({k: table[name][k] for k in ("image_auroc", "train_s")}, default=float), flush=True)
    if "padim" in args.models and args.pretrain_budget:
        start = time.perf_counter()
        enc = pretrain(
            args.dataset,
            args.pretrain_method,
            overrides=[
                f"train.time_budget={args.pretrain_budget}",
                "train.progress=false",
                *_width(args.set),
            ],
            out=args.out,
        )
        pre_s = time.perf_counter() - start
        row = train_model(
            args.dataset, "padim", args.time_budget, args.out, [f"plan.pretrained={enc}/encoder.pt"]
        )
        table[f"padim ({args.pretrain_method}-pretrained encoder)"] = {**row, "pretrain_s": pre_s}
    return {"table": table}


def _width(extra: list[str]) -> list[str]:
    return [s for s in extra if s.startswith("plan.network_kwargs")] or [
        "plan.network_kwargs={small_input: true, widen_factor: 0.5}"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=sorted(ANCHORS))
    parser.add_argument("--time-budget", default="60s", help="training budget of each model")
    parser.add_argument(
        "--pretrain-budget", default="90s", help="the PaDiM encoder's pretraining ('' skips it)"
    )
    parser.add_argument(
        "--pretrain-method", default="ae", help="the PaDiM encoder's pretraining method (medsight pretrain)"
    )
    parser.add_argument("--models", nargs="+", default=list(METHODS))
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--set", action="append", default=[], help="extra config overrides for every model")
    parser.add_argument("--reuse", type=Path, nargs="*", default=[], help="finished runs to score, not train")
    args = parser.parse_args()
    start = time.perf_counter()
    result = bench(args)
    result.update(
        {
            "dataset": args.dataset,
            "time_budget": args.time_budget,
            "pretrain_budget": args.pretrain_budget,
            "pretrain_method": args.pretrain_method,
            "overrides": args.set,
            "anchor": ANCHORS[args.dataset],
            "wall_s": time.perf_counter() - start,
            "peak_rss_gb": peak_rss_gb(),
            "machine": {
                "platform": platform.platform(),
                "cpus": cpu_count(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "python": sys.version.split()[0],
            },
            "date": datetime.now().isoformat(timespec="seconds"),
        }
    )
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / f"anomaly-{args.dataset}.json", json.dumps(result, indent=2, default=float))
    for name, row in result["table"].items():
        auc = row["image_auroc"]
        pixel = "".join(
            f"  {k} {row[k]['mean']:.3f}" for k in ("pixel_auroc", "pixel_ap", "best_dice") if k in row
        )
        print(
            f"{name:32s} AUROC {auc['mean']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]  "
            f"AP {row['image_ap']['mean']:.3f}{pixel}  {row['train_s']:.0f} s"
        )
    print(f"wall {result['wall_s']:.0f} s, peak RSS {result['peak_rss_gb']:.2f} GB")


if __name__ == "__main__":
    main()
