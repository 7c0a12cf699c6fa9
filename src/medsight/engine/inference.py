"""Low-memory sliding-window inference with Gaussian blending and flip test-time augmentation.

The windows are MONAI's (``dense_patch_slices``) and so are the blending weights
(``compute_importance_map``), both computed in numpy by ``medsight.engine.windows`` (shared with the
torch-free ONNX runtime), so with TTA off and a float32 accumulator the result equals
``monai.inferers.sliding_window_inference(..., mode="gaussian")`` up to float rounding. The
difference is memory: windows are processed in groups that share a start along the last spatial
axis, and a rolling buffer only one patch deep along that axis holds the partial sums. Each part of
the volume that no later window touches is normalised, passed through the activation, and written
out (as probabilities, or directly as labels), so the full float32 probability map of a big volume
never exists unless it is asked for.

Outputs are blended *logits*; the activation is applied once, after blending and TTA averaging
(nnU-Net's and MONAI's usual post-processing order).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from medsight.engine.windows import WindowPlan as _Plan
from medsight.engine.windows import flip_sets as _flip_sets
from medsight.engine.windows import importance_map
from medsight.engine.windows import plan_windows as _plan
from medsight.errors import ConfigError, ShapeError

Activation = Literal["softmax", "sigmoid"] | None
OutputKind = Literal["probabilities", "labels"]


def predict_with_deep_supervision_head(
    model_output: torch.Tensor | Sequence[torch.Tensor], spatial_dims: int | None = None
) -> torch.Tensor:
    """Return the full-resolution head of a model output.

    Args:
        model_output: a tensor ``(B, C, *spatial)`` (returned as is), a stacked deep-supervision
            tensor ``(B, N_heads, C, *spatial)`` (head 0 is returned; recognised only when
            ``spatial_dims`` is given), or a list/tuple of heads (the first is returned).
        spatial_dims: number of spatial axes, needed to recognise a stacked tensor.
    """
    if isinstance(model_output, list | tuple):
        if not model_output:
            raise ShapeError("model output", "a non-empty list of heads", "an empty list")
        return model_output[0]
    if spatial_dims is not None and model_output.ndim == spatial_dims + 3:
        return model_output[:, 0]
    return model_output


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _model_device(model: nn.Module) -> torch.device:
    for p in itertools.chain(model.parameters(), model.buffers()):
        return p.device
    return torch.device("cpu")


def _predict_batch(
    model: nn.Module, x: torch.Tensor, flips: list[tuple[int, ...]], spatial_dims: int
) -> torch.Tensor:
    """Mean over the flip passes of the model's full-resolution logits for a batch of windows."""
    total: torch.Tensor | None = None
    for flip in flips:
        dims = [a + 2 for a in flip]
        xin = torch.flip(x, dims) if dims else x
        out = predict_with_deep_supervision_head(model(xin), spatial_dims).float()
        out = torch.flip(out, dims) if dims else out
        total = out if total is None else total.add_(out)
    assert total is not None
    return total / len(flips) if len(flips) > 1 else total


