"""Convert any supported layout into an MSD / nnU-Net v2 folder.

3D data is written as NIfTI, one file per channel. 2D pictures stay pictures: PNG with
``file_ending ".png"``, a colour picture kept as one RGB file with channel_names R, G, B (as
nnU-Net's natural-image datasets do), other channels one PNG each. Labels are written with the
consecutive class values of the spec (``label_map`` applied), region-of-interest masks go to
``roisTr``/``roisTs`` (a medsight addition nnU-Net ignores) and patient ids to dataset.json.

Example::

    convert_to_msd("drive", "data/Dataset001_DRIVE")
    convert_to_msd("../shared/data/drive", "data/Dataset001_DRIVE")   # the folder, by its structure
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from medsight.data.loader import load_dataset
from medsight.data.msd import dataset_json, write_dataset_json
from medsight.data.phantoms import ensure_empty_dest
from medsight.data.reading import read_case_image, read_label, read_roi
from medsight.data.spec import Case, DatasetSpec
from medsight.data.validate import default_workers
from medsight.errors import DataError
from medsight.io import Image, write_image
from medsight.utils import atomic_folder

_PICTURES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp")


def _safe_id(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", case_id)


def _is_picture(path: Path) -> bool:
    return path.name.lower().endswith(_PICTURES)


def _png_ok(image: Image) -> bool:
    return image.array.dtype == np.uint8 or (image.array.dtype == np.uint16 and image.channels == 1)


def _layout(spec: DatasetSpec) -> tuple[str, bool]:
    """(file ending, whether each case's channels go into one RGB picture)."""
    first = read_case_image(spec.train[0] if spec.train else spec.test[0])
    pictures = all(_is_picture(p) for c in spec.cases for p in c.images)
    if first.ndim == 2 and pictures and _png_ok(first):
        names = [spec.channel_names[k].upper() for k in sorted(spec.channel_names)]
        return ".png", names == ["R", "G", "B"]
    return ".nii.gz", False


def _write_case(spec: DatasetSpec, case: Case, split: str, out: Path, ending: str, rgb: bool) -> None:
    cid = _safe_id(case.case_id)
    image = read_case_image(case)
    if ending == ".png" and not _png_ok(image):
        raise DataError(f"{case.case_id} image: dtype {image.array.dtype} cannot be stored exactly as PNG")
    if image.channels != spec.num_channels:
        raise DataError(f"{case.case_id} image: {image.channels} channel(s), expected {spec.num_channels}")
    if rgb:
        write_image(image, out / f"images{split}" / f"{cid}_0000{ending}")
    else:
        for c in range(image.channels):
            write_image(
                image.with_array(image.array[c : c + 1]), out / f"images{split}" / f"{cid}_{c:04d}{ending}"
            )
    label = read_label(spec, case)
    if label is not None:
        write_image(label.with_array(label.array.astype(np.uint8)), out / f"labels{split}" / f"{cid}{ending}")
    roi = read_roi(case)
    if roi is not None:
        write_image(roi.with_array(roi.array.astype(np.uint8)), out / f"rois{split}" / f"{cid}{ending}")


def convert_to_msd(
    source: str | Path | DatasetSpec,
    dest: str | Path,
    *,
    data_root: str | Path | None = None,
    max_workers: int | None = None,
) -> Path:
    """Write the dataset ``source`` (anything :func:`load_dataset` accepts) as an MSD / nnU-Net v2 folder.

    ``source`` may be a registered name (``"drive"``) or a folder in that dataset's own layout
    (``"../shared/data/drive"``), recognised by its structure.

    The folder is assembled beside ``dest`` and renamed into place at the end, so an interrupted
    conversion leaves nothing half-written.

    Raises:
        DataError: ``dest`` exists and is not empty, case ids collide after sanitising, or a case
            is unreadable or inconsistent (the message names it).
    """
    spec = load_dataset(source, data_root=data_root)
    dest = Path(dest)
    ensure_empty_dest(dest)
    ids = [_safe_id(c.case_id) for c in spec.cases]
    if len(set(ids)) != len(ids):
        raise DataError(f"dataset {spec.name!r}: case ids are not unique once made file-safe")
    if max(spec.labels.values()) > 255:
        raise DataError(f"dataset {spec.name!r}: {len(spec.labels)} classes do not fit the uint8 label files")
    ending, rgb = _layout(spec)
    with atomic_folder(dest) as tmp:
        jobs = [(c, "Tr") for c in spec.train] + [(c, "Ts") for c in spec.test]
        with ThreadPoolExecutor(max_workers=max_workers or default_workers()) as pool:
            list(pool.map(lambda job: _write_case(spec, job[0], job[1], tmp, ending, rgb), jobs))
        meta = dataset_json(spec, ending, {"source_dataset": spec.name})
        if "patients" in meta:
            meta["patients"] = {_safe_id(c.case_id): c.patient_id for c in spec.cases if c.patient_id}
        write_dataset_json(tmp, meta)
    return dest
