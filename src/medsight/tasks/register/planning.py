"""The learned registration plan, and planning it from the data and the time budget.

The choices, each with its reason in ``plan.reasons``:

1. the atlas (``plan.atlas``, the fixed image every subject is registered to): the user's file, else the
   first training subject (and its labels);
2. the working spacing: volumes at 3 mm on a CPU with under an hour to train, 2 mm with more, the
   native spacing (at least 1 mm) on a GPU; images in 2D at their native spacing (at most 256 pixels a
   side); the working grid covers the atlas, each side a multiple of 16;
3. the affine pre-alignment: the classical affine (SimpleITK MI) at the working spacing;
4. a VoxelMorph-style U-Net predicting a stationary velocity field, integrated by scaling and squaring
   (7 steps, diffeomorphic); its width the widest whose measured step leaves MIN_STEPS steps in the
   budget; batch 1 for volumes, 4 in 2D;
5. the loss: local normalised cross-correlation (MONAI's), or MSE / global mutual information
   (``plan.similarity``), plus diffusion (or bending-energy) regularisation of the field, plus Dice of
   the warped labels where the data has labels and ``plan.label_weight`` > 0;
6. training pairs: random smooth deformations (up to ``max_deform_mm``) of every training subject after
   its affine step to the atlas, registered to the atlas.

Torch-free: plan.json loads into :class:`RegisterPlan` in the ONNX runtime.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from medsight.errors import ConfigError
from medsight.planning.plan import ChannelNorm, PlanBase

MULTIPLE = 16
MIN_SIDE = 32
MAX_SIDE_2D = 256
MIN_STEPS = 400
WIDTHS = (4, 8, 16)
DEFAULT_WIDTH = 8
BASELINES = ("affine", "bspline", "demons")
REG_WEIGHT = {"lncc": 1.0, "mse": 0.02, "mi": 0.5}


class RegisterPlan(PlanBase):
    """What the register task trains with. Saved as plan.json; ``--set plan.<field>=...`` overrides."""

    task: str = "register"
    atlas: str = ""
    atlas_labels: str | None = None
    spacing: float = 2.0  # working spacing, mm
    grid_size: list[int] = Field(default_factory=list)  # working grid, ITK order (x, y, z)
    affine: Literal["classical", "none"] = "classical"
    integration_steps: int = Field(default=7, ge=0, le=12)  # 0: a plain displacement field
    similarity: Literal["lncc", "mse", "mi"] = "lncc"
    lncc_kernel: int = 7
    regularization: Literal["diffusion", "bending"] = "diffusion"
    reg_weight: float = Field(default=1.0, ge=0)
    label_weight: float = Field(default=0.0, ge=0)
    max_deform_mm: float = Field(default=8.0, gt=0)
    control_mm: float = Field(default=40.0, gt=0)
    intensity_augment: bool = True
    lr: float = 3e-3  # short CPU budgets: a few hundred steps
    val_pairs: int = Field(default=4, ge=1)
    eval_pairs: int = Field(default=2, ge=1)  # known deformations per subject scored by evaluate
    eval_baselines: list[str] = Field(default_factory=lambda: list(BASELINES))
    eval_labels: list[int] = Field(default_factory=list)  # labels scored by evaluate (empty: every label)
    classical_spacing: float | None = None  # the baselines' working spacing (None: the plan's spacing)
    instance_steps: int = Field(default=0, ge=0)  # test-time optimisation steps of the field per pair
    instance_lr: float = Field(default=0.5, gt=0)
    data_summary: dict[str, Any] = Field(default_factory=dict)

    @property
    def grid_array_shape(self) -> list[int]:
        """The working grid in array order (z, y, x): what the network sees."""
        return list(reversed(self.grid_size))


def working_spacing(
    dim: int, native: float, device: str, budget_s: float | None, extent: list[float]
) -> tuple[float, str]:
    """(working spacing in mm, why)."""
    if dim == 2:
        spacing = max(native, max(extent) / MAX_SIDE_2D)
        return spacing, f"2D: the native spacing ({native:g} mm), at most {MAX_SIDE_2D} pixels a side"
    if device.startswith("cuda"):
        spacing = max(native, 1.0)
        return spacing, "a GPU: the native spacing, at least 1 mm"
    if budget_s is not None and budget_s >= 3600:
        return max(native, 2.0), "a CPU with at least an hour: 2 mm"
    return max(
        native, 3.0
    ), "a CPU with under an hour to train: 3 mm (VoxelMorph-like inputs at a CPU's pace)"


def grid_for(extent: list[float], spacing: float) -> list[int]:
    """Grid sides covering ``extent`` mm at ``spacing``, multiples of 16, at least 32."""
    return [max(MIN_SIDE, math.ceil(e / spacing / MULTIPLE) * MULTIPLE) for e in extent]


def plan_registration(
    data: Any,
    *,
    device: str = "cpu",
    measure: bool = True,
    time_budget_s: float | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RegisterPlan:
    """Plan a learned registration for a :class:`medsight.tasks.register.data.RegisterData`.

    Raises:
        ConfigError: an unknown override, an atlas that is not readable or of another dimensionality.
    """
    from medsight.tasks.register.data import atlas_info

    overrides = dict(overrides or {})
    RegisterPlan.check_override_names(overrides)
    reasons: dict[str, str] = {}
    atlas, atlas_labels = _atlas(data, overrides, reasons)
    info = atlas_info(atlas)
    if info["dim"] != data.dim:
        raise ConfigError(f"plan.atlas: {atlas} is {info['dim']}D, the dataset's images are {data.dim}D")
    spacing, why = working_spacing(data.dim, min(info["spacing"]), device, time_budget_s, info["extent"])
    if "spacing" in overrides:
        spacing, why = float(overrides.pop("spacing")), "set by the user"
    reasons["spacing"] = why
    grid = grid_for(info["extent"], spacing)
    reasons["grid_size"] = (
        f"the atlas's extent {[round(e) for e in info['extent']]} mm at {spacing:g} mm, "
        f"sides multiples of {MULTIPLE}"
    )
    similarity = str(overrides.get("similarity", "lncc"))
    reasons["loss"] = f"{similarity} + {REG_WEIGHT.get(similarity, 1.0)} x diffusion regularisation"
    batch = 1 if data.dim == 3 else 4
    reasons["batch_size"] = (
        "volumes: one pair per step (VoxelMorph)" if data.dim == 3 else "2D: 4 pairs per step"
    )
    kwargs = dict(overrides.get("network_kwargs") or {})
    if "network_kwargs" not in overrides:
        kwargs = _width(data.dim, list(reversed(grid)), batch, measure, time_budget_s, reasons)
    plan = RegisterPlan(
        dataset=data.name,
        dim=data.dim,
        in_channels=1,
        class_names=[f"displacement_axis{i}" for i in range(data.dim)],
        normalization=[ChannelNorm(scheme="none")],
        network="voxelmorph_unet",
        network_kwargs=kwargs,
        batch_size=batch,
        atlas=str(atlas),
        atlas_labels=str(atlas_labels) if atlas_labels is not None else None,
        spacing=spacing,
        grid_size=grid,
        similarity=similarity,  # type: ignore[arg-type]
        reg_weight=REG_WEIGHT.get(similarity, 1.0),
        reasons=reasons,
        data_summary=data.describe(),
        tta=False,
    )
    overrides.pop("similarity", None)
    return plan.with_overrides(overrides)


def _atlas(data: Any, overrides: dict[str, Any], reasons: dict[str, str]) -> tuple[Path, Path | None]:
    if "atlas" in overrides:
        atlas = Path(str(overrides.pop("atlas"))).expanduser().resolve()
        if not atlas.exists():
            raise ConfigError(f"plan.atlas: {atlas} not found")
        labels = overrides.pop("atlas_labels", None)
        reasons["atlas"] = "set by the user"
        return atlas, Path(str(labels)).resolve() if labels else None
    first = data.train[0]
    reasons["atlas"] = f"no plan.atlas given: the first training subject ({first.case_id})"
    labels = overrides.pop("atlas_labels", None) or first.label
    return Path(first.images[0]).resolve(), Path(str(labels)).resolve() if labels else None


def _width(
    dim: int, shape: list[int], batch: int, measure: bool, budget: float | None, reasons: dict[str, str]
) -> dict[str, Any]:
    if not measure or not budget:
        reasons["width"] = f"base_filters={DEFAULT_WIDTH}: the default (no time budget to size it against)"
        return {"base_filters": DEFAULT_WIDTH}
    from medsight.planning.search import StepProbe, search_width

    probe = StepProbe("voxelmorph_unet", dim, 2, dim, shape, batch, "cpu", {})
    choice = search_width(probe, WIDTHS, budget / MIN_STEPS)
    reasons["width"] = (
        f"{choice.describe()}: the widest whose step allows {MIN_STEPS} steps in {budget:.0f} s"
    )
    return dict(choice.options)


__all__ = ["RegisterPlan", "plan_registration"]
