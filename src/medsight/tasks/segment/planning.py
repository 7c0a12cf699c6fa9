"""The segmentation plan, and planning it from a dataset fingerprint, sized for the machine it runs on
(nnU-Net's idea).

Each choice records its reason in ``plan.reasons``. The steps:

1. dimensionality: the data's own (2D pictures -> 2D, volumes -> 3D);
2. target spacing: the median spacing; an axis more than 3x coarser than the finest takes the
   10th percentile of its spacings (nnU-Net's anisotropy rule); on a CPU, volumes are then coarsened
   until a median case fits ``max_case_voxels`` (training at full resolution would not finish);
3. normalisation per channel: CT -> clip to the foreground 0.5/99.5 percentiles + dataset z-score;
   RGB -> scale to 0..1 + dataset z-score; anything else -> per-image z-score (inside the non-zero
   mask when cropping to it removes more than a quarter of the volume, as nnU-Net does);
4. patch size: the median resampled shape, shrunk along its longest axis until it fits the
   device's patch budget, rounded to what the network's down-sampling needs (DynUNet's topology,
   and the multiple the chosen network's ``ModelInfo`` declares);
5. batch size from the device's voxels-per-step budget (lowered to fit memory); network width: the
   widest whose *measured* training step on this machine fits the step-time target (the device's
   default, or less when a short ``train.time_budget`` must still give ~TARGET_STEPS updates), timed
   on the network the plan trains (DynUNet, or the one ``overrides`` name);
6. passes over the data: when a time budget is given and the measured step would see the training
   data fewer than MIN_PASSES times, the spacing is coarsened (a quarter of the voxels per step, never
   below MIN_SIDE voxels per axis) and steps 4-5 are redone: a few passes at full resolution learn
   less than many at half resolution (ISIC at 256 px in 20 minutes: ~2.6 passes).

Importing this module is cheap (no torch): the plan model is what a run's plan.json loads into.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field

from medsight.planning.budget import DeviceBudget, device_budget
from medsight.planning.plan import ChannelNorm, PhotoScale, PlanBase
from medsight.planning.search import StepProbe, WidthChoice, search_width

DEFAULT_NETWORK = "dynunet"
TARGET_STEPS = 1200  # updates a time-budgeted run should get at least
MIN_STEP_SECONDS = 0.3
MIN_PASSES = 10  # below this many passes over the data in the time budget, trade resolution for passes
COARSEN = {2: 2.0, 3: 4 ** (1 / 3)}  # spacing factor of one coarsening step: a quarter of the voxels
MIN_SIDE = {2: 128, 3: 32}  # never coarsen a median case below this many voxels along its shortest axis


class Plan(PlanBase):
    """What a segmentation run trains with. Saved as plan.json; ``--set plan.<field>=...`` overrides."""

    task: str = "segment"
    label_values: list[int]  # the integer values of the reference label maps, background first
    regions: dict[str, list[int]] | None = None
    target_spacing: list[float]
    patch_size: list[int]
    network: str = DEFAULT_NETWORK
    deep_supervision: bool = True
    loss: Literal["dice_ce", "dice_focal"] = "dice_ce"
    foreground_oversample: float = 0.33
    sliding_window_overlap: float = 0.5
    postprocess_lcc: bool = False
    photo_scale: PhotoScale | None = None  # photographs: resample each image to the training scale
    camera_augment: bool = False  # also another camera's white balance, gamma, sharpness (photographs: on)
    fingerprint_summary: dict[str, Any] = Field(default_factory=dict)

    @property
    def out_channels(self) -> int:
        """Network output channels: one per region (sigmoid) or one per class (softmax)."""
        return len(self.regions) if self.regions else len(self.class_names)

    def label_names(self) -> dict[str, int]:
        """Name -> value of the label maps predictions are written as (background included): the class
        names, or ``label_<value>`` when the plan trains overlapping regions (their names are not values)."""
        if self.regions:
            return {f"label_{v}": v for v in self.label_values}
        return dict(zip(self.class_names, self.label_values, strict=True))


def plan_segmentation(
    fp: Any,
    *,
    budget: DeviceBudget | None = None,
    measure: bool = True,
    time_budget_s: float | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Plan:
    """Plan a segmentation run from a :class:`medsight.data.Fingerprint`.

    Args:
        fp: the dataset fingerprint.
        budget: the device budget (default: this machine's device).
        measure: time candidate networks on this machine (else take the device's default width).
        time_budget_s: the training wall-clock budget, when known: a short one asks for faster steps.
        overrides: the user's ``plan.<field>`` values, applied to the returned plan. ``network`` and
            ``network_kwargs`` are planned for: the patch, deep supervision and the measured width
            are those of the chosen network (``network_kwargs`` given: timed as given, not sized).

    Raises:
        ConfigError: an override names no plan field, or has an invalid value.
    """
    overrides = dict(overrides or {})
    Plan.check_override_names(overrides)
    budget = budget or device_budget()
    network = str(overrides.get("network", DEFAULT_NETWORK))
    reasons: dict[str, str] = {}
    dim = int(fp.dim)
    reasons["dim"] = f"the data are {dim}D"
    spacing, shape = _target_spacing(fp, budget, reasons)
    norms = _normalization(fp, reasons)
    target = step_target(budget, dim, time_budget_s)
    while True:
        patch, topo = _patch_size(shape, spacing, budget.patch_voxels[dim], network, reasons)
        batch = _batch_size(fp, patch, budget, reasons)
        kwargs = _network_kwargs(network, spacing, overrides.get("network_kwargs"))
        probe = _probe(fp, network, patch, batch, budget.device, kwargs)
        width, seconds = _width(probe, budget, measure, target, "network_kwargs" not in overrides, reasons)
        passes = _passes_over_data(fp, spacing, patch, batch, seconds, time_budget_s)
        if passes is None or passes >= MIN_PASSES or min(shape) / COARSEN[dim] < MIN_SIDE[dim]:
            break
        spacing, shape = [s * COARSEN[dim] for s in spacing], [s / COARSEN[dim] for s in shape]
        reasons["target_spacing"] += (
            f"; coarsened x{COARSEN[dim]:.2f}: at the finer spacing the time budget allows only "
            f"~{passes:.1f} passes over the training data (fewer than {MIN_PASSES})"
        )
    if passes is not None:
        reasons["passes"] = f"~{passes:.1f} passes over the training data expected in the time budget"
    reasons["network"] = "DynUNet (nnU-Net's network), the default" if network == DEFAULT_NETWORK else network
    class_names, values, regions = _classes(fp)
    if regions:
        reasons["regions"] = (
            f"nested labels: region-based training on {', '.join(regions)} (sigmoid per region)"
        )
    plan = Plan(
        task="segment",
        dataset=fp.name,
        dim=dim,
        in_channels=int(fp.num_channels),
        class_names=class_names,
        label_values=values,
        regions=regions,
        target_spacing=[round(s, 5) for s in spacing],
        normalization=norms,
        camera_augment=dim == 2 and all(n.scheme == "rgb" for n in norms),
        patch_size=patch,
        batch_size=batch,
        network=network,
        network_kwargs={**width, **kwargs},
        deep_supervision=_deep_supervision(network, topo),
        loss="dice_ce",
        reasons=reasons,
        fingerprint_summary=_summary(fp),
    )
    return plan.with_overrides(overrides)


PHOTO_SAMPLE = 200  # training images measured to choose a photograph's scale reference


def plan_photo_scale(cases: list[Any], plan: Plan, overrides: Mapping[str, Any]) -> Plan:
    """``plan`` with :attr:`Plan.photo_scale` for 2D photographs without a physical spacing (every
    channel RGB-normalised, a median spacing of 1 px): measured on up to PHOTO_SAMPLE training images.
    Other data, and a user's ``plan.photo_scale``, are left as they are."""
    from medsight.transforms.photo_scale import choose_method

    photographs = plan.dim == 2 and all(n.scheme == "rgb" for n in plan.normalization)
    unit_spacing = all(s == 1 for s in plan.fingerprint_summary.get("median_spacing", [1.0, 1.0]))
    if "photo_scale" in overrides or not photographs or not unit_spacing or not cases:
        return plan
    step = max(1, len(cases) // PHOTO_SAMPLE)
    method, reference, why = choose_method(case.read() for case in cases[::step][:PHOTO_SAMPLE])
    reasons = {**plan.reasons, "photo_scale": f"{why} ({reference:.0f} px)"}
    scale = PhotoScale(method=method, reference_px=round(reference, 2))
    return plan.model_copy(update={"photo_scale": scale, "reasons": reasons})


def with_augment_reason(plan: Plan) -> dict[str, str]:
    """The plan's reasons with what its augmentation does (after the user's ``plan.augment``)."""
    from medsight.transforms.segmentation import augmentation_summary, is_photograph

    user = "set by the user; " if plan.reasons.get("augment") == "set by the user" else ""
    reasons = {**plan.reasons, "augment": user + augmentation_summary(plan)}
    if is_photograph(plan) and "camera_augment" not in reasons:
        reasons["camera_augment"] = (
            "photographs: another camera's look (colour, gamma, blur, sharpening), measured on DRIVE by "
            "benchmarks/shift.py: F1 under sensor noise 0.721 -> 0.743 and blur 0.785 -> 0.793, "
            "in-domain 0.819 -> 0.818 (within noise)"
        )
    return reasons


def step_target(budget: DeviceBudget, dim: int, time_budget_s: float | None) -> float:
    """Seconds one training step may take: the device default, or less when a short wall-clock budget
    must still give about TARGET_STEPS updates."""
    default = budget.step_seconds[dim]
    if time_budget_s is None:
        return default
    return float(min(default, max(MIN_STEP_SECONDS, time_budget_s / TARGET_STEPS)))


def _classes(fp: Any) -> tuple[list[str], list[int], dict[str, list[int]] | None]:
    ordered = sorted(fp.labels.items(), key=lambda kv: kv[1])
    values = [v for _, v in ordered]
    if fp.regions:
        return list(fp.regions), values, {k: [int(x) for x in v] for k, v in fp.regions.items()}
    return [k for k, _ in ordered], values, None


def _target_spacing(
    fp: Any, budget: DeviceBudget, reasons: dict[str, str]
) -> tuple[list[float], list[float]]:
    spacings = np.array([c.spacing for c in fp.cases], dtype=float)
    shapes = np.array([c.shape for c in fp.cases], dtype=float)
    target = np.median(spacings, axis=0)
    reasons["target_spacing"] = "median spacing of the training cases"
    coarse = int(np.argmax(target))
    if fp.dim == 3 and target[coarse] > 3 * target.min():
        target[coarse] = np.percentile(spacings[:, coarse], 10)
        reasons["target_spacing"] += f"; anisotropic: axis {coarse} uses the 10th percentile of its spacings"
    physical = np.median(shapes * spacings, axis=0)
    shape = physical / target
    if fp.dim == 3 and budget.max_case_voxels and np.prod(shape) > budget.max_case_voxels:
        factor = (np.prod(shape) / budget.max_case_voxels) ** (1 / 3)
        target = target * factor
        shape = physical / target
        reasons["target_spacing"] += (
            f"; coarsened x{factor:.2f} so a median case ({'x'.join(str(round(s)) for s in shape)}) "
            f"fits the {budget.device} budget of {budget.max_case_voxels:,} voxels"
        )
    return [float(s) for s in target], [float(s) for s in shape]


def _normalization(fp: Any, reasons: dict[str, str]) -> list[ChannelNorm]:
    norms, why = [], []
    crop_gain = _crop_gain(fp)
    for c in range(int(fp.num_channels)):
        modality = fp.modality.get(c, fp.modality.get(str(c), ""))  # type: ignore[call-overload]
        st = fp.intensity.get(c, fp.intensity.get(str(c)))  # type: ignore[call-overload]
        if modality == "CT":
            norms.append(
                ChannelNorm(
                    scheme="ct",
                    clip_low=st.percentile_00_5,
                    clip_high=st.percentile_99_5,
                    mean=st.mean,
                    std=max(st.std, 1e-6),
                )
            )
            why.append(
                f"{c}: CT, clip to foreground [{st.percentile_00_5:.0f}, {st.percentile_99_5:.0f}] + z-score"
            )
        elif modality == "RGB":
            norms.append(ChannelNorm(scheme="rgb", mean=st.mean / 255.0, std=max(st.std / 255.0, 1e-6)))
            why.append(f"{c}: RGB, /255 then dataset z-score")
        else:
            use_mask = fp.dim == 3 and crop_gain < 0.75
            norms.append(ChannelNorm(scheme="zscore", use_mask=use_mask))
            why.append(
                f"{c}: {modality or 'non-CT'}, per-image z-score"
                + (" inside the non-zero mask" if use_mask else "")
            )
    reasons["normalization"] = "; ".join(why)
    return norms


def _crop_gain(fp: Any) -> float:
    """Median fraction of the volume left after cropping to the non-zero region."""
    ratios = [np.prod(c.cropped_shape) / max(1, np.prod(c.shape)) for c in fp.cases]
    return float(np.median(ratios)) if ratios else 1.0


def _patch_size(
    shape: list[float], spacing: list[float], max_voxels: int, network: str, reasons: dict[str, str]
) -> tuple[list[int], Any]:
    from medsight.models import model_info
    from medsight.models.segmentation import dynunet_topology

    patch = [float(s) for s in shape]
    while np.prod(patch) > max_voxels:
        # shrink the axis that is longest in physical size relative to the others (nnU-Net's rule)
        axis = int(np.argmax(np.array(patch) * np.array(spacing) / np.median(spacing)))
        patch[axis] *= 0.9
    rounded = [max(8, int(p)) for p in patch]
    topo = dynunet_topology(rounded, spacing, max_depth=5, min_feature_size=4)
    multiples = model_info(network).multiples(len(rounded))
    steps = [math.lcm(d, m) for d, m in zip(topo.divisor, multiples, strict=True)]
    # round down to the step so the patch stays inside the budget
    patch_i = [max(s, (p // s) * s) for p, s in zip(rounded, steps, strict=True)]
    topo = dynunet_topology(patch_i, spacing, max_depth=5, min_feature_size=4)
    patch_i = topo.patch_size
    reasons["patch_size"] = (
        f"median resampled shape {[round(s) for s in shape]} shrunk to the device patch budget "
        f"of {max_voxels:,} voxels and rounded to multiples of {steps}"
    )
    return patch_i, topo


def _deep_supervision(network: str, topo: Any) -> bool:
    """Deep supervision when the network has heads for it and the patch is down-sampled twice or more."""
    from medsight.models import model_info

    return model_info(network).deep_supervision and len(topo.strides) > 2


def _activation_gb(patch: list[int], width: int, batch: int, in_ch: int) -> float:
    """Rough training memory: every stage keeps ~12 feature maps (convs, norms, grads) of its size."""
    voxels, total, f = float(np.prod(patch)), 0.0, width
    for _ in range(6):
        total += voxels * f * 12
        voxels /= 2 ** len(patch)
        f = min(f * 2, 320)
    return batch * (total + np.prod(patch) * in_ch) * 4 / 1e9


def _batch_size(fp: Any, patch: list[int], budget: DeviceBudget, reasons: dict[str, str]) -> int:
    """From the device's voxels-per-step budget, at most 5% of the training voxels, lowered to fit memory
    at the narrowest width."""
    dim = int(fp.dim)
    pv = int(np.prod(patch))
    total_voxels = sum(np.prod(c.shape) for c in fp.cases)
    batch = int(max(2, min(budget.step_voxels[dim] // pv, math.floor(0.05 * total_voxels / pv))))
    why = f"batch {batch} from the {budget.device} budget of {budget.step_voxels[dim]:,} voxels per step"
    lowered = batch
    while (
        lowered > 2 and _activation_gb(patch, budget.widths[0], lowered, fp.num_channels) > budget.memory_gb
    ):
        lowered -= 1
    if lowered < batch:
        why += f", lowered to {lowered} to fit {budget.memory_gb:g} GB"
    reasons["batch_size"] = why
    return lowered


def _network_kwargs(network: str, spacing: list[float], user_kwargs: Any) -> dict[str, Any]:
    """The network's options, its width aside: the user's when given, else the planned ones."""
    if user_kwargs is not None:
        return dict(user_kwargs)
    if network == DEFAULT_NETWORK:
        return {"spacing": [round(s, 5) for s in spacing], "res_block": True}
    return {}


def _probe(
    fp: Any, network: str, patch: list[int], batch: int, device: str, kwargs: dict[str, Any]
) -> StepProbe:
    return StepProbe(
        network=network,
        spatial_dims=int(fp.dim),
        in_channels=int(fp.num_channels),
        out_channels=len(fp.regions) if fp.regions else len(fp.labels),
        input_size=patch,
        batch_size=batch,
        device=device,
        options=kwargs,
    )


def _width(
    probe: StepProbe,
    budget: DeviceBudget,
    measure: bool,
    target: float,
    sized: bool,
    reasons: dict[str, str],
) -> tuple[dict[str, Any], float | None]:
    """The width option of the plan's network and the measured seconds of its step (None: not measured).

    Candidates are the device's widths whose estimated activations fit its memory (the narrowest when
    none does); none when not ``sized`` (the user gave the network's options)."""
    patch, batch, ch = probe.input_size, probe.batch_size, probe.in_channels
    fitting = [w for w in budget.widths if _activation_gb(patch, w, batch, ch) <= budget.memory_gb]
    candidates = (fitting or list(budget.widths[:1])) if sized else []
    if measure:
        choice: WidthChoice = search_width(probe, candidates, target)
        fits = f"; candidates: those that fit {budget.memory_gb:g} GB" if choice.option else ""
        reasons["width"] = choice.describe() + fits
        return choice.options, choice.seconds
    from medsight.models import model_info

    option = model_info(probe.network).width_option
    if option is None or option in probe.options or not candidates:
        reasons["width"] = f"{probe.network} as configured (not measured)"
        return {}, None
    width = budget.default_width if budget.default_width in candidates else candidates[0]
    reasons["width"] = f"{option}={width}: the {budget.device} default (not measured)"
    return {option: width}, None


def _passes_over_data(
    fp: Any,
    spacing: list[float],
    patch: list[int],
    batch: int,
    step_seconds: float | None,
    time_budget_s: float | None,
) -> float | None:
    """How many times the training data's voxels (at ``spacing``) are seen in the time budget."""
    if not time_budget_s or not step_seconds:
        return None
    target = np.asarray(spacing, dtype=float)
    voxels = sum(float(np.prod(np.asarray(c.shape) * np.asarray(c.spacing) / target)) for c in fp.cases)
    return time_budget_s / step_seconds * batch * float(np.prod(patch)) / max(voxels, 1.0)


def _summary(fp: Any) -> dict[str, Any]:
    return {
        "name": fp.name,
        "num_train": fp.num_train,
        "num_test": fp.num_test,
        "dim": fp.dim,
        "channels": {str(k): v for k, v in fp.channel_names.items()},
        "median_shape": fp.median_shape,
        "median_spacing": fp.median_spacing,
        "anisotropy": round(float(fp.anisotropy), 3),
        "classes": {c.name: round(c.fraction_present, 3) for c in fp.classes},
        "issues": len(fp.issues),
    }


__all__ = ["DEFAULT_NETWORK", "Plan", "plan_segmentation", "step_target"]
