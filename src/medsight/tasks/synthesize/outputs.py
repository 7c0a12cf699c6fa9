"""What synthesis ``predict`` writes, for every backend: one output image per input, at the input's
path below the input folder, in its format and geometry (spacing, origin, direction), and
``outputs.csv`` (``input, output``).

* a VAE: the reconstruction of each input, in the input's intensity units (the plan's normalisation
  undone; 8-bit PNG stays 8-bit);
* pix2pix, CycleGAN: the translation of each source image (a 2D slice, or a 3D volume slice by slice along the
  last axis), scaled like the training targets: [0, 1] of the subject's brain 99.5th percentile;
* an unconditional or class-conditional GAN has no input to map: ``medsight generate`` makes its pictures.

Torch-free: the PyTorch predictor and the ONNX runtime call :func:`synthesis_path` with their own network
(a function of ``(N, C, *input_size)`` float32 batches), so both write the same files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.inputs import input_samples, stack_channels
from medsight.errors import ConfigError, DataError
from medsight.io import Image, read_image, write_image
from medsight.planning.plan import ChannelNorm

Network = Callable[[np.ndarray], np.ndarray]
BATCH = 32


def picture(image: np.ndarray, plan: Any) -> np.ndarray:
    """Raw ``(C, *spatial)`` intensities -> the plan's normalised ``(C, *input_size)`` in [0, 1]."""
    from medsight.transforms.segmentation import normalize, resize

    if image.shape[0] != len(plan.normalization) or image.ndim - 1 != plan.dim:
        raise DataError(
            f"image of shape {tuple(image.shape)} (channels first): the model expects "
            f"{len(plan.normalization)} channel(s) of a {plan.dim}D image"
        )
    out = resize(normalize(image, plan.normalization), tuple(plan.input_size))
    return np.clip(np.ascontiguousarray(out, dtype=np.float32), 0.0, 1.0)


def to_raw(pictures: np.ndarray, norms: list[ChannelNorm]) -> np.ndarray:
    """Undo the plan's [0, 1] normalisation of ``(N, C, ...)`` pictures: back to the data's units."""
    out = np.empty(pictures.shape, np.float32)
    for c, norm in enumerate(norms):
        x = pictures[:, c]
        if norm.scheme == "rgb":
            out[:, c] = np.round(np.clip((x * norm.std + norm.mean) * 255.0, 0, 255))
        else:
            out[:, c] = x * norm.std + norm.mean
    return out


def brain_scaled(array: np.ndarray) -> np.ndarray:
    """A source image scaled as the training data was: by its non-zero voxels' 99.5th percentile to [0, 1]."""
    brain = array > 0
    scale = float(np.percentile(array[brain], 99.5)) if brain.any() else 1.0
    return np.clip(array / max(scale, 1e-6), 0, 1).astype(np.float32)


def _run(network: Network, x: np.ndarray) -> np.ndarray:
    return np.concatenate([network(np.ascontiguousarray(x[i : i + BATCH])) for i in range(0, len(x), BATCH)])


def translate(image: Image, plan: Any, network: Network) -> Image:
    """A source image (2D, or 3D slice by slice) translated into the target contrast, same geometry."""
    from medsight.transforms.segmentation import resize

    if image.channels != 1:
        raise DataError(
            f"translation takes one source contrast ({plan.source}) per file, got {image.channels}"
        )
    arr = brain_scaled(image.array[0].astype(np.float32))
    slices = arr[..., None] if arr.ndim == 2 else arr
    grid = slices.shape[:2]
    x = np.stack([resize(slices[None, ..., z], tuple(plan.input_size)) for z in range(slices.shape[-1])])
    y = _run(network, np.clip(x, 0, 1).astype(np.float32))[:, 0]
    out = np.stack([np.asarray(resize(y[z][None], grid))[0] for z in range(len(y))], axis=-1)
    out = np.where(slices > 0, np.clip(out, 0, 1), 0.0).astype(np.float32)
    return Image(
        out[..., 0][None] if arr.ndim == 2 else out[None], image.spacing, image.origin, image.direction.copy()
    )


def reconstruct(image: Image, plan: Any, network: Network) -> Image:
    """A picture reconstructed by the VAE, on the input's grid and in its intensity units."""
    from medsight.transforms.segmentation import resize

    y = network(picture(image.array.astype(np.float32), plan)[None])
    raw = to_raw(np.clip(y, 0, 1), plan.normalization)[0]
    out = np.asarray(resize(raw, tuple(image.shape)), dtype=np.float32)
    if plan.normalization[0].scheme == "rgb":
        out = np.round(np.clip(out, 0, 255)).astype(np.uint8)
    return Image(out, image.spacing, image.origin, image.direction.copy())


def _relative(path: Path, source: Path) -> Path:
    """An input's path below ``source`` (its name for a single file): outputs mirror the input tree."""
    try:
        return path.resolve().relative_to(source.resolve()) if source.is_dir() else Path(path.name)
    except ValueError:  # a CSV manifest's file outside its folder
        return Path(path.name)


def synthesis_path(
    source: Path, output: Path, plan: Any, make_network: Callable[[], Network], *, overwrite: bool = False
) -> list[Path]:
    """Map every input under ``source`` (a file, a folder of images, a CSV manifest) into ``output``;
    return the files written (``outputs.csv`` first). Existing outputs are kept unless ``overwrite``."""
    if plan.model != "vae" and plan.kind != "paired":
        raise ConfigError(
            f"predict: a plan.model={plan.model} run maps no input to an output; make pictures with "
            "`medsight generate --run RUN --n 100 --output DIR`"
        )
    samples = input_samples(source)
    targets = [output / _relative(Path(s.images[0]), source) for s in samples]
    clash = [t for t in targets if t.exists()]
    if clash and not overwrite:
        raise DataError(f"{clash[0]}: exists; pass --overwrite to replace the outputs")
    network = make_network()
    output.mkdir(parents=True, exist_ok=True)
    step = translate if plan.kind == "paired" else reconstruct
    rows = []
    for s, target in zip(samples, targets, strict=True):
        image = stack_channels([read_image(p) for p in s.images])
        write_image(step(image, plan, network), target)
        rows.append([";".join(str(p) for p in s.images), str(target.relative_to(output))])
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["input", "output"])
    writer.writerows(rows)
    from medsight.utils import atomic_write_text

    table = atomic_write_text(output / "outputs.csv", buf.getvalue())
    return [table, *targets]
