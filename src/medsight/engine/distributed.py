"""PyTorch DDP under ``torchrun``: process-group set-up, model wrapping and rank-0 broadcasts.

Launch with ``torchrun --nproc_per_node N ...`` (or ``python -m torch.distributed.run``): the
environment variables WORLD_SIZE, RANK and LOCAL_RANK that it sets switch DDP on. The backend is
NCCL on CUDA and Gloo on the CPU. Only rank 0 writes checkpoints, logs and progress, and only rank 0
validates; the other ranks wait for its decisions (see :func:`broadcast_object`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

PROCESS_GROUP_TIMEOUT = timedelta(hours=2)  # rank-0 validation of large volumes can take a while


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Read the ranks that ``torchrun`` put in the environment (a single process when absent)."""
    env = os.environ
    return DistInfo(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))


def setup_distributed(backend: str | None = None, device: str = "auto") -> bool:
    """Initialise the default process group when WORLD_SIZE > 1 and none exists yet: NCCL when the
    processes train on GPUs (``device`` auto or cuda, with CUDA available), else gloo.

    Returns True when this call created the group (its caller then owns :func:`cleanup_distributed`).
    """
    info = dist_info()
    if not info.enabled or not dist.is_available() or dist.is_initialized():
        return False
    if backend is None:
        on_gpu = torch.cuda.is_available() and not str(device).startswith("cpu")
        backend = "nccl" if on_gpu else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, timeout=PROCESS_GROUP_TIMEOUT)
    return True


def cleanup_distributed() -> None:
    """Destroy the default process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on rank 0 (and in a single process)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return dist_info().is_main


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_object(obj: Any, device: torch.device | None = None) -> Any:
    """Rank 0's ``obj`` on every rank (a no-op in a single process)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=device if device and device.type == "cuda" else None)
    return box[0]


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if _active():
        dist.barrier()


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap in DistributedDataParallel when running distributed and the model has trainable weights."""
    if not _active() or not any(p.requires_grad for p in model.parameters()):
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
