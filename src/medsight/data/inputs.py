"""What ``predict`` reads: the cases under an input path, for every task and every backend.

A segmenter's cases are channel files grouped by case id (:func:`group_inputs`), a classifier's are
samples from a folder, a file or a CSV manifest (:func:`input_samples`). Torch-free: the PyTorch
predictors and the torch-free runtimes (``medsight.tasks.<name>.runtime``) find the same cases, and
the outputs they write keep the input's format (:func:`output_suffix`).

Example::

    groups = group_inputs(Path("imagesTs"), in_channels=4)   # {"BRATS_001": [..._0000.nii.gz, ...]}
    image = stack_channels([read_image(p) for p in groups["BRATS_001"]])
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from medsight.data.spec import Case
from medsight.errors import DataError
from medsight.io import Image
from medsight.io.readers import detect_format, is_image_file, split_suffix

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")


def group_inputs(folder: Path, in_channels: int) -> dict[str, list[Path]]:
    """Case id -> channel files under ``folder``: ``CASE_0000.ext``, ``CASE_0001.ext`` ... for
    multi-channel inputs (nnU-Net naming), one file per case otherwise; a DICOM series folder is one
    case. A file or folder given directly is one case.

    Raises:
        DataError: ``folder`` missing, holding no readable image, or a case with the wrong number of
            channel files.
    """
    if folder.is_file() or (folder.is_dir() and is_dicom_folder(folder)):
        return {split_suffix(folder)[0]: [folder]}
    if not folder.is_dir():
        raise DataError(f"{folder}: input not found")
    groups: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or (p.is_file() and not _readable(p)):
            continue
        groups.setdefault(_case_id(p, in_channels), []).append(p)
    if not groups:
        raise DataError(f"{folder}: no readable image found")
    for case, files in groups.items():
        if len(files) > 1 and len(files) != in_channels:
            raise DataError(
                f"{folder}: case {case!r} has {len(files)} channel files, the model expects {in_channels}"
            )
    return groups


def _case_id(path: Path, in_channels: int) -> str:
    """``CASE`` of ``CASE_0001.ext`` for multi-channel models (and of ``CASE_0000.ext`` always)."""
    stem = split_suffix(path)[0]
    match = _CHANNEL.match(stem)
    if match and (in_channels > 1 or match.group("ch") == "0000"):
        return match.group("case")
    return stem


def _readable(path: Path) -> bool:
    try:
        detect_format(path)
    except DataError:
        return False
    return True


def is_dicom_folder(folder: Path) -> bool:
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.lower().endswith(".zip")]
    return (
        bool(files)
        and all(detect_format(p) == "dicom" for p in files if _readable(p))
        and any(_readable(p) for p in files)
    )


def output_suffix(source: Path) -> str:
    """The suffix of an image output for ``source``: the input's format; DICOM and lossy JPEG inputs
    give NIfTI / PNG."""
    suffix = split_suffix(source)[1].lower()
    if source.is_dir() or detect_format(source) == "dicom":
        return ".nii.gz"
    if suffix in (".jpg", ".jpeg", ".gif", ".bmp"):
        return ".png"
    return suffix or ".nii.gz"


def stack_channels(images: list[Image]) -> Image:
    """One image per channel file -> one multi-channel image with the first file's geometry."""
    if len(images) == 1:
        return images[0]
    first = images[0]
    stacked = np.concatenate([im.array.astype(np.float32) for im in images], axis=0)
    return Image(stacked, first.spacing, first.origin, first.direction, first.meta)


def input_samples(source: Path) -> list[Case]:
    """The samples under ``source`` (labels unknown: -1): one image file, a folder of images
    (searched recursively, sorted), or a CSV manifest (``image`` or ``image_0000``, ``image_0001`` ...
    columns, paths relative to it).

    Raises:
        DataError: ``source`` missing, or a folder without image files.
    """
    if source.is_file() and source.suffix.lower() == ".csv":
        from medsight.data.manifest import image_columns, read_rows

        header, rows = read_rows(source)
        cols = image_columns(header, str(source))
        return [Case(r[cols[0]], tuple(source.parent / r[c] for c in cols), classes=-1) for r in rows]
    if source.is_file():
        return [Case(str(source), (source,), classes=-1)]
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if is_image_file(p))
        if not files:
            raise DataError(
                f"{source}: no image files found (looked for PNG, JPG, TIF, NIfTI, NRRD, MHA ...)"
            )
        return [Case(str(p), (p,), classes=-1) for p in files]
    raise DataError(f"{source}: input not found (expected an image, a folder of images or a CSV manifest)")
