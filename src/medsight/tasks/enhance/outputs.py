"""What enhancement ``predict`` reads and writes, for every backend: degraded images (any format medsight
reads) or raw k-space (``.npy`` complex, fastMRI-style ``.h5`` with ``kspace`` and optionally ``mask``)
in; enhanced images out, in the input's geometry and format (k-space in: ``.npy`` magnitude, or ``.h5``
with a ``reconstruction`` array, slices first).

Super-resolution runs take the low-resolution image and write it on the finer grid (spacing divided by
the factor in-plane, the origin moved to the new first pixel centre).

Torch-free: the PyTorch predictor and the ONNX runtime call :func:`enhance_path` with their own network
function, so both write the same files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import DataError
from medsight.io.batch import ShardLike, resolve_shard
from medsight.tasks.enhance.data import KSPACE_SUFFIXES, image_stack, read_kspace
from medsight.tasks.enhance.slices import Network, enhance_stack, infer_mask
from medsight.utils import atomic_write

log = logging.getLogger(__name__)


def input_files(source: Path) -> list[Path]:
    """The inputs under ``source``: a file, a DICOM series folder, or a folder's images, k-space files
    and DICOM series folders (not recursive), sorted."""
    from medsight.data.inputs import group_inputs

    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(f"{source}: input not found")
    found = [p for p in sorted(source.iterdir()) if p.is_file() and p.suffix.lower() in (".h5", ".hdf5")]
    try:
        found += [files[0] for files in group_inputs(source, 1).values()]
    except DataError:
        if not found:
            raise
    return sorted(set(found))


def output_name(source: Path) -> str:
    from medsight.data.inputs import output_suffix
    from medsight.io.readers import split_suffix

    stem, suffix = split_suffix(source)
    if suffix.lower() in KSPACE_SUFFIXES:
        return stem + suffix.lower()
    return stem + output_suffix(source)


def enhance_path(
    input: Path,
    output: Path,
    plan: Any,
    make_network: Callable[[], Network],
    *,
    overwrite: bool = False,
    shard: ShardLike = None,
) -> list[Path]:
    """Enhance every input under ``input``; write ``output/<name>`` (``output`` itself when it has a
    suffix and there is one input). Resumable: existing outputs are skipped unless ``overwrite``; each is
    written atomically; an output that would replace an input is an error.

    Raises:
        DataError: no input, an unreadable or unsuitable one (complex where magnitude is expected, NaN,
            a k-space file without ``kspace``), or an output path that is one of the inputs.
    """
    files = input_files(input)
    from medsight.io.readers import split_suffix

    single = len(files) == 1 and split_suffix(output)[1] != "" and not output.is_dir()
    targets = {str(f): (output if single else output / output_name(f)) for f in files}
    sources = {f.resolve() for f in files}
    part = resolve_shard(shard)
    written, network = [], None
    for key in part.select(targets):
        source, target = Path(key), targets[key]
        if target.resolve() in sources:
            raise DataError(f"{target}: the output would overwrite an input; choose another --output")
        written.append(target)
        if target.exists() and not overwrite:
            continue
        network = network or make_network()
        enhance_file(source, target, plan, network)
    log.info("shard %s: %d of %d inputs", part, len(written), len(files))
    return written


def enhance_file(source: Path, target: Path, plan: Any, network: Network) -> Path:
    """Enhance one file (image or k-space) into ``target``."""
    suffix = source.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        kspace, mask = read_kspace(source)
        return _write_h5(target, _kspace_stack(network, plan, kspace, mask), source)
    if suffix == ".npy":
        arr = np.load(source, allow_pickle=False)
        if np.iscomplexobj(arr):
            kspace, mask = read_kspace(source)
            out = _kspace_stack(network, plan, kspace, mask)
            return _write_npy(target, out[0] if arr.ndim == 2 else out)
    from medsight.io import read_image, write_image

    image = read_image(source)
    stack = image_stack(image.array, source)
    if plan.kind == "sr":
        stack, image = _upsampled(stack, image, plan)
    out = enhance_stack(network, plan, stack)
    array = out[0] if image.ndim == 2 else np.moveaxis(out, 0, -1)
    return write_image(image.with_array(_like_dtype(array, image.array.dtype)[None]), target)


def _kspace_stack(network: Network, plan: Any, kspace: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    mask = infer_mask(kspace) if mask is None else mask
    if plan.kspace_input:
        from medsight.data.degradations import ifft2c

        zf = np.abs(ifft2c(np.where(mask, kspace, 0))).astype(np.float32)
        return enhance_stack(network, plan, zf, kspace, mask)
    from medsight.data.degradations import zero_filled

    return enhance_stack(network, plan, zero_filled(np.where(mask, kspace, 0)).astype(np.float32))


def _upsampled(stack: np.ndarray, image: Any, plan: Any) -> tuple[np.ndarray, Any]:
    """A super-resolution input interpolated to the fine grid, and its image with that geometry."""
    from medsight.data.degradations import upsample_baseline

    factor = int(plan.degradation_settings["factor"])
    order = int(plan.degradation_settings.get("order", 3))
    up = upsample_baseline(stack.astype(np.float64), factor, order).astype(np.float32)
    spacing = np.array(image.spacing, dtype=np.float64)
    plane = [0, 1]  # the in-plane axes of a 2D image and of the slices of a volume (its last axis is sliced)
    shift = np.zeros(image.ndim)
    for a in plane:
        shift[a] = (1.0 / factor - 1.0) / 2.0 * spacing[a]
        spacing[a] /= factor
    origin = np.array(image.origin) + image.direction @ shift
    shape = (image.channels, *(n * factor if a in plane else n for a, n in enumerate(image.shape)))
    fine = replace(image, array=np.zeros(shape, np.float32), spacing=tuple(spacing), origin=tuple(origin))
    return up, fine


def _like_dtype(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Integer inputs give integer outputs (rounded, clipped to the type); others float32."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(array), info.min, info.max).astype(dtype)
    return array.astype(np.float32)


def _write_npy(target: Path, array: np.ndarray) -> Path:
    return atomic_write(target, lambda tmp: _save_npy(tmp, array))


def _save_npy(tmp: Path, array: np.ndarray) -> None:
    with open(tmp, "wb") as fh:
        np.save(fh, array.astype(np.float32))


def _write_h5(target: Path, recon: np.ndarray, source: Path) -> Path:
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("reconstruction", data=recon.astype(np.float32))
            f.attrs["source"] = source.name

    return atomic_write(target, write)
