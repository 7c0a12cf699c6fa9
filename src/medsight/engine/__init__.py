"""The training engine: one loop for every task, with checkpoints, DDP, schedules and loggers.

Names are re-exported lazily so that importing a submodule (e.g. ``medsight.engine.inference``)
does not pull in the whole engine::

    from medsight.engine import Trainer, build_optimizer, load_model_weights
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Trainer": "trainer",
    "FitResult": "trainer",
    "Callback": "trainer",
    "DEFAULT_GRAD_CLIP": "contract",
    "Budget": "schedule",
    "ProgressLR": "schedule",
    "build_optimizer": "schedule",
    "lr_factor": "schedule",
    "DEFAULT_EPOCHS": "schedule",
    "LoopState": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_model_weights": "checkpoint",
    "save_checkpoint": "checkpoint",
    "setup_distributed": "distributed",
    "cleanup_distributed": "distributed",
    "is_main_process": "distributed",
    "seed_everything": "seed",
    "resolve_device": "device",
    "Logger": "loggers",
    "JsonlLogger": "loggers",
    "TensorBoardLogger": "loggers",
    "MlflowLogger": "loggers",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"medsight.engine.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'medsight.engine' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
