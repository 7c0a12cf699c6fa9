"""Checkpoints: written atomically, loaded with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only::

    {"format": 1, "model": state_dict, "optimizers": [...], "schedulers": [...],
     "loop": {"epoch", "step", "elapsed", "best_metric", "best_epoch", "bad_rounds", ...},
     "rng": {...}, "task": name, "monitor": ..., "monitor_mode": ..., "config": {...},
     "extra_state": {...}}

``loop["epoch"]`` counts completed epochs; ``loop["step"]`` counts completed iterations.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medsight.errors import ConfigError, RunError
from medsight.utils import atomic_write

CHECKPOINT_FORMAT = 1
_PRIMITIVES = (type(None), bool, int, float, str, torch.Tensor)


@dataclass
class LoopState:
    """The engine's progress through a run; saved in every checkpoint."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed iterations
    elapsed: float = 0.0  # training wall time in seconds, summed over resumed sessions
    best_metric: float | None = None
    best_epoch: int | None = None  # 1-based epoch of the best validation
    bad_rounds: int = 0  # validation rounds since the last improvement
    sec_per_iter: float | None = None  # training speed of the last epoch (drives the time schedule)
    epoch_seconds: float = 0.0  # wall time of the last epoch, validation included

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def is_improvement(self, value: float, mode: str) -> bool:
        """Whether ``value`` beats the best so far (NaN never does)."""
        if math.isnan(value):
            return False
        if self.best_metric is None:
            return True
        return value > self.best_metric if mode == "max" else value < self.best_metric


def check_weights_only_safe(value: Any, where: str = "extra_state") -> None:
    """Raise ConfigError unless ``value`` holds only what ``torch.load(weights_only=True)`` reads back."""
    if isinstance(value, _PRIMITIVES):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise ConfigError(f"{where}: keys must be str or int, found {type(key).__name__} {key!r}")
            check_weights_only_safe(item, f"{where}.{key}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_weights_only_safe(item, f"{where}[{i}]")
        return
    raise ConfigError(
        f"{where}: expected tensors, numbers, strings, lists or dicts (loadable with weights_only=True), "
        f"found {type(value).__name__}"
    )


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (a crash leaves the previous file intact)."""
    return atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def copy_checkpoint(src: Path, dst: Path) -> Path:
    """Copy a checkpoint file atomically."""
    return atomic_write(Path(dst), lambda tmp: shutil.copyfile(src, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; RunError when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise RunError(f"{path}: not a readable checkpoint (truncated, corrupt or unsafe): {exc}") from exc
    if not isinstance(state, dict) or "model" not in state:
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise RunError(f"{path}: expected a medsight checkpoint with a 'model' entry, found {found}")
    return state


def load_model_weights(model: nn.Module, path: str | Path, strict: bool = True) -> dict[str, Any]:
    """Load a checkpoint's model weights into ``model`` (DDP-wrapped or not); return the checkpoint."""
    state = load_checkpoint(path)
    apply_model_state(model, state["model"], path, strict)
    return state


def apply_model_state(
    model: nn.Module, weights: dict[str, Any], path: str | Path, strict: bool = True
) -> None:
    """``model.load_state_dict(weights)`` with a RunError naming ``path`` when they do not fit."""
    target = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    try:
        target.load_state_dict(weights, strict=strict)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[:3])
        raise RunError(f"{path}: weights do not fit {type(target).__name__}: {detail}") from exc
