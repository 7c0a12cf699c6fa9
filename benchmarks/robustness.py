"""Adversarial robustness on real data: reproduces BENCHMARKS.md "Robustness".

Usage (from the repo root, after `make setup`)::

    .venv/bin/python benchmarks/robustness.py classify pneumoniamnist --time-budget 6m --adv-budget 20m
    .venv/bin/python benchmarks/robustness.py segment isic2018 --time-budget 30m --max-cases 50 --steps 10

Each trains the undefended model (default plan, only the budget set) and the same task with PGD
adversarial training (``train.adversarial``: PGD, eps ``--adv-eps``, ``--adv-steps`` steps), or reuses
finished runs given with ``--run`` / ``--adv-run``, then runs ``medsight robustness`` on both: FGSM and
PGD-20 at several epsilons on the test split (the first ``--max-cases`` cases), detector AUROC on the
classifiers (fitted on the validation split). Results go to ``benchmarks/results/robustness-<what>.json``.
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

from medsight import api
from medsight.robustness.evaluate import evaluate_robustness
from medsight.utils import atomic_write_text, cpu_count, shared_data_root

RESULTS = Path(__file__).parent / "results"
EPS = ["1/255", "2/255", "4/255", "8/255"]


def train(args: argparse.Namespace, task: str, budget: str, adversarial: bool) -> tuple[Path, float | None]:
    """A finished run given on the command line, or a new one trained with the default plan."""
    given = args.adv_run if adversarial else args.run
    if given is not None:
        return given, None
    overrides = [f"train.time_budget={budget}", "train.progress=false", *args.set]
    if task == "segment":
        overrides.append("data.fold=all")
    if adversarial:
        overrides.append(f"train.adversarial={{method: pgd, eps: {args.adv_eps}, steps: {args.adv_steps}}}")
    start = time.perf_counter()
    run = api.train(args.dataset, task=task, overrides=overrides, out=args.out)
    return run, round(time.perf_counter() - start, 1)


def attack(args: argparse.Namespace, run: Path, task: str) -> dict[str, Any]:
    return evaluate_robustness(
        run,
        attacks=["fgsm", "pgd"],
        eps=EPS,
        steps=args.steps,
        max_cases=args.max_cases,
        detectors=task == "classify",
        out=args.out / f"robustness-{run.name}",
    )


def headline(report: dict[str, Any], eps: str = "2/255") -> dict[str, float]:
    metric = report["metric"]
    at = {r["attack"]: r["metrics"][metric] for r in report["results"] if r["eps"] == eps}
    return {"clean": report["clean"][metric], f"fgsm@{eps}": at["fgsm"], f"pgd@{eps}": at["pgd"]}


def bench(args: argparse.Namespace, task: str) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for name, budget, adversarial in (
        ("undefended", args.time_budget, False),
        ("pgd_at", args.adv_budget, True),
    ):
        run, seconds = train(args, task, budget, adversarial)
        report = attack(args, run, task)
        runs[name] = {
            "run": run.name,
            "train_seconds": seconds,
            "headline": headline(report),
            "report": report,
        }
        print(f"{name}: {json.dumps(runs[name]['headline'])}")
        for r in report["results"]:
            value = r["metrics"][report["metric"]]
            print(f"  {r['attack']:5s} {r['eps']:6s} {report['metric']} {value:.3f} {r.get('detectors', {})}")
    und, adv = runs["undefended"]["headline"], runs["pgd_at"]["headline"]
    runs["targets"] = {
        "robust_gain_pgd@2/255": adv["pgd@2/255"] - und["pgd@2/255"],
        "clean_loss": und["clean"] - adv["clean"],
        "met": adv["pgd@2/255"] - und["pgd@2/255"] >= 0.30 and und["clean"] - adv["clean"] <= 0.05,
    }
    print(json.dumps(runs["targets"]))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("task", choices=["classify", "segment"])
    parser.add_argument("dataset", help="pneumoniamnist, breastmnist, isic2018, drive ...")
    parser.add_argument("--time-budget", default="6m", help="training budget of the undefended model")
    parser.add_argument("--adv-budget", default="20m", help="training budget of the PGD-trained model")
    parser.add_argument("--adv-eps", default="2/255")
    parser.add_argument("--adv-steps", type=int, default=3)
    parser.add_argument("--max-cases", type=int, default=None)
    parser.add_argument("--steps", type=int, default=20, help="PGD iterations of the evaluation (PGD-20)")
    parser.add_argument("--run", type=Path, default=None, help="reuse a finished undefended run")
    parser.add_argument(
        "--adv-run", type=Path, default=None, help="reuse a finished adversarially trained run"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--set", action="append", default=[], help="extra config overrides of both runs")
    args = parser.parse_args()
    if shared_data_root() is None:
        sys.exit("../shared/data not found")
    start = time.perf_counter()
    result = {"what": f"{args.task}-{args.dataset}", **bench(args, args.task)}
    result.update(
        {
            "settings": {k: str(v) for k, v in vars(args).items()},
            "wall_seconds": round(time.perf_counter() - start, 1),
            "machine": {
                "platform": platform.platform(),
                "cpus": cpu_count(),
                "python": platform.python_version(),
            },
            "date": datetime.now().isoformat(timespec="seconds"),
        }
    )
    path = atomic_write_text(
        RESULTS / f"robustness-{args.task}-{args.dataset}.json", json.dumps(result, indent=1, default=float)
    )
    print(f"wrote {path.name}")


if __name__ == "__main__":
    main()
