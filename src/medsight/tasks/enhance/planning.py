"""The enhancement plan, and planning it from the data: degradation, slices, network, width, batch.

The choices, each with its reason in ``plan.reasons``:

1. degradation (``plan.degradation``): the user's, else ``kspace:4x`` for MR images and raw k-space,
   ``lowdose-ct:0.25,input=hu`` for CT; user pairs (degraded + clean) need none. Its exact settings
   (every default written out) are saved as ``degradation_settings``; k-space simulated from magnitude
   images is flagged (``simulated_kspace``), since it is easier than real k-space;
2. 2D slices along the last spatial axis, centred and padded or cropped to ``slice_size``: the largest
   in-plane size of the training images, rounded up to a multiple of 16, at most MAX_SIDE;
3. intensities: CT (HU) maps ``(x + 1000) / 1000``; anything else is divided by the 99th percentile of
   the degraded input's magnitude, per slice (the output is scaled back), so no reference is needed;
4. network: for k-space, an unrolled cascade with data consistency (``kspace_cascade``); else the
   residual U-Net (MONAI BasicUNet + global residual); DnCNN and RED-CNN on request. Its width is the
   widest candidate whose measured step lets the time budget cover MIN_STEPS steps;
5. loss: L1 + SSIM (MONAI's SSIMLoss), ``plan.loss`` = ``l1`` | ``ssim`` | ``l1+ssim``;
6. batch size from the CPU/GPU pixels-per-step budget.

Torch-free: plan.json loads into :class:`EnhancePlan` in the ONNX runtime.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from medsight.errors import ConfigError
from medsight.planning.plan import ChannelNorm, PlanBase

MAX_SIDE = {"cpu": 256, "cuda": 384}
PATCH_SIDE = {"cpu": 96, "cuda": 192}
STEP_PIXELS = {"cpu": 4 * 128 * 128, "cuda": 16 * 256 * 256}
MIN_STEPS = 600
WIDTHS = {"residual_unet": (8, 16, 32), "kspace_cascade": (8, 12, 16), "dncnn": (32, 64), "redcnn": (48, 96)}
DEFAULT_WIDTH = {"residual_unet": 16, "kspace_cascade": 8, "dncnn": 32, "redcnn": 48}
MULTIPLE = 16
KSPACE_NETWORKS = ("kspace_cascade",)


class EnhancePlan(PlanBase):
    """What the enhance task trains with. Saved as plan.json; ``--set plan.<field>=...`` overrides."""

    task: str = "enhance"
    data_kind: Literal["images", "pairs", "kspace"] = "images"
    degradation: str | None = None
    degradation_settings: dict[str, Any] = Field(default_factory=dict)
    simulated_kspace: bool = False
    modality: str = "MR"
    intensity: Literal["scale", "ct"] = "scale"
    slice_size: list[int]
    patch_size: list[int] | None = None  # random training crops of image-domain networks (None: whole slices)
    slices_per_case: int = 24  # training slices kept per volume (evenly spaced, with enough body)
    eval_slices_per_case: int = 12  # evaluated slices per volume (at their own size)
    min_foreground: float = 0.15
    loss: Literal["l1", "ssim", "l1+ssim"] = "l1+ssim"
    lr: float = 1e-3
    degradation_seed: int = 0
    bank_size: int = 2  # degraded versions kept per training slice where a degradation is slow (CT)
    baseline_params: dict[str, float] = Field(default_factory=dict)
    data_summary: dict[str, Any] = Field(default_factory=dict)

    @property
    def kspace_input(self) -> bool:
        """The network takes k-space (zero-filled real, imaginary and the mask), not a degraded image."""
        return self.network in KSPACE_NETWORKS

    @property
    def kind(self) -> str:
        """The degradation kind: kspace, lowdose-ct, rician, gaussian, sr, or pairs (no degradation)."""
        return str(self.degradation_settings.get("kind", "pairs"))

    @property
    def degrades_whole_slices(self) -> bool:
        """Degrade a training slice whole and crop it to ``slice_size`` afterwards, not before: low-dose
        CT, whose noise depends on the whole body each ray crosses (a cropped body has shorter rays)."""
        return self.kind == "lowdose-ct"


def default_degradation(data_kind: str, modality: str) -> tuple[str | None, str]:
    """(the degradation a dataset gets when the user names none, why)."""
    if data_kind == "pairs":
        return None, "user pairs (degraded + clean): no simulated degradation"
    if data_kind == "kspace":
        return "kspace:4x", "raw k-space: 4x Cartesian undersampling of the acquired k-space"
    if modality == "CT":
        return "lowdose-ct:0.25,input=hu", "CT images: a quarter of the dose, Poisson noise on the sinogram"
    return "kspace:4x", "MR images: 4x Cartesian undersampling of k-space simulated from the magnitude"


def plan_enhancement(
    data: Any,
    *,
    device: str = "cpu",
    measure: bool = True,
    time_budget_s: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> EnhancePlan:
    """Plan an enhancement model for a :class:`medsight.tasks.enhance.data.EnhanceData`.

    Raises:
        ConfigError: an unknown override, a degradation that does not parse, or one that does not fit
            the data (k-space networks need a k-space degradation).
    """
    from medsight.data.degradations import parse_degradation

    overrides = dict(overrides or {})
    EnhancePlan.check_override_names(overrides)
    reasons: dict[str, str] = {}
    text, why = default_degradation(data.kind, data.modality)
    if "degradation" in overrides:
        text, why = overrides["degradation"], "set by the user"
    settings: dict[str, Any] = {}
    if text is not None:
        deg = parse_degradation(str(text))
        settings, text = deg.to_dict(), deg.spec
    reasons["degradation"] = why
    kind = settings.get("kind", "pairs")
    if kind == "sr" and settings.get("axis") is not None:
        raise ConfigError(
            f"plan.degradation: {text}: thick-slice super-resolution (axis=) is not supported by the enhance "
            "family, which works on 2D slices; use in-plane sr:<N>x"
        )
    side = MAX_SIDE["cuda" if device.startswith("cuda") else "cpu"]
    size = _slice_size(data.max_plane, side, reasons)
    network = str(overrides.get("network", "kspace_cascade" if kind == "kspace" else "residual_unet"))
    if network in KSPACE_NETWORKS and kind != "kspace":
        raise ConfigError(
            f"plan.network: {network} reconstructs k-space; the degradation is {text or 'pairs'}"
        )
    reasons["network"] = _network_reason(network, kind)
    in_channels = 3 if network in KSPACE_NETWORKS else 1
    out = ["magnitude", "real", "imaginary"] if network in KSPACE_NETWORKS else ["image"]
    gpu = "cuda" if device.startswith("cuda") else "cpu"
    patch = None if network in KSPACE_NETWORKS else [min(n, PATCH_SIDE[gpu]) for n in size]
    reasons["patch_size"] = (
        "whole slices: data consistency needs the whole k-space"
        if patch is None
        else f"random {patch} crops of the degraded slices (the network is convolutional; inference tiles)"
    )
    pixels, seen = STEP_PIXELS[gpu], patch or size
    batch = int(max(2, min(32, pixels // (seen[0] * seen[1]))))
    reasons["batch_size"] = f"{batch}: {pixels:,} pixels per step on this device over {seen} inputs"
    kwargs = dict(overrides.get("network_kwargs") or {})
    if "network_kwargs" not in overrides:
        kwargs.update(_width(network, seen, batch, in_channels, len(out), measure, time_budget_s, reasons))
    intensity = "ct" if data.modality == "CT" else "scale"
    reasons["intensity"] = (
        "CT in HU: (x + 1000) / 1000" if intensity == "ct" else "per slice: / 99th percentile of the input"
    )
    plan = EnhancePlan(
        dataset=data.name,
        dim=2,
        in_channels=in_channels,
        class_names=out,
        normalization=[ChannelNorm(scheme="none") for _ in range(in_channels)],
        network=network,
        network_kwargs=kwargs,
        batch_size=batch,
        data_kind=data.kind,
        degradation=text,
        degradation_settings=settings,
        simulated_kspace=kind == "kspace" and data.kind != "kspace",
        modality=data.modality,
        intensity=intensity,
        slice_size=size,
        patch_size=patch,
        degradation_seed=seed,
        reasons=reasons,
        data_summary=data.describe(),
        tta=False,
    )
    overrides.pop("degradation", None)
    return plan.with_overrides(overrides)


def _slice_size(max_plane: list[int], side: int, reasons: dict[str, str]) -> list[int]:
    size = [min(side, math.ceil(n / MULTIPLE) * MULTIPLE) for n in max_plane]
    reasons["slice_size"] = (
        f"the largest in-plane size {max_plane} rounded up to a multiple of {MULTIPLE}, at most {side}; "
        "slices are centred and zero-padded or cropped to it"
    )
    return size


def _network_reason(network: str, kind: str) -> str:
    if network == "kspace_cascade":
        return "k-space: unrolled cascade of residual U-Nets with hard data consistency"
    if network == "residual_unet":
        return f"{kind}: residual U-Net (MONAI BasicUNet + global residual)"
    return f"{network} (set by the user)"


def _width(
    network: str,
    size: list[int],
    batch: int,
    in_channels: int,
    out_channels: int,
    measure: bool,
    time_budget_s: float | None,
    reasons: dict[str, str],
) -> dict[str, Any]:
    from medsight.models import model_info

    option = model_info(network).width_option
    default = DEFAULT_WIDTH.get(network)
    if not measure or not time_budget_s or option is None:
        reasons["width"] = f"{option}={default}: the default (no time budget to size it against)"
        return {option: default} if option and default else {}
    from medsight.planning.search import StepProbe, search_width

    probe = StepProbe(network, 2, in_channels, out_channels, size, batch, "cpu", {})  # size: what a step sees
    target = time_budget_s / MIN_STEPS
    choice = search_width(probe, WIDTHS.get(network, (default,)), target)
    reasons["width"] = (
        f"{choice.describe()}: the widest whose step allows {MIN_STEPS} steps in {time_budget_s:.0f} s"
    )
    return choice.options


__all__ = ["EnhancePlan", "default_degradation", "plan_enhancement"]
