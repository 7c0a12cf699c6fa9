"""``medsight degrade``: degraded test data from clean images, seeded and logged.

Every input (an image file, a DICOM series, or a folder of them) is sliced like training data (a volume
along its last axis) and degraded slice by slice with a generator seeded by ``seed`` and the input's
name, so the same call writes the same files. What is written:

- ``kspace``: ``.npy`` output: the acquired (masked) complex k-space, (H, W) or (slices, H, W);
  ``.h5``: ``kspace`` and ``mask`` (fastMRI's layout); an image suffix: the zero-filled magnitude;
- ``lowdose-ct``, ``rician``, ``gaussian``: the degraded image in the input's geometry and format;
- ``sr``: the low-resolution image (in-plane spacing times the factor).

A ``<output>.degradation.json`` (for a folder: ``degradation.json`` inside it) records the exact
settings, the seed and the files.

Example::

    from medsight.tasks.enhance import degrade
    degrade("brain.nii.gz", "brain-4x.npy", "kspace:4x", seed=0)
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import ConfigError, DataError
from medsight.utils import atomic_write, atomic_write_text

log = logging.getLogger(__name__)
KSPACE_OUT = (".npy", ".h5", ".hdf5")


def degrade(
    input: str | Path, output: str | Path, degradation: str, *, seed: int = 0, overwrite: bool = False
) -> list[Path]:
    """Degrade every image under ``input`` into ``output`` (a file for one input, else a folder).

    Raises:
        ConfigError: the degradation does not parse (the message lists the accepted forms).
        DataError: an unreadable input, complex or NaN data, an output that would overwrite an input.
    """
    from medsight.data.degradations import parse_degradation
    from medsight.io.readers import split_suffix
    from medsight.tasks.enhance.outputs import input_files

    deg = parse_degradation(degradation)
    source, out = Path(input), Path(output)
    files = input_files(source)
    single = len(files) == 1 and split_suffix(out)[1] != "" and not out.is_dir()
    inputs = {f.resolve() for f in files}
    written = []
    for f in files:
        target = out if single else out / _name(f, deg.kind)
        if target.resolve() in inputs:
            raise DataError(f"{target}: the output would overwrite an input; choose another --output")
        if target.exists() and not overwrite:
            raise DataError(f"{target}: exists; pass --overwrite to replace it")
        try:
            written.append(_degrade_file(f, target, deg, seed))
        except DataError as exc:
            raise DataError(f"{f}: {exc}") from exc
    record = {
        "degradation": deg.to_dict(),
        "seed": seed,
        "date": datetime.now().isoformat(timespec="seconds"),
        "files": {str(f): str(t) for f, t in zip(files, written, strict=True)},
    }
    log_path = out.with_name(out.name + ".degradation.json") if single else out / "degradation.json"
    atomic_write_text(log_path, json.dumps(record, indent=2, default=str))
    log.info("degraded %d input(s) with %s, seed %d: %s", len(files), deg.spec, seed, log_path)
    return written


def _name(source: Path, kind: str) -> str:
    from medsight.tasks.enhance.outputs import output_name

    name = output_name(source)
    if kind == "kspace":
        from medsight.io.readers import split_suffix

        return split_suffix(Path(name))[0] + ".npy"
    return name


def _degrade_file(source: Path, target: Path, deg: Any, seed: int) -> Path:
    from medsight.io import read_image, write_image
    from medsight.tasks.enhance.data import case_seed, image_stack, pixel_size

    image = read_image(source)
    stack = image_stack(image.array, source)
    deg = deg.at_pixel_size(pixel_size(image.spacing))
    rng = np.random.default_rng(case_seed(seed, source.name))
    results = [deg.apply(s, rng) for s in stack]
    suffix = target.suffix.lower()
    if deg.kind == "kspace" and suffix in KSPACE_OUT:
        kspace = np.stack([r.kspace for r in results]).astype(np.complex64)
        kspace = kspace[0] if image.ndim == 2 else kspace
        return _write_kspace(target, kspace, results[0].mask)
    if deg.kind == "sr":
        low = np.stack([r.low_res for r in results])
        image = _coarse(image, deg.factor, low.shape[1:])
        arrays = low
    else:
        arrays = np.stack([r.image for r in results])
    array = arrays[0] if image.ndim == 2 else np.moveaxis(arrays, 0, -1)
    from medsight.tasks.enhance.outputs import _like_dtype

    return write_image(image.with_array(_like_dtype(array, image.array.dtype)[None]), target)


def _coarse(image: Any, factor: int, plane: tuple[int, ...]) -> Any:
    """``image``'s geometry on the grid downsampled by ``factor`` in-plane (axes 0 and 1)."""
    if getattr(image, "ndim", 2) not in (2, 3):
        raise ConfigError("sr: expected a 2D image or a volume")
    spacing = np.array(image.spacing, dtype=np.float64)
    shift = np.zeros(image.ndim)
    for a in (0, 1):
        shift[a] = (factor - 1) / 2.0 * spacing[a]
        spacing[a] *= factor
    origin = np.array(image.origin) + image.direction @ shift
    shape = (image.channels, *plane, *image.shape[2:])
    return replace(image, array=np.zeros(shape, np.float32), spacing=tuple(spacing), origin=tuple(origin))


def _write_kspace(target: Path, kspace: np.ndarray, mask: np.ndarray) -> Path:
    if target.suffix.lower() == ".npy":

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, kspace)

        return atomic_write(target, save)
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("kspace", data=kspace)
            f.create_dataset("mask", data=mask.astype(np.uint8))

    return atomic_write(target, write)
