"""Classification on real data with default planning, on this machine: reproduces BENCHMARKS.md.

Usage (from the repo root, after `make setup`)::

    .venv/bin/python benchmarks/classification.py medmnist breastmnist --time-budget 3m --seeds 0,1,2
    .venv/bin/python benchmarks/classification.py medmnist pneumoniamnist --time-budget 8m --seeds 0,1,2
    .venv/bin/python benchmarks/classification.py isic-attributes --time-budget 10m
    .venv/bin/python benchmarks/classification.py transmed --time-budget 4m --seeds 0,1,2

``medmnist`` trains with ``medsight.api.train`` (default plan, only the budget and seed set), scores
MedMNIST's official test split and reports ACC and AUC as MedMNIST does (ACC at the 0.5 threshold,
AUC of the positive class) beside our own decision threshold's accuracy. ``isic-attributes`` scores
the ISIC 2018 validation set (multi-label, macro AUC). ``transmed`` builds a multi-modal task from
the BraTS-like MRI (4 co-registered modalities): 3D patches labelled "contains tumour" or not,
training patches from one case and test patches from the other, and trains TransMed and its CNN-only
baseline (same slice CNN, no transformer) with the same budget.
Results go to ``benchmarks/results/classification-<what>.json``.
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

from medsight import api
from medsight.metrics.classification import point_metrics
from medsight.runs import open_run
from medsight.utils import atomic_write_text, cpu_count, shared_data_root

RESULTS = Path(__file__).parent / "results"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def train_and_test(
    dataset: str | Path, budget: str, seed: int, out: Path, extra: list[str]
) -> dict[str, Any]:
    """One seed: train, score the test split; wall times and the numbers MedMNIST reports."""
    from medsight.data.classification import load_classification
    from medsight.metrics import MetricTable

    start = time.perf_counter()
    run = api.train(
        dataset,
        task="classify",
        overrides=[f"train.time_budget={budget}", f"train.seed={seed}", "train.progress=false", *extra],
        out=out,
    )
    train_s = time.perf_counter() - start
    summary = api.evaluate(run, split="test")
    r = open_run(run)
    rows = MetricTable.read_csv(run / "eval/test/per_case.csv").rows  # the test probabilities evaluate wrote
    probs = np.array([[row[f"p_{n}"] for n in r.plan.class_names] for row in rows])
    y = load_classification(r.config.data.dataset, problem=r.plan.problem).labels("test")
    at_half = point_metrics(y, probs, r.plan.problem, r.plan.class_names, thresholds=None)["all"]
    return {
        "run": run.name,
        "seed": seed,
        "train_seconds": round(train_s, 1),
        "iterations": _last(run)["step"],
        "acc_at_0.5": at_half["accuracy"],
        "auc": at_half["auc_macro"],
        "acc_own_threshold": summary["all"]["accuracy"]["mean"],
        "balanced_acc_own_threshold": summary["all"]["balanced_accuracy"]["mean"],
        "threshold": r.plan.thresholds,
        "network": r.plan.network,
        "network_kwargs": r.plan.network_kwargs,
        "ece": summary["all"]["ece"]["mean"],
        "summary": summary["all"],
    }


def _last(run: Path) -> dict[str, Any]:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


def spread(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    v = np.array([r[key] for r in rows], dtype=float)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "min": float(v.min()),
    }


def bench_medmnist(args: argparse.Namespace) -> dict[str, Any]:
    rows = [train_and_test(args.name, args.time_budget, s, args.out, args.set) for s in args.seeds]
    for r in rows:
        print(
            f"seed {r['seed']}: ACC {r['acc_at_0.5']:.3f} AUC {r['auc']:.3f} (own threshold ACC "
            f"{r['acc_own_threshold']:.3f}) in {r['train_seconds']:.0f} s"
        )
    return {
        "what": f"medmnist-{args.name}",
        "runs": rows,
        "acc_at_0.5": spread(rows, "acc_at_0.5"),
        "auc": spread(rows, "auc"),
        "acc_own_threshold": spread(rows, "acc_own_threshold"),
        "train_seconds": spread(rows, "train_seconds"),
    }


def bench_isic(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    run = api.train(
        "isic2018-attributes",
        task="classify",
        overrides=[f"train.time_budget={args.time_budget}", "train.progress=false", *args.set],
        out=args.out,
    )
    summary = json.loads((run / "eval/val/summary.json").read_text())
    result = {
        "what": "isic2018-attributes",
        "run": run.name,
        "train_seconds": round(time.perf_counter() - start, 1),
        "auc_macro_val": summary["all"]["auc_macro"],
        "auc_per_attribute": {k: v["auc"]["mean"] for k, v in summary.items() if k not in ("all", "info")},
    }
    print(json.dumps(result, indent=1))
    return result


# ------------------------------------------------------------------------------------------ TransMed

PATCH = (32, 32, 12)  # in-plane x slices (a multiple of 3: TransMed's 3-slice images)


def brats_patch_dataset(dest: Path, per_case: int = 300, seed: int = 0) -> Path:
    """A CSV manifest of 4-modality 3D patches from the two labelled BraTS-like cases: label
    ``tumour`` when at least 2% of the patch is tumour (labels 1, 2, 4). The first case's patches
    train (with a patient-level validation fold), the second case's are the test split."""
    from medsight.data import load_dataset, read_case
    from medsight.io import Image, write_image

    spec = load_dataset("brats")
    cases = [c for c in spec.train if c.label is not None][:2]
    rng = np.random.default_rng(seed)
    lines = ["image,label,patient_id,split"]
    for n, case in enumerate(cases):
        data = read_case(spec, case)
        image, label = data.image.array, data.label.array[0] > 0
        brain = np.argwhere(image[0] > 0)
        lo, hi = brain.min(0), brain.max(0) - np.array(PATCH)
        tumour = np.argwhere(label)
        for i in range(per_case):
            centre = (
                tumour[rng.integers(len(tumour))] - np.array(PATCH) // 2 if i % 2 else rng.integers(lo, hi)
            )
            start = np.clip(centre, 0, np.array(label.shape) - np.array(PATCH))
            box = tuple(slice(s, s + p) for s, p in zip(start, PATCH, strict=True))
            y = "tumour" if label[box].mean() >= 0.02 else "no_tumour"
            name = f"case{n}_{i:04d}.nii.gz"
            write_image(Image.from_array(image[(slice(None), *box)].astype(np.float32)), dest / name)
            lines.append(f"{name},{y},case{n}_{i // 10},{'test' if n == 1 else 'train'}")
    atomic_write_text(dest / "patches.csv", "\n".join(lines) + "\n")
    return dest / "patches.csv"


