"""The run folder: the one artefact ``medsight train`` writes and every later verb reads.

::

    runs/<task>-<dataset>-<YYYYmmdd-HHMMSS>/
      config.yaml  plan.json  env.json  splits.json  checkpoints/{last,best}.pt
      metrics.jsonl  eval/<split>/{per_case.csv,summary.json,overlays/}  report.html
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from medsight.config import RunConfig
from medsight.errors import ConfigError, DataError, RunError
from medsight.planning.plan import PlanBase
from medsight.task_registry import get_task
from medsight.utils import atomic_write_text, cpu_count


@dataclass
class Run:
    """A run folder with its resolved config and plan."""

    path: Path
    config: RunConfig
    plan: PlanBase  # the task's plan (its family's plan_type)

    @property
    def checkpoint(self) -> Path:
        """best.pt when present, else last.pt."""
        best = self.path / "checkpoints" / "best.pt"
        return best if best.is_file() else self.path / "checkpoints" / "last.pt"

    def eval_dir(self, split: str) -> Path:
        return self.path / "eval" / split

    def save_plan(self, plan: PlanBase) -> None:
        self.plan = plan
        plan.save(self.path / "plan.json")


def run_folds(path: Path, cases: Sequence[Any], k: int, seed: int) -> list[dict[str, list[str]]]:
    """The run's saved folds (``splits.json``) of ``cases`` (anything with ``case_id`` and ``patient``),
    made at patient level and saved on first use."""
    from medsight.data.splits import load_splits, make_folds, save_splits

    if path.is_file():
        return load_splits(path)
    folds = make_folds(list(cases), k=k, seed=seed)
    save_splits(path, folds)
    return folds


def fold_ids(run: Run, cases: Sequence[Any]) -> tuple[list[str], list[str]]:
    """(training, validation) case ids of the run's fold (``data.fold``) of ``cases``; ``all``: every
    case trains and none validates."""
    ids = [c.case_id for c in cases]
    fold = run.config.data.fold
    if fold == "all":
        return ids, []
    folds = run_folds(run.path / "splits.json", cases, run.config.data.num_folds, run.config.train.seed)
    if not 0 <= int(fold) < len(folds):
        raise DataError(f"data.fold: expected 0..{len(folds) - 1} or 'all', got {fold}")
    return folds[int(fold)]["train"], folds[int(fold)]["val"]


def split_cases(run: Run, spec: Any, split: str) -> list[Any]:
    """The cases of ``split`` of a dataset with ``train`` and ``test`` cases: the run's validation fold
    (``val``), or the dataset's ``test`` or ``train`` cases."""
    if split == "test":
        return list(spec.test)
    if split == "train":
        return list(spec.train)
    if split != "val":
        raise ConfigError(f"--split: expected val, test or train, got {split!r}")
    if run.config.data.fold == "all":
        raise ConfigError(f"{run.path}: trained on all cases (data.fold=all): there is no validation split")
    val = set(fold_ids(run, spec.train)[1])
    return [c for c in spec.train if c.case_id in val]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "data"


def new_run_dir(config: RunConfig, dataset_name: str) -> Path:
    """A fresh folder ``<out>/<name or task-dataset-timestamp>``; never reuses an existing one."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(config.out) / (config.name or f"{config.task}-{_slug(dataset_name)}-{stamp}")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def create_run(config: RunConfig, plan: PlanBase, dataset_name: str) -> Run:
    """Create a run folder and write config.yaml, plan.json and env.json into it."""
    path = new_run_dir(config, dataset_name)
    atomic_write_text(path / "config.yaml", config.to_yaml())
    plan.save(path / "plan.json")
    atomic_write_text(path / "env.json", json.dumps(environment(config), indent=2))
    return Run(path, config, plan)


def open_run(path: str | Path) -> Run:
    """Read a run folder written by ``medsight train``."""
    p = Path(path)
    if not p.is_dir():
        raise RunError(f"{p}: run folder not found")
    for name in ("config.yaml", "plan.json"):
        if not (p / name).is_file():
            raise RunError(f"{p}: not a medsight run folder ({name} is missing)")
    try:
        config = RunConfig.model_validate(yaml.safe_load((p / "config.yaml").read_text()))
    except Exception as exc:
        raise RunError(f"{p / 'config.yaml'}: unreadable run config ({exc})") from exc
    try:
        plan = get_task(config.task).plan_type.load(p / "plan.json")
    except ConfigError as exc:
        raise RunError(f"{p}: {exc}") from exc
    return Run(p, config, plan)


def environment(config: RunConfig) -> dict[str, Any]:
    """Versions, device, threads, seed and git commit, for env.json."""
    import monai
    import numpy
    import torch

    return {
        "date": datetime.now().isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": cpu_count(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "seed": config.train.seed,
        "deterministic": config.train.deterministic,
        "git_commit": _git_commit(),
        "medsight": _version(),
    }


def _version() -> str:
    from medsight import __version__

    return __version__


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
