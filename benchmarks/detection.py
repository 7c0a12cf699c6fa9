"""Detection on real data with default planning, on this machine: reproduces BENCHMARKS.md.

Usage (from the repo root, after `make setup`)::

    .venv/bin/python benchmarks/detection.py covid --time-budget 15m
    .venv/bin/python benchmarks/detection.py isic --time-budget 15m
    .venv/bin/python benchmarks/detection.py brats --time-budget 5m
    .venv/bin/python benchmarks/detection.py totalseg --time-budget 20m

Each trains with ``medsight.api.train`` on the detect task (default plan, only the time budget set),
scores the held-out images (covid: the run's patient-level 20 % validation fold; ISIC: its 400
validation images; BraTS: the validation fold; totalseg: the right-side slabs of the one labelled
TotalSegmentator CT, after training on its left-side slabs, see ``totalseg_bilateral.py``) with
``medsight evaluate``, prints a table and writes
``benchmarks/results/detection-<dataset>.json`` with the numbers, the config, the machine, the date,
wall times and peak memory.
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

import torch

from medsight import api
from medsight.utils import atomic_write_text, cpu_count, shared_data_root

sys.path.insert(0, str(Path(__file__).parent))
import totalseg_bilateral  # noqa: E402  (a sibling script)

RESULTS = Path(__file__).parent / "results"
DATASETS = {
    "covid": "covid-cxr-lungs",
    "isic": "isic2018-boxes",
    "brats": "brats",
    "totalseg": "totalseg-bilateral-boxes",
}
METRICS = ("map_50", "map_50_95", "cpm", "sens_at_fp_0.125", "sens_at_fp_1", "sens_at_fp_8")
ANCHORS = {
    "nnDetection, LUNA16 (CPM, 10-fold CV)": 0.930,
    "MONAI RetinaNet bundle, LUNA16 (mAP@0.1, fold 0)": 0.852,
}


def peak_rss_gb() -> float:
    """Peak resident memory of this process and its (loader) children, GB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024**2


def bench(args: argparse.Namespace) -> dict[str, Any]:
    dataset = DATASETS[args.dataset]
    if args.dataset == "totalseg":
        dataset = str(totalseg_bilateral.build(shared_data_root(), args.out / "data" / dataset))
    start = time.perf_counter()
    overrides = [f"train.time_budget={args.time_budget}", "train.progress=false", *args.set]
    run = api.train(dataset, task="detect", overrides=overrides, out=args.out)
    train_s = time.perf_counter() - start
    summary = json.loads((run / "eval" / "val" / "summary.json").read_text())
    plan = json.loads((run / "plan.json").read_text())
    table = {"medsight (val)": {m: summary["all"][m] for m in METRICS if m in summary["all"]}}
    table["medsight (val)"].update({f"AP50 {k}": v["ap_50"] for k, v in summary.get("per_class", {}).items()})
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {
        "run": run.name,
        "train_and_eval_wall_s": train_s,
        "train_elapsed_s": records[-1]["elapsed"] if records else None,
        "iterations": records[-1]["step"] if records else None,
        "table": table,
        "published_anchors (other data)": ANCHORS,
        "plan": {
            k: plan[k] for k in ("input_size", "network_kwargs", "batch_size", "strides", "anchor_shapes")
        },
        "plan_reasons": plan["reasons"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--time-budget", default="15m")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--set", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()
    start = time.perf_counter()
    result = bench(args)
    result.update(
        {
            "dataset": DATASETS[args.dataset],
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
    atomic_write_text(RESULTS / f"detection-{args.dataset}.json", json.dumps(result, indent=2, default=float))
    print(json.dumps(result["table"], indent=2, default=float))
    print(f"wall {result['wall_s']:.0f} s, peak RSS {result['peak_rss_gb']:.2f} GB")


if __name__ == "__main__":
    main()