def bench_transmed(args: argparse.Namespace) -> dict[str, Any]:
    manifest = brats_patch_dataset(args.out / "brats-patches")
    out: dict[str, Any] = {"what": "transmed-vs-cnn", "patch": PATCH, "models": {}}
    for network in ("transmed", "transmed_cnn"):
        rows = [
            train_and_test(manifest, args.time_budget, s, args.out, [f"plan.network={network}", *args.set])
            for s in args.seeds
        ]
        out["models"][network] = {
            "runs": rows,
            "auc": spread(rows, "auc"),
            "acc_at_0.5": spread(rows, "acc_at_0.5"),
            "balanced_acc_own_threshold": spread(rows, "balanced_acc_own_threshold"),
        }
        print(network, out["models"][network]["auc"], out["models"][network]["acc_at_0.5"])
    return out


BENCHES = {"medmnist": bench_medmnist, "isic-attributes": bench_isic, "transmed": bench_transmed}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=sorted(BENCHES))
    parser.add_argument("name", nargs="?", default="breastmnist", help="MedMNIST dataset (medmnist only)")
    parser.add_argument("--time-budget", default="5m")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()
    if shared_data_root() is None:
        sys.exit("../shared/data not found")
    start = time.perf_counter()
    result = BENCHES[args.what](args)
    result.update(
        {
            "time_budget": args.time_budget,
            "wall_seconds": round(time.perf_counter() - start, 1),
            "peak_rss_gb": round(peak_rss_gb(), 2),
            "machine": {
                "platform": platform.platform(),
                "cpus": cpu_count(),
                "python": platform.python_version(),
            },
            "date": datetime.now().isoformat(timespec="seconds"),
        }
    )
    suffix = args.name if args.what == "medmnist" else args.what
    path = atomic_write_text(
        RESULTS / f"classification-{suffix}.json", json.dumps(result, indent=1, default=float)
    )
    print(f"wrote {path.name}")


if __name__ == "__main__":
    main()
