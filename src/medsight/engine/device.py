"""Devices, mixed precision, threads and moving batches."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import torch

from medsight.errors import ConfigError
from medsight.utils import cpu_count


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> ``cuda:<local_rank>`` when CUDA is available, else 'cpu'; other names are checked."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"train.device: expected 'auto', 'cpu' or 'cuda[:N]', got {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} was asked for but CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"train.device: {name!r} (process of local rank {local_rank}) but only "
            f"{torch.cuda.device_count()} GPU(s) are visible; start at most that many processes per machine "
            "(torchrun --nproc_per_node) or train on the CPU (train.device=cpu)"
        )
    return device


def autocast_factory(device: torch.device, amp: bool) -> Callable[[], Any]:
    """A context-manager factory: bf16 autocast on CUDA when ``amp``, else a no-op."""
    if amp and device.type == "cuda":
        return lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def configure_threads(world_size: int = 1) -> int:
    """Give this process its share of the cores (``cores // world_size``, at least 1, and at most
    ``$OMP_NUM_THREADS`` when the user set it); return it."""
    threads = max(1, cpu_count() // max(1, world_size))
    user = os.environ.get("OMP_NUM_THREADS", "")
    if user.isdigit() and int(user) > 0:
        threads = min(threads, int(user))
    torch.set_num_threads(threads)
    return threads


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside nested dicts, lists and tuples to ``device``; leave the rest as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True) if batch.device != device else batch
    if isinstance(batch, dict):
        return type(batch)((k, move_to_device(v, device)) for k, v in batch.items())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch
