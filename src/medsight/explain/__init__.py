"""Explanations of a classifier's decision: Grad-CAM and occlusion heatmaps, and a PNG of them.

Works with any 2D or 3D classifier, a ``torch.nn.Module`` mapping ``(B, C, *spatial)`` to logits
``(B, K)``. Both methods come from ``monai.visualize``; this module picks defaults, keeps the caller's
model untouched and scales the result to a ``[0, 1]`` heatmap of the image's spatial shape.

Both explain the class score before any softmax/sigmoid (the logit), as in the Grad-CAM paper, so they
work unchanged for multi-class (softmax) and multi-label (sigmoid, ``target`` = label index) models.

Example:
    >>> heat = explain(model, image, method="gradcam")  # image: (C, H, W) or (C, X, Y, Z)
    >>> png = explanation_png(image, heat, title="class 1")  # PNG bytes
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from medsight.errors import ConfigError, DataError

METHODS = ("gradcam", "occlusion")
_CONV_TYPES = (nn.Conv2d, nn.Conv3d)
_N_LISTED = 5
# Occlusion defaults per number of spatial axes. 2D: a mask of 1/8 of each side, half-overlapping (about
# 225 forward passes, cheap in 2D). 3D: 1/4 of each side without overlap, 64 passes whatever the volume
# size; 1/8 would be 512 passes, minutes per 64^3 volume on a 2-core CPU even for a ResNet-18 of width
# 0.25 (about 0.6 s a pass there), while 64 passes are about 20-40 s.
_MASK_FRACTION = {2: 8, 3: 4}
_OVERLAP = {2: 0.5, 3: 0.0}
_N_BATCH = {2: 16, 3: 8}
_ALPHA = 0.45


def default_target_layer(model: nn.Module) -> str:
    """Name of the last ``Conv2d``/``Conv3d`` module of ``model``, the layer Grad-CAM hooks by default.

    Raises:
        ConfigError: when the model has no 2D/3D convolution (e.g. a pure vision transformer).
    """
    names = _conv_names(model)
    if not names:
        raise ConfigError(
            f"gradcam: model {type(model).__name__} has no Conv2d/Conv3d layer to hook; "
            "use method='occlusion', which needs no convolution"
        )
    return names[-1]


def explain(
    model: nn.Module,
    image: torch.Tensor | np.ndarray,
    *,
    method: str = "gradcam",
    target: int | None = None,
    layer: str | None = None,
    mask_size: int | Sequence[int] | None = None,
) -> np.ndarray:
    """Heatmap of the regions of ``image`` that drive the model's score for class ``target``.

    Args:
        model: classifier mapping ``(B, C, *spatial)`` to logits ``(B, K)``.
        image: one preprocessed float image ``(C, H, W)`` or ``(C, X, Y, Z)`` (no batch axis).
        method: ``"gradcam"`` (MONAI ``GradCAM`` at ``layer``) or ``"occlusion"`` (MONAI
            ``OcclusionSensitivity``: drop of the target logit when a region is occluded).
        target: class (multi-label: label) index to explain; default the highest logit.
        layer: Grad-CAM only, a module name of ``model``; default :func:`default_target_layer`.
        mask_size: occlusion only, the occluded box per spatial axis (one int for all); default about
            1/8 of each side in 2D (half-overlapping windows), 1/4 in 3D (no overlap), at least 2.

    Returns:
        float32 array of the image's spatial shape in ``[0, 1]``; higher = more important. All zeros
        when nothing raises the score (e.g. Grad-CAM's ReLU removes everything).

    The model is run in eval mode; its parameters, their gradients, its hooks and the train/eval mode of
    every submodule are as before when this returns (Grad-CAM runs on a private copy of the model).

    Raises:
        ConfigError: unknown ``method``, ``layer`` not in the model, ``target`` out of range,
            bad ``mask_size``.
        DataError: ``image`` not ``(C, *spatial)`` with 2 or 3 spatial axes, or not finite.
    """
    if method not in METHODS:
        raise ConfigError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    x = _batch(image, model)
    with _restored_modes(model), torch.inference_mode(False):
        model.eval()
        with torch.no_grad():
            logits = _logits(model, x)
        cls = _target(target, logits)
        if method == "gradcam":
            raw = _gradcam(model, x, cls, layer)
        else:
            raw = _occlusion(model, x, cls, logits[0, cls].item(), mask_size)
    return _unit_scale(raw)


def explanation_png(image: torch.Tensor | np.ndarray, heatmap: np.ndarray, title: str = "") -> bytes:
    """PNG bytes of two panels: the image, and the image with ``heatmap`` overlaid (jet, translucent).

    Args:
        image: ``(C, H, W)`` or ``(C, X, Y, Z)``; 1 channel is shown grey (windowed to its 0.5-99.5
            percentiles), 3 channels as RGB (rescaled when outside 0..1), other counts by channel 0.
        heatmap: ``(H, W)`` or ``(X, Y, Z)`` from :func:`explain`.
        title: figure title (e.g. the case id and the explained class).

    A 3D volume is shown at the axial slice (last axis) holding the heatmap's maximum (the middle slice
    of an all-zero heatmap).

    Raises:
        DataError: when the shapes do not fit together.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from medsight.report.plots import _display_image, _png_bytes

    img = _as_numpy(image, "image")
    heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32))
    if img.ndim not in (3, 4) or img.shape[1:] != heat.shape:
        raise DataError(
            f"heatmap: expected the spatial shape of image {tuple(img.shape)}, got {tuple(heat.shape)}"
        )
    suffix = ""
    if heat.ndim == 3:
        peak = np.unravel_index(np.argmax(heat), heat.shape)[-1] if heat.max() > 0 else heat.shape[-1] // 2
        k = int(peak)
        img, heat, suffix = img[..., k], heat[..., k], f" (axial slice {k})"
    view = np.moveaxis(img, 0, -1) if img.shape[0] == 3 else img[0]
    shown = _display_image(view)
    h, w = heat.shape
    panel_w = 3.6
    fig = Figure(figsize=(2 * panel_w + 0.8, panel_w * h / w + 0.5), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    cmap = None if shown.ndim == 3 else "gray"
    for ax, name in zip(axes, ("image" + suffix, "explanation"), strict=True):
        ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(name, fontsize="medium")
        ax.set_axis_off()
    overlay = axes[1].imshow(
        np.clip(heat, 0.0, 1.0),
        cmap=colormaps["jet"],
        alpha=_ALPHA,
        vmin=0.0,
        vmax=1.0,
        interpolation="bilinear",
    )
    fig.colorbar(overlay, ax=axes[1], fraction=0.046, pad=0.02, label="importance")
    if title:
        fig.suptitle(title)
    return _png_bytes(fig)


# ------------------------------------------------------------------------------------------------ methods


def _gradcam(model: nn.Module, x: torch.Tensor, cls: int, layer: str | None) -> torch.Tensor:
    """Raw Grad-CAM map ``(*spatial)`` at the input resolution.

    MONAI's hooks stay registered on the module they are given and it switches off the target's
    ``inplace`` flag, so they go on a deep copy; in-place ops are switched off there too, because a
    full backward hook fails on an output modified in place.
    """
    from monai.visualize import GradCAM
    from monai.visualize.visualizer import default_upsampler

    name = default_target_layer(model) if layer is None else _check_layer(model, layer)
    twin = copy.deepcopy(model).eval()
    for mod in twin.modules():
        if getattr(mod, "inplace", False) is True:
            mod.inplace = False
    twin.requires_grad_(False)  # gradients flow through the input instead, none land on weights
    cam = GradCAM(nn_module=twin, target_layers=name)
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's "hook not triggered" warning becomes the error below
        try:
            acti = cam.compute_map(xg, class_idx=cls)
        except (IndexError, KeyError) as err:
            raise ConfigError(
                f"layer: {name!r} got no activation or gradient in the forward/backward pass; "
                f"pick a layer the model uses, e.g. {', '.join(_conv_names(model)[-_N_LISTED:])}"
            ) from err
    spatial = tuple(x.shape[2:])
    if acti.ndim != x.ndim:
        convs = ", ".join(_conv_names(model)[-_N_LISTED:]) or "none in this model"
        raise ConfigError(
            f"layer: {name!r} outputs shape {tuple(acti.shape)}, expected a feature map with "
            f"{len(spatial)} spatial axes; pick a convolution ({convs})"
        )
    return default_upsampler(spatial)(acti.detach().float())[0, 0]


def _occlusion(
    model: nn.Module, x: torch.Tensor, cls: int, base: float, mask_size: int | Sequence[int] | None
) -> torch.Tensor:
    """Drop of the target logit when each region is occluded, clipped at 0, ``(*spatial)``."""
    from monai.visualize import OcclusionSensitivity

    spatial = tuple(x.shape[2:])
    dims = len(spatial)
    mask = _mask_size(mask_size, spatial)
    occ = OcclusionSensitivity(
        nn_module=model,
        mask_size=mask,
        n_batch=_N_BATCH[dims],
        verbose=False,
        mode="mean_img",
        overlap=_OVERLAP[dims],
        activate=lambda out: out[:, cls : cls + 1].float(),
    )
    with torch.no_grad(), warnings.catch_warnings():
        # MONAI indexes with lists of slices, which torch >= 2.8 warns about; nothing the caller can fix
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
        occluded, _ = occ(x)
    return torch.clamp(base - torch.as_tensor(occluded)[0, 0].float(), min=0.0)


# ------------------------------------------------------------------------------------------------ helpers


def _conv_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, _CONV_TYPES)]


def _check_layer(model: nn.Module, layer: str) -> str:
    if layer in dict(model.named_modules()) and layer != "":
        return layer
    convs = _conv_names(model)
    hint = f"conv layers include {', '.join(convs[-_N_LISTED:])}" if convs else "the model has no conv layer"
    raise ConfigError(f"layer: {layer!r} is not a module of {type(model).__name__}; {hint}")


def _batch(image: torch.Tensor | np.ndarray, model: nn.Module) -> torch.Tensor:
    """``image`` as a ``(1, C, *spatial)`` tensor on the model's device and dtype."""
    with torch.inference_mode(False):
        x = torch.as_tensor(_as_numpy(image, "image")).clone()
    if x.ndim not in (3, 4):
        raise DataError(
            f"image: expected (C, H, W) or (C, X, Y, Z) without a batch axis, got shape {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise DataError("image: expected finite values, found NaN or infinity")
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.dtype.is_floating_point else torch.float32
    return x[None].to(device=param.device if param is not None else "cpu", dtype=dtype)


def _as_numpy(image: Any, name: str) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        return image.detach().cpu().float().numpy()
    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float32)


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    try:
        out = model(x)
    except RuntimeError as err:  # wrong channel count or number of axes for this model
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"image: batch of shape {tuple(x.shape)} does not fit the model: {reason}") from err
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model: expected logits of shape (1, K) for one image, got {shape}")
    return out