class _Sink:
    """Receives finished slabs of blended logits and stores probabilities or labels."""

    def __init__(
        self,
        channels: int,
        spatial: tuple[int, ...],
        activation: Activation,
        output: OutputKind,
        threshold: float,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.activation, self.output, self.threshold = activation, output, threshold
        if output == "probabilities":
            shape, out_dtype = (channels, *spatial), dtype
        elif activation == "sigmoid":
            shape, out_dtype = (channels, *spatial), torch.uint8
        else:
            shape, out_dtype = (1, *spatial), torch.uint8 if channels <= 256 else torch.int64
        self.result = torch.empty(shape, dtype=out_dtype, device=device)

    def write(self, logits: torch.Tensor, index: tuple[slice, ...]) -> None:
        """Store ``logits`` (C, *slab) at ``index`` (spatial slices into the unpadded volume)."""
        if self.output == "labels":
            if self.activation == "sigmoid":
                value = torch.sigmoid(logits) > self.threshold
            else:
                value = logits.argmax(dim=0, keepdim=True)
        elif self.activation == "softmax":
            value = torch.softmax(logits, dim=0)
        elif self.activation == "sigmoid":
            value = torch.sigmoid(logits)
        else:
            value = logits
        self.result[(slice(None), *index)] = value.to(self.result.dtype).to(self.result.device)


def _window_batches(windows: list[tuple[slice, ...]], batch_size: int) -> Iterator[list[tuple[slice, ...]]]:
    for i in range(0, len(windows), batch_size):
        yield windows[i : i + batch_size]


def _sliding_window_one(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    plan: _Plan,
    weight: torch.Tensor,
    *,
    out_channels: int | None,
    batch_size: int,
    device: torch.device,
    acc_dtype: torch.dtype,
    make_sink: Callable[[int], _Sink],
) -> torch.Tensor:
    """Blend the windows of one padded (C, *size) volume, slab by slab along the last axis."""
    roi, size = plan.roi, plan.size
    # Every window of a group starts at the group's last-axis start, so a buffer one patch deep
    # along that axis, whose column 0 is the current group's start, holds every partial sum.
    acc: torch.Tensor | None = None
    count = torch.zeros((1, *size[:-1], roi[-1]), dtype=torch.float32, device=device)
    sink: _Sink | None = None
    for g, (start, windows) in enumerate(plan.groups):
        for batch in _window_batches(windows, batch_size):
            x = torch.stack([image[(slice(None), *w)] for w in batch]).to(device=device, dtype=torch.float32)
            logits = predict(x)
            if acc is None:
                channels = logits.shape[1]
                if out_channels is not None and channels != out_channels:
                    raise ShapeError("model output channels", out_channels, channels)
                acc = torch.zeros((channels, *size[:-1], roi[-1]), dtype=acc_dtype, device=device)
                sink = make_sink(channels)
            if tuple(logits.shape[2:]) != roi:
                raise ShapeError("model output spatial size", roi, tuple(logits.shape[2:]))
            logits.mul_(weight)  # in place: no window-sized temporary per window
            for out, w in zip(logits, batch, strict=True):
                acc[(slice(None), *w[:-1])] += out
                count[(slice(None), *w[:-1])] += weight
        nxt = plan.groups[g + 1][0] if g + 1 < len(plan.groups) else size[-1]
        assert acc is not None and sink is not None
        _flush(acc, count, start, nxt, plan.crop, sink)
        _shift(acc, nxt - start)
        _shift(count, nxt - start)
    assert sink is not None
    return sink.result


def _flush(
    acc: torch.Tensor, count: torch.Tensor, lo: int, hi: int, crop: tuple[slice, ...], sink: _Sink
) -> None:
    """Normalise buffer columns for absolute last-axis range [lo, hi) and hand the unpadded part on."""
    z0, z1 = max(lo, crop[-1].start), min(hi, crop[-1].stop)
    if z1 <= z0:
        return
    inner = tuple(crop[:-1])
    # In place when acc is float32: these columns are dropped by the next _shift anyway.
    logits = acc[(slice(None), *inner, slice(z0 - lo, z1 - lo))].float()
    logits /= count[(slice(None), *inner, slice(z0 - lo, z1 - lo))]
    sink.write(logits, (*(slice(None),) * len(inner), slice(z0 - crop[-1].start, z1 - crop[-1].start)))


def _shift(buf: torch.Tensor, n: int) -> None:
    """Drop the first ``n`` columns of the last axis, move the rest to the front, zero the tail."""
    depth = buf.shape[-1]
    if n >= depth:
        buf.zero_()
        return
    buf[..., : depth - n] = buf[..., n:].clone()
    buf[..., depth - n :] = 0


def _check_args(
    image: torch.Tensor,
    patch_size: Sequence[int],
    overlap: float,
    mode: str,
    activation: Activation,
    output: OutputKind,
    batch_size: int,
    accumulator_dtype: torch.dtype,
) -> None:
    dims = len(patch_size)
    if image.ndim not in (dims + 1, dims + 2):
        raise ShapeError(
            f"image for a {dims}D patch_size",
            f"(C, *spatial) or (B, C, *spatial) with {dims} spatial axes",
            tuple(image.shape),
        )
    if min(int(p) for p in patch_size) < 1:
        raise ConfigError(f"patch_size must be positive, got {list(patch_size)}")
    if not 0 <= overlap < 1:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
    if mode not in ("gaussian", "constant"):
        raise ConfigError(f"mode must be 'gaussian' or 'constant', got {mode!r}")
    if activation not in ("softmax", "sigmoid", None):
        raise ConfigError(f"activation must be 'softmax', 'sigmoid' or None, got {activation!r}")
    if output not in ("probabilities", "labels"):
        raise ConfigError(f"output must be 'probabilities' or 'labels', got {output!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if accumulator_dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise ConfigError(f"accumulator_dtype must be a float dtype, got {accumulator_dtype}")


def sliding_window_predict(
    model: nn.Module,
    image: torch.Tensor,
    *,
    patch_size: Sequence[int],
    out_channels: int | None = None,
    overlap: float = 0.5,
    mode: Literal["gaussian", "constant"] = "gaussian",
    sigma_scale: float = 0.125,
    tta_flips: bool | Sequence[Sequence[int]] = False,
    activation: Activation = "softmax",
    batch_size: int = 1,
    device: torch.device | str | None = None,
    accumulator_dtype: torch.dtype = torch.float32,
    output: OutputKind = "probabilities",
    threshold: float = 0.5,
    pad_value: float = 0.0,
) -> torch.Tensor:
    """Predict a whole image with overlapping windows, blending with a Gaussian, in little memory.

    Args:
        model: a segmentation network; switched to eval mode for the call (its mode is restored).
        image: ``(C, *spatial)`` or ``(B, C, *spatial)``; any size (smaller than the patch is padded
            with ``pad_value``, centred, then cropped back, as MONAI does). Non-float inputs are
            cast to float32 one window at a time.
        patch_size: window size, one entry per spatial axis.
        out_channels: expected output channels (checked; inferred from the first window if None).
        overlap: fraction of overlap between neighbouring windows, in [0, 1).
        mode: ``"gaussian"`` (nnU-Net / MONAI importance map) or ``"constant"`` blending.
        sigma_scale: Gaussian sigma as a fraction of the patch size.
        tta_flips: False; True for every combination of flipped spatial axes (2**dims passes);
            or a list of spatial-axis tuples, e.g. ``[(0,), (1,), (0, 1)]``. Logits are averaged.
        activation: applied after blending: ``"softmax"`` over channels, ``"sigmoid"``, or None.
        batch_size: windows per forward pass.
        device: where the network runs and the slab buffers live (default: the model's device).
            The result lives on the image's device.
        accumulator_dtype: dtype of the blending buffer, and of returned probabilities;
            float16 halves their memory at a small precision cost.
        output: ``"probabilities"`` (activation of the blended logits, ``(C, *spatial)``) or
            ``"labels"``: argmax as ``(1, *spatial)`` uint8 for softmax/None, or per-channel
            ``sigmoid > threshold`` as ``(C, *spatial)`` uint8 (multi-label) for sigmoid.
        threshold: sigmoid threshold for ``output="labels"``.
        pad_value: constant used to pad inputs smaller than the patch.

    Returns:
        The prediction, with a leading batch axis when ``image`` had one.

    Example:
        >>> probs = sliding_window_predict(net, ct, patch_size=(96, 96, 96), out_channels=3)
    """
    _check_args(image, patch_size, overlap, mode, activation, output, batch_size, accumulator_dtype)
    if image.ndim == len(patch_size) + 2:
        return torch.stack(
            [
                sliding_window_predict(
                    model,
                    item,
                    patch_size=patch_size,
                    out_channels=out_channels,
                    overlap=overlap,
                    mode=mode,
                    sigma_scale=sigma_scale,
                    tta_flips=tta_flips,
                    activation=activation,
                    batch_size=batch_size,
                    device=device,
                    accumulator_dtype=accumulator_dtype,
                    output=output,
                    threshold=threshold,
                    pad_value=pad_value,
                )
                for item in image
            ]
        )
    if hasattr(image, "as_tensor"):  # MONAI MetaTensor: drop metadata, it costs per window
        image = image.as_tensor()
    spatial_dims = len(patch_size)
    run_device = torch.device(device) if device is not None else _model_device(model)
    plan = _plan(image.shape[1:], patch_size, overlap)
    if any(plan.pad):
        image = torch.nn.functional.pad(image, plan.pad, mode="constant", value=pad_value)
    weight = torch.from_numpy(importance_map(plan.roi, mode, sigma_scale)).to(run_device)[None]
    flips = _flip_sets(tta_flips, spatial_dims)
    spatial = tuple(c.stop - c.start for c in plan.crop)

    def make_sink(channels: int) -> _Sink:
        return _Sink(channels, spatial, activation, output, threshold, accumulator_dtype, image.device)

    with torch.inference_mode(), _eval_mode(model):
        return _sliding_window_one(
            lambda x: _predict_batch(model, x, flips, spatial_dims),
            image,
            plan,
            weight,
            out_channels=out_channels,
            batch_size=batch_size,
            device=run_device,
            acc_dtype=accumulator_dtype,
            make_sink=make_sink,
        )
