"""The persistent training-batch iterator and the per-epoch meter."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from medsight.errors import DataError


class BatchStream:
    """Batches from ``data`` across epochs: one iterator kept alive, re-created when exhausted.

    A DataLoader whose sampler has ``set_epoch`` (DistributedSampler) is told each new pass number.
    """

    def __init__(self, data: Iterable[Any]) -> None:
        self.data = data
        self.passes = 0
        self._it: Iterator[Any] | None = None

    def _restart(self) -> None:
        sampler = getattr(self.data, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.passes)
        self._it = iter(self.data)
        self.passes += 1

    def __next__(self) -> Any:
        if self._it is None:
            self._restart()
        try:
            return next(self._it)  # type: ignore[arg-type]
        except StopIteration:
            self._restart()
        try:
            return next(self._it)  # type: ignore[arg-type]
        except StopIteration:
            raise DataError(
                f"train_data ({type(self.data).__name__}): yielded no batches; a one-shot iterator or "
                "generator cannot be restarted, pass a re-iterable (list, DataLoader, sampler object)"
            ) from None


class EpochMeter:
    """Sums losses, task logs and the time spent waiting for data over one epoch."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.wait = 0.0
        self.steps = 0
        self.skipped = 0
        self._loss: torch.Tensor | float = 0.0
        self._losses = 0
        self._logs: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def add(self, loss: torch.Tensor | None, logs: dict[str, float], skipped: bool = False) -> None:
        """Count one step; a skipped step (non-finite gradients) contributes no loss."""
        self.steps += 1
        self.skipped += int(skipped)
        if loss is not None:
            self._loss = self._loss + loss.detach().float()
            self._losses += 1
        for key, value in logs.items():
            self._logs[key] = self._logs.get(key, 0.0) + float(value)
            self._counts[key] = self._counts.get(key, 0) + 1

    def summary(self) -> dict[str, Any]:
        """Epoch means and timing; ``train_loss`` falls back to a task log named 'loss'."""
        seconds = time.perf_counter() - self.start
        logs = {k: v / self._counts[k] for k, v in self._logs.items()}
        loss = float(self._loss) / self._losses if self._losses else logs.get("loss", math.nan)
        return {
            **logs,
            "train_loss": loss,
            "train_seconds": seconds,
            "data_wait_fraction": self.wait / seconds if seconds > 0 else 0.0,
            "skipped_steps": self.skipped,
        }
