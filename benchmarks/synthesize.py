"""Synthesis on real data: reproduces the "Synthesis" tables of BENCHMARKS.md.

Usage (from the repo root, after `make setup`)::

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/synthesize.py augment --seeds 3
    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/synthesize.py translate

``augment`` (BreastMNIST, ``../shared/data/medmnist/breastmnist.npz``): a class-conditional GAN and a
VAE trained on the 546 training images only (fixed iteration budgets), scored on the official test
split (FID / KID / precision / recall / memorisation on the run's own evaluation encoder; TSTR AUC);
then ``classify`` trained with the default plan for a fixed number of iterations, once without and
once with ``data.synthetic=<run> data.synthetic_ratio=1.0`` for each generator, over ``--seeds`` seeds;
balanced accuracy and AUC on the official test split, mean +- sd over seeds.

``translate`` (``../shared/data/brats-tcga``): pix2pix and CycleGAN T1 -> T2 trained on two subjects,
tested on the third (TCGA-DU-7294), beside identity + histogram matching learned on the training
subjects; PSNR / SSIM / MAE inside the brain on the plan's grid.

Writes ``benchmarks/results/synthesize-<setting>.json`` (numbers, commands, machine, date, wall times).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from medsight import api
from medsight.utils import atomic_write_text, cpu_count

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).parent / "results"
QUIET = ["train.progress=false"]


def _train(dataset: Path, task: str, overrides: list[str], out: Path) -> tuple[Path, float]:
    start = time.perf_counter()
    run = api.train(dataset, task=task, overrides=[*QUIET, *overrides], out=out, measure=False)
    return run, time.perf_counter() - start


def _mean(summary: dict[str, Any], key: str) -> float:
    return float(summary["all"][key]["mean"])


def augment(args: argparse.Namespace) -> dict[str, Any]:
    data = DATA / "medmnist" / "breastmnist.npz"
    out = Path(args.out)
    generators: dict[str, Any] = {}
    reuse = {"cgan": args.cgan_run, "vae": args.vae_run}
    for model, iters in (("cgan", args.gan_iterations), ("vae", args.vae_iterations)):
        overrides = [f"plan.model={model}", f"train.max_iterations={iters}", "train.iterations_per_epoch=100"]
        if reuse[model]:  # a generator this script trained before, with these overrides
            run, wall = Path(reuse[model]), float("nan")
        else:
            run, wall = _train(data, "synthesize", overrides, out)
        summary = api.evaluate(run, split="test")
        generators[model] = {
            "run": str(run),
            "wall_s": round(wall, 1),
            "overrides": overrides,
            "test": {k: v["mean"] for k, v in summary["all"].items()},
        }
        print(model, json.dumps(generators[model]["test"]), flush=True)
    conditions = {
        "real only": [],
        **{
            f"+ {m} samples": [f"data.synthetic={generators[m]['run']}", "data.synthetic_ratio=1.0"]
            for m in generators
        },
    }
    results: dict[str, Any] = {}
    for name, extra in conditions.items():
        per_seed = []
        for seed in range(args.seeds):
            overrides = [
                f"train.seed={seed}",
                f"train.max_iterations={args.classify_iterations}",
                "train.iterations_per_epoch=50",
                f"plan.network_kwargs={{small_input: true, widen_factor: {args.classify_width}}}",
                *extra,
            ]
            run, wall = _train(data, "classify", overrides, out)
            s = api.evaluate(run, split="test")
            per_seed.append(
                {
                    "seed": seed,
                    "balanced_accuracy": _mean(s, "balanced_accuracy"),
                    "auc": _mean(s, "auc_macro"),
                    "wall_s": round(wall, 1),
                }
            )
            print(name, per_seed[-1], flush=True)
        bal = np.array([r["balanced_accuracy"] for r in per_seed])
        auc = np.array([r["auc"] for r in per_seed])
        results[name] = {
            "balanced_accuracy": [float(bal.mean()), float(bal.std(ddof=1)) if len(bal) > 1 else 0.0],
            "auc": [float(auc.mean()), float(auc.std(ddof=1)) if len(auc) > 1 else 0.0],
            "per_seed": per_seed,
        }
    return {
        "generators": generators,
        "classify": results,
        "seeds": args.seeds,
        "classify_iterations": args.classify_iterations,
    }


def translate(args: argparse.Namespace) -> dict[str, Any]:
    data = DATA / "brats-tcga"
    out: dict[str, Any] = {}
    for target, model in ((t, m) for t in args.targets.split(",") for m in args.models.split(",")):
        overrides = [
            f"plan.model={model}",
            "plan.source=t1",
            f"plan.target={target}",
            f"train.max_iterations={args.translation_iterations}",
            "train.iterations_per_epoch=50",
            f"plan.input_size=[{args.size},{args.size}]",
            f"plan.lr={args.generator_lr}",
        ]
        run, wall = _train(data, "synthesize", overrides, Path(args.out))
        s = api.evaluate(run, split="test")["all"]
        out[f"{model} t1->{target}"] = {
            "run": str(run),
            "wall_s": round(wall, 1),
            "overrides": overrides,
            "test": {k: [v["mean"], v["ci_low"], v["ci_high"]] for k, v in s.items()},
        }
        print(model, target, json.dumps(out[f"{model} t1->{target}"]["test"]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("setting", choices=["augment", "translate"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--gan-iterations", type=int, default=1500)
    parser.add_argument("--vae-iterations", type=int, default=1500)
    parser.add_argument("--classify-iterations", type=int, default=300)
    parser.add_argument("--classify-width", type=float, default=0.25, help="ResNet-18 widen_factor")
    parser.add_argument("--cgan-run", default=None, help="reuse a cGAN run of an earlier call")
    parser.add_argument("--vae-run", default=None, help="reuse a VAE run of an earlier call")
    parser.add_argument("--translation-iterations", type=int, default=300)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--targets", default="t2")
    parser.add_argument("--models", default="pix2pix,cyclegan")
    parser.add_argument("--generator-lr", type=float, default=1e-3, help="plan.lr of the translators")
    parser.add_argument("--out", default="runs/bench-synthesize")
    args = parser.parse_args()
    start = time.perf_counter()
    result = augment(args) if args.setting == "augment" else translate(args)
    record = {
        "setting": args.setting,
        "command": " ".join(["benchmarks/synthesize.py", *sys.argv[1:]]),
        "results": result,
        "machine": {
            "platform": platform.platform(),
            "cpus": cpu_count(),
            "python": platform.python_version(),
        },
        "date": datetime.now().isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - start, 1),
        "note": "2 CPU cores shared with other jobs while it ran",
    }
    RESULTS.mkdir(exist_ok=True)
    tag = "" if args.setting == "augment" else "-" + args.models.replace(",", "-")
    path = RESULTS / f"synthesize-{args.setting}{tag}.json"
    atomic_write_text(path, json.dumps(record, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
