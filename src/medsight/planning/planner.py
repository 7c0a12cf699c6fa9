"""From a dataset fingerprint to a Plan, sized for the machine it runs on (nnU-Net's idea).

Each choice records its reason in ``plan.reasons``. The steps:

1. dimensionality: the data's own (2D pictures -> 2D, volumes -> 3D);
2. target spacing: the median spacing; an axis more than 3x coarser than the finest takes the
   10th percentile of its spacings (nnU-Net's anisotropy rule); on a CPU, volumes are then coarsened
   until a median case fits ``max_case_voxels`` (training at full resolution would not finish);
3. normalisation per channel: CT -> clip to the foreground 0.5/99.5 percentiles + dataset z-score;
   RGB -> scale to 0..1 + dataset z-score; anything else -> per-image z-score (inside the non-zero
   mask when cropping to it removes more than a quarter of the volume, as nnU-Net does);
4. patch size: the median resampled shape, shrunk along its longest axis until it fits the
   device's patch budget, rounded to what the network's down-sampling needs;
5. batch size from the device's voxels-per-step budget (lowered to fit memory); network width: the
   widest whose *measured* training step on this machine fits the step-time target (the device's
   default, or less when a short ``train.time_budget`` must still give ~TARGET_STEPS updates);
6. passes over the data: when a time budget is given and the measured step would see the training
   data fewer than MIN_PASSES times, the spacing is coarsened (a quarter of the voxels per step, never
   below MIN_SIDE voxels per axis) and steps 4-5 are redone: a few passes at full resolution learn
   less than many at half resolution (ISIC at 256 px in 20 minutes: ~2.6 passes).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from medsight.planning.plan import ChannelNorm, Plan

TARGET_STEPS = 1200  # updates a time-budgeted run should get at least
MIN_STEP_SECONDS = 0.3
MIN_PASSES = 10  # below this many passes over the data in the time budget, trade resolution for passes
COARSEN = {2: 2.0, 3: 4 ** (1 / 3)}  # spacing factor of one coarsening step: a quarter of the voxels
MIN_SIDE = {2: 128, 3: 32}  # never coarsen a median case below this many voxels along its shortest axis


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
    """The budget for ``device`` ("cpu", "cuda", or None: CUDA when available)."""
    import torch

    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return GPU_BUDGET if str(device).startswith("cuda") else CPU_BUDGET


def plan_segmentation(
    fp: Any, *, budget: DeviceBudget | None = None, measure: bool = True, time_budget_s: float | None = None
) -> Plan:
    """Plan a segmentation run from a :class:`medsight.data.Fingerprint`.

    Args:
        fp: the dataset fingerprint.
        budget: the device budget (default: this machine's device).
        measure: time candidate networks on this machine (else take the device's default width).
        time_budget_s: the training wall-clock budget, when known: a short one asks for faster steps.
    """
    budget = budget or device_budget()
    reasons: dict[str, str] = {}
    dim = int(fp.dim)
    reasons["dim"] = f"the data are {dim}D"
    spacing, shape = _target_spacing(fp, budget, reasons)
    norms = _normalization(fp, reasons)
    target = step_target(budget, dim, time_budget_s)
    while True:
        patch, topo = _patch_size(shape, spacing, budget.patch_voxels[dim], reasons)
        width, batch, seconds = _width_and_batch(fp, patch, spacing, budget, measure, reasons, target)
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
    class_names, values, regions = _classes(fp)
    if regions:
        reasons["regions"] = (
            f"nested labels: region-based training on {', '.join(regions)} (sigmoid per region)"
        )
    return Plan(
        task="segment",
        dataset=fp.name,
        dim=dim,
        in_channels=int(fp.num_channels),
        class_names=class_names,
        label_values=values,
        regions=regions,
        target_spacing=[round(s, 5) for s in spacing],
        normalization=norms,
        patch_size=patch,
        batch_size=batch,
        network="dynunet",
        network_kwargs={"base_filters": width, "spacing": [round(s, 5) for s in spacing], "res_block": True},
        deep_supervision=len(topo.strides) > 2,
        loss="dice_ce",
        reasons=reasons,
        fingerprint_summary=_summary(fp),
    )


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
    shape: list[float], spacing: list[float], max_voxels: int, reasons: dict[str, str]
) -> tuple[list[int], Any]:
    from medsight.models.segmentation import dynunet_topology

    patch = [float(s) for s in shape]
    while np.prod(patch) > max_voxels:
        # shrink the axis that is longest in physical size relative to the others (nnU-Net's rule)
        axis = int(np.argmax(np.array(patch) * np.array(spacing) / np.median(spacing)))
        patch[axis] *= 0.9
    rounded = [max(8, int(p)) for p in patch]
    topo = dynunet_topology(rounded, spacing, max_depth=5, min_feature_size=4)
    # round down to the divisor so the patch stays inside the budget
    patch_i = [max(d, (p // d) * d) for p, d in zip(rounded, topo.divisor, strict=True)]
    topo = dynunet_topology(patch_i, spacing, max_depth=5, min_feature_size=4)
    patch_i = topo.patch_size
    reasons["patch_size"] = (
        f"median resampled shape {[round(s) for s in shape]} shrunk to the device patch budget "
        f"of {max_voxels:,} voxels and rounded to multiples of {topo.divisor}"
    )
    return patch_i, topo


def _activation_gb(patch: list[int], width: int, batch: int, in_ch: int) -> float:
    """Rough training memory: every stage keeps ~12 feature maps (convs, norms, grads) of its size."""
    voxels, total, f = float(np.prod(patch)), 0.0, width
    for _ in range(6):
        total += voxels * f * 12
        voxels /= 2 ** len(patch)
        f = min(f * 2, 320)
    return batch * (total + np.prod(patch) * in_ch) * 4 / 1e9


def _width_and_batch(
    fp: Any,
    patch: list[int],
    spacing: list[float],
    budget: DeviceBudget,
    measure: bool,
    reasons: dict[str, str],
    step_seconds: float,
) -> tuple[int, int, float | None]:
    """Width, batch size and the measured seconds of the chosen width's step (None: not measured)."""
    dim = int(fp.dim)
    pv = int(np.prod(patch))
    total_voxels = sum(np.prod(c.shape) for c in fp.cases)
    batch = int(max(2, min(budget.step_voxels[dim] // pv, math.floor(0.05 * total_voxels / pv))))
    why = [f"batch {batch} from the {budget.device} budget of {budget.step_voxels[dim]:,} voxels per step"]
    while batch > 2 and _activation_gb(patch, budget.widths[0], batch, fp.num_channels) > budget.memory_gb:
        batch -= 1
    fitting = [
        w for w in budget.widths if _activation_gb(patch, w, batch, fp.num_channels) <= budget.memory_gb
    ]
    width = fitting[0] if fitting else budget.widths[0]
    width_seconds: float | None = None
    if not measure:
        width = budget.default_width if budget.default_width in fitting else width
        why.append(f"width {width}: the {budget.device} default (not measured)")
    else:
        for candidate in fitting:  # narrowest first: stop at the first that is too slow
            seconds = _measure_step(fp, patch, spacing, candidate, batch, budget.device)
            why.append(f"width {candidate}: measured {seconds:.2f} s per step")
            if seconds > step_seconds and candidate != fitting[0]:
                break
            width, width_seconds = candidate, seconds
            if seconds > step_seconds:
                break
    reasons["batch_size"] = "; ".join(why)
    reasons["network"] = (
        f"DynUNet (nnU-Net's) with {width} base filters: the widest that fits {budget.memory_gb:g} GB"
        + (f" and a measured step of at most {step_seconds:.2f} s on this machine" if measure else "")
    )
    return width, batch, width_seconds


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


def step_target(budget: DeviceBudget, dim: int, time_budget_s: float | None) -> float:
    """Seconds one training step may take: the device default, or less when a short wall-clock budget
    must still give about TARGET_STEPS updates."""
    default = budget.step_seconds[dim]
    if time_budget_s is None:
        return default
    return float(min(default, max(MIN_STEP_SECONDS, time_budget_s / TARGET_STEPS)))


def _measure_step(
    fp: Any, patch: list[int], spacing: list[float], width: int, batch: int, device: str
) -> float:
    """Seconds per training step (forward + backward + update) of a candidate network."""
    import torch

    from medsight.models import build_model

    n_out = len(fp.regions) if fp.regions else len(fp.labels)
    net = build_model(
        "dynunet",
        spatial_dims=int(fp.dim),
        in_channels=int(fp.num_channels),
        out_channels=n_out,
        patch_size=patch,
        deep_supervision=False,
        spacing=spacing,
        base_filters=width,
        res_block=True,
    ).to(device)
    return time_training_step(net, torch.randn(batch, int(fp.num_channels), *patch, device=device))


def time_training_step(net: Any, x: Any) -> float:
    """Seconds of one training step of ``net`` on batch ``x`` (forward, backward, AdamW update): the
    faster of two after a warm-up."""
    import torch

    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        opt.zero_grad()
        net(x).float().mean().backward()
        opt.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(min(times[1:]))


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