def _target(target: int | None, logits: torch.Tensor) -> int:
    k = logits.shape[1]
    if target is None:
        return int(logits[0].argmax())
    if isinstance(target, bool) or not isinstance(target, int | np.integer) or not 0 <= int(target) < k:
        raise ConfigError(f"target: expected a class index in [0, {k}), got {target!r}")
    return int(target)


def _mask_size(mask_size: int | Sequence[int] | None, spatial: tuple[int, ...]) -> tuple[int, ...]:
    if mask_size is None:
        fraction = _MASK_FRACTION[len(spatial)]
        return tuple(min(s, max(2, round(s / fraction))) for s in spatial)
    if isinstance(mask_size, int | np.integer):
        sizes: tuple = (mask_size,) * len(spatial)
    else:
        sizes = tuple(mask_size) if isinstance(mask_size, Sequence) else ()
    ok = len(sizes) == len(spatial) and all(
        isinstance(m, int | np.integer) and not isinstance(m, bool) and 1 <= m <= s
        for m, s in zip(sizes, spatial, strict=True)
    )
    if not ok:
        raise ConfigError(
            f"mask_size: expected ints in 1..side for image spatial shape {spatial}, got {mask_size!r}"
        )
    return tuple(int(m) for m in sizes)


def _unit_scale(raw: torch.Tensor) -> np.ndarray:
    heat = np.nan_to_num(raw.detach().cpu().numpy().astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    heat = np.clip(heat, 0.0, None)
    top = float(heat.max())
    return heat / top if top > 0 else np.zeros_like(heat)


@contextmanager
def _restored_modes(model: nn.Module) -> Iterator[None]:
    """Put back the train/eval flag of every submodule (not just the root) on exit."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for mod, training in modes:
            mod.training = training
