"""What one training step may cost on the device that will train: the budgets planners size runs for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceBudget:
    """What one training step may cost on the device that will train."""

    device: str  # "cpu" or "cuda"
    memory_gb: float  # activation memory one step may use
    patch_voxels: dict[int, int]  # largest patch per dimensionality
    step_voxels: dict[int, int]  # batch x patch voxels per step
    step_seconds: dict[int, float]  # target wall time of one training step
    max_case_voxels: int | None  # coarsen 3D volumes beyond this (None: never)
    widths: tuple[int, ...]  # candidate base filter counts, narrowest first
    default_width: int  # used when step times are not measured


CPU_BUDGET = DeviceBudget(
    device="cpu",
    memory_gb=4.0,
    patch_voxels={2: 256 * 256, 3: 64 * 64 * 64},
    step_voxels={2: 4 * 256 * 256, 3: 2 * 64 * 64 * 64},
    step_seconds={2: 1.5, 3: 3.0},
    max_case_voxels=128 * 128 * 96,
    widths=(8, 16, 32),
    default_width=16,
)
GPU_BUDGET = DeviceBudget(
    device="cuda",
    memory_gb=8.0,
    patch_voxels={2: 512 * 512, 3: 128 * 128 * 128},
    step_voxels={2: 12 * 512 * 512, 3: 2 * 128 * 128 * 128},
    step_seconds={2: 0.25, 3: 0.5},
    max_case_voxels=None,
    widths=(32,),
    default_width=32,
)


def device_budget(device: str | None = None) -> DeviceBudget:
    """The budget for ``device`` ("cpu", "cuda[:n]", or None / "auto": CUDA when available)."""
    if device in (None, "auto"):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return GPU_BUDGET if str(device).startswith("cuda") else CPU_BUDGET
