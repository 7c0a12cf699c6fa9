"""One entry point from any accepted layout to a :class:`DatasetSpec`."""

from __future__ import annotations

from pathlib import Path

from medsight.data.adapters import DATASETS, DatasetAdapter
from medsight.data.manifest import load_manifest
from medsight.data.msd import is_msd_folder, load_msd
from medsight.data.spec import DatasetSpec
from medsight.errors import DataError, did_you_mean
from medsight.utils import shared_data_root

ACCEPTED_LAYOUTS = (
    "an MSD / nnU-Net v2 folder (dataset.json, imagesTr/, labelsTr/), "
    "a CSV manifest (.csv with image or image_0000.. columns, label, patient_id, split, roi), "
    "a registered dataset name ({names}), "
    "or a folder in one of their layouts ({layouts})"
)


def label_map_adapters() -> list[DatasetAdapter]:
    """The registered datasets whose cases carry label maps (what :func:`load_dataset` reads)."""
    return [a for a in (DATASETS.get(n) for n in DATASETS.names()) if a.targets == "label maps"]


def accepted_layouts() -> str:
    """A sentence listing what :func:`load_dataset` accepts."""
    adapters = label_map_adapters()
    return ACCEPTED_LAYOUTS.format(
        names=", ".join(a.name for a in adapters),
        layouts="; ".join(a.describe_layout() for a in adapters if a.layout),
    )


def matching_adapters(folder: str | Path) -> list[DatasetAdapter]:
    """The registered adapters whose folder structure ``folder`` has, in registry order."""
    return [a for a in label_map_adapters() if a.matches(folder)]


def _load_folder(path: Path) -> DatasetSpec:
    """An MSD / nnU-Net folder (dataset.json or imagesTr/ first), else a known dataset layout."""
    if is_msd_folder(path):
        return load_msd(path)
    found = matching_adapters(path)
    if not found:
        raise DataError(
            f"{path}: folder has no dataset.json or imagesTr/ and matches no known dataset layout; "
            f"accepted: {accepted_layouts()}"
        )
    return found[0].build(path)


def load_dataset(source: str | Path | DatasetSpec, *, data_root: str | Path | None = None) -> DatasetSpec:
    """Load a dataset from a folder, a CSV manifest or a registered name.

    A folder is read as MSD / nnU-Net v2 when it holds dataset.json or imagesTr/, else by the first
    registered adapter whose folder structure it has (``DatasetAdapter.matches``), whatever its name:
    ``load_dataset("../shared/data/drive")`` is the same dataset as ``load_dataset("drive")``.

    Args:
        source: a folder (MSD / nnU-Net v2, or a registered dataset's own layout), a ``.csv``
            manifest, a registered name such as ``"drive"`` (see ``medsight list datasets``), or an
            already loaded spec (returned as is).
        data_root: the real-data folder for registered names (default: ``$MEDSIGHT_DATA`` or
            ``../shared/data`` from the repository root).

    Example::

        spec = load_dataset("isic2018")
        spec = load_dataset("Dataset001_Phantom/")
        spec = load_dataset("../shared/data/isbi2012-em")   # recognised by its structure

    Raises:
        DataError: the source is none of the accepted layouts, or its content is malformed.
    """
    if isinstance(source, DatasetSpec):
        return source
    path = Path(source)
    if path.is_dir():
        return _load_folder(path)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return load_manifest(path)
        raise DataError(f"{path}: not a dataset; accepted: {accepted_layouts()}")
    name = str(source)
    if name in DATASETS and DATASETS.get(name).targets != "label maps":
        raise DataError(
            f"dataset {name!r} holds {DATASETS.get(name).targets}, not label maps; "
            "train it with a task family that reads them (medsight list datasets)"
        )
    if name in DATASETS:
        root = shared_data_root(data_root)
        if root is None:
            raise DataError(
                f"dataset {name!r}: real-data folder not found (give data_root / --data-root, "
                "set MEDSIGHT_DATA, "
                "or place it at ../shared/data beside the repository)"
            )
        return DATASETS.get(name).load(root)
    hint = did_you_mean(name.lower(), [a.name for a in label_map_adapters()])
    raise DataError(
        f"{name!r} is not an existing path or a registered dataset{hint}; accepted: {accepted_layouts()}"
    )
