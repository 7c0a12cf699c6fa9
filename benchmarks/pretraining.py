"""Domain-specific vs cross-domain vs natural-image pretraining vs scratch, fine-tuned with few labels:
reproduces the pretraining table of BENCHMARKS.md.

Usage (from the repo root, after `make setup`)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/pretraining.py --target pneumoniamnist \\
        --cross breastmnist --fractions 0.01,0.1 --seeds 0,1 --pretrain-budget 60s --finetune-budget 20s

The same ResNet-18 (MONAI, CIFAR-style stem, ``widen_factor`` WIDTH) is

* (a) ``domain``: pretrained (``medsight pretrain --method METHOD``) on the target's unlabelled training
  images;
* (b) ``cross``: pretrained on another medical domain's training images (``--cross``);
* (c) ``natural``: pretrained on grey 28x28 crops of the natural photographs that ship inside
  scikit-image (no download; which ones and how many crops are written to the results);
* (d) ``scratch``: randomly initialised;

then fine-tuned (``medsight train classify --set plan.pretrained=...``) on a stratified ``fraction`` of
the target's training labels (the official validation and test splits kept whole) and scored on the
test split (AUC with its 95% bootstrap CI). Results: ``benchmarks/results/pretraining-<target>.json``.
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
from medsight.tasks.anomaly import pretrain
from medsight.utils import atomic_write_text, cpu_count, shared_data_root

RESULTS = Path(__file__).parent / "results"
WIDTH = 0.5
CHECK_EVERY = 5  # iterations per epoch: the time budget is checked between epochs
NATURAL = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "coins",
    "moon",
    "page",
    "text",
    "clock",
    "horse",
    "brick",
    "grass",
    "gravel",
    "hubble_deep_field",
    "logo",
    "immunohistochemistry",
)
ANCHOR = (
    "Azizi et al. 2021 (MICLe/SimCLR on chest X-ray and dermatology): in-domain self-supervised pretraining "
    "beats supervised ImageNet transfer by 1-6 AUC points, most with few labels; "
    "the issue's target: domain-specific beats scratch by >= 3 AUC points at 1% and 10% labels"
)


def peak_rss_gb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024**2


def medmnist(name: str) -> dict[str, np.ndarray]:
    root = shared_data_root(None)
    if root is None:
        sys.exit("../shared/data is absent: this benchmark needs the MedMNIST files")
    with np.load(root / "medmnist" / f"{name}.npz") as f:
        return {k: f[k] for k in f.files}


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def label_subset(arrays: dict[str, np.ndarray], fraction: float, seed: int) -> dict[str, np.ndarray]:
    """The training split reduced to a stratified ``fraction`` (at least 4 per class)."""
    rng = np.random.default_rng(seed)
    y = arrays["train_labels"].reshape(len(arrays["train_labels"]), -1)[:, 0]
    keep = np.concatenate(
        [
            rng.choice(np.flatnonzero(y == c), max(4, round(fraction * (y == c).sum())), replace=False)
            for c in np.unique(y)
        ]
    )
    keep.sort()
    return {
        **arrays,
        "train_images": arrays["train_images"][keep],
        "train_labels": arrays["train_labels"][keep],
    }


def natural_patches(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """``n`` grey 28x28 uint8 crops (56x56, 2x2-averaged) of scikit-image's bundled photographs."""
    import skimage.data as data
    from skimage.color import rgb2gray

    images, used = [], []
    for name in NATURAL:
        try:
            img = np.asarray(getattr(data, name)())
        except Exception:  # noqa: BLE001  (some images need a download: skipped)
            continue
        grey = rgb2gray(img[..., :3]) if img.ndim == 3 else img / (255.0 if img.max() > 1 else 1.0)
        images.append(np.asarray(grey, dtype=np.float64))
        used.append(name)
    rng = np.random.default_rng(seed)
    out = np.empty((n, 28, 28), np.uint8)
    for i in range(n):
        img = images[i % len(images)]
        r, c = rng.integers(0, img.shape[0] - 56), rng.integers(0, img.shape[1] - 56)
        crop = img[r : r + 56, c : c + 56].reshape(28, 2, 28, 2).mean(axis=(1, 3))
        out[i] = np.clip(crop * 255, 0, 255).astype(np.uint8)
    return out, used


