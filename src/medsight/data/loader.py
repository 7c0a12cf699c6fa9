"""One entry point from any accepted layout to a :class:`DatasetSpec`."""

from __future__ import annotations

from pathlib import Path

from medsight.data.adapters import DATASETS
from medsight.data.manifest import load_manifest
from medsight.data.msd import is_msd_folder, load_msd
from medsight.data.spec import DatasetSpec
from medsight.errors import DataError, did_you_mean
from medsight.utils import shared_data_root

ACCEPTED_LAYOUTS = (
    "an MSD / nnU-Net v2 folder (dataset.json, imagesTr/, labelsTr/), "
    "a CSV manifest (.csv with image or image_0000.. columns, label, patient_id, split, roi), "
    "or a registered dataset name ({names})"
)


def accepted_layouts() -> str:
    """A sentence listing what :func:`load_dataset` accepts."""
    return ACCEPTED_LAYOUTS.format(names=", ".join(DATASETS.names()))


def load_dataset(source: str | Path | DatasetSpec, *, data_root: str | Path | None = None) -> DatasetSpec:
    """Load a dataset from a folder, a CSV manifest or a registered name.

    Args:
        source: an MSD / nnU-Net v2 folder, a ``.csv`` manifest, a registered name such as
            ``"drive"`` (see ``medsight list datasets``), or an already loaded spec (returned as is).
        data_root: the real-data folder for registered names (default: ``$MEDSIGHT_DATA`` or
            ``../shared/data`` from the repository root).

    Example::

        spec = load_dataset("isic2018")
        spec = load_dataset("Dataset001_Phantom/")

    Raises:
        DataError: the source is none of the accepted layouts, or its content is malformed.
    """
    if isinstance(source, DatasetSpec):
        return source
    path = Path(source)
    if path.is_dir():
        if is_msd_folder(path):
            return load_msd(path)
        raise DataError(f"{path}: folder has no dataset.json or imagesTr/; accepted: {accepted_layouts()}")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return load_manifest(path)
        raise DataError(f"{path}: not a dataset; accepted: {accepted_layouts()}")
    name = str(source)
    if name in DATASETS:
        root = shared_data_root(data_root)
        if root is None:
            raise DataError(
                f"dataset {name!r}: real-data folder not found (give data_root / --data-root, "
                "set MEDSIGHT_DATA, "
                "or place it at ../shared/data beside the repository)"
            )
        return DATASETS.get(name).load(root)
    hint = did_you_mean(name.lower(), DATASETS.names())
    raise DataError(
        f"{name!r} is not an existing path or a registered dataset{hint}; accepted: {accepted_layouts()}"
    )