def as_unlabelled(images: np.ndarray) -> dict[str, np.ndarray]:
    """Images as a MedMNIST-style file (labels alternate 0/1: pretraining never reads them)."""
    labels = (np.arange(len(images)) % 2)[:, None].astype(np.uint8)
    k = max(2, len(images) // 10)
    return {
        "train_images": images,
        "train_labels": labels,
        "val_images": images[:k],
        "val_labels": labels[:k],
        "test_images": images[:k],
        "test_labels": labels[:k],
    }


def finetune(data: Path, encoder: Path | None, budget: str, seed: int, out: Path) -> dict[str, Any]:
    overrides = [
        f"train.time_budget={budget}",
        f"train.seed={seed}",
        "train.progress=false",
        f"train.iterations_per_epoch={CHECK_EVERY}",
        f"plan.network_kwargs={{small_input: true, widen_factor: {WIDTH}}}",
    ]
    if encoder is not None:
        overrides.append(f"plan.pretrained={encoder}")
    start = time.perf_counter()
    run = api.train(data, task="classify", overrides=overrides, out=out)
    summary = api.evaluate(run, split="test")["all"]
    return {"auc": summary["auc_macro"], "train_s": time.perf_counter() - start, "run": run.name}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default="pneumoniamnist")
    parser.add_argument("--cross", default="breastmnist")
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--fractions", default="0.01,0.1")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--pretrain-budget", default="60s")
    parser.add_argument("--finetune-budget", default="20s")
    parser.add_argument("--natural-crops", type=int, default=5000)
    parser.add_argument("--conditions", default="domain,cross,natural,scratch")
    parser.add_argument("--batch-size", type=int, default=32, help="pretraining batch")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/pretraining"))
    args = parser.parse_args()
    start = time.perf_counter()
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    target = medmnist(args.target)
    crops, used = natural_patches(args.natural_crops, 0)
    conditions = args.conditions.split(",")
    sources = {
        "domain": lambda: write_npz(args.out / "data" / f"{args.target}.npz", target),
        "cross": lambda: write_npz(args.out / "data" / f"{args.cross}.npz", medmnist(args.cross)),
        "natural": lambda: write_npz(args.out / "data" / "natural.npz", as_unlabelled(crops)),
    }
    width = [
        f"plan.network_kwargs={{small_input: true, widen_factor: {WIDTH}}}",
        "train.progress=false",
        f"train.iterations_per_epoch={CHECK_EVERY}",
    ]
    encoders: dict[str, Path | None] = {"scratch": None} if "scratch" in conditions else {}
    pretrain_s = {}
    for name, make_source in sources.items():
        if name not in conditions:
            continue
        source = make_source()
        t0 = time.perf_counter()
        run = pretrain(
            source,
            args.method,
            overrides=[
                f"train.time_budget={args.pretrain_budget}",
                f"plan.batch_size={args.batch_size}",
                *width,
            ],
            out=args.out,
        )
        encoders[name], pretrain_s[name] = run / "encoder.pt", time.perf_counter() - t0
    rows = []
    for fraction in fractions:
        for seed in seeds:
            subset = write_npz(
                args.out / "data" / f"target-{fraction:g}-{seed}.npz", label_subset(target, fraction, seed)
            )
            for name, encoder in encoders.items():
                row = finetune(subset, encoder, args.finetune_budget, seed, args.out)
                rows.append({"condition": name, "fraction": fraction, "seed": seed, **row})
                print(f"{name:8s} {fraction:5.2f} seed {seed}: AUC {row['auc']['mean']:.3f}", flush=True)
    table = {}
    for fraction in fractions:
        for name in encoders:
            aucs = [r["auc"]["mean"] for r in rows if r["condition"] == name and r["fraction"] == fraction]
            table[f"{name}@{fraction:g}"] = {
                "auc_mean": float(np.mean(aucs)),
                "auc_sd": float(np.std(aucs)),
                "seeds": len(aucs),
            }
    result = {
        "table": table,
        "rows": rows,
        "target": args.target,
        "cross": args.cross,
        "method": args.method,
        "natural": {"images": used, "crops": args.natural_crops} if "natural" in conditions else None,
        "pretrain_s": pretrain_s,
        "config": vars(args) | {"out": str(args.out)},
        "anchor": ANCHOR,
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
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(
        RESULTS / f"pretraining-{args.target}.json", json.dumps(result, indent=2, default=float)
    )
    for key, row in table.items():
        print(f"{key:16s} AUC {row['auc_mean']:.3f} +- {row['auc_sd']:.3f} ({row['seeds']} seeds)")
    print(f"wall {result['wall_s']:.0f} s, peak RSS {result['peak_rss_gb']:.2f} GB")


if __name__ == "__main__":
    main()
