"""Medical Segmentation Decathlon / nnU-Net v2 folders: read into a :class:`DatasetSpec`, write dataset.json.

Accepted layout::

    Dataset/
      dataset.json     channel_names (or MSD v1 "modality"), labels, numTraining, file_ending
      imagesTr/        CASE_0000.nii.gz, CASE_0001.nii.gz, ... (one file per channel)
      labelsTr/        CASE.nii.gz
      imagesTs/        optional, same naming
      labelsTs/        optional (not part of nnU-Net, used by many datasets)

MSD v1 files (one 4D file per case, listed under "training"/"test") and nnU-Net v2's explicit
``"dataset"`` listing are read too. medsight adds optional keys nnU-Net ignores: ``regions``
(name -> values), ``patients`` (case -> patient id), ``label_note``, and ``roisTr``/``roisTs`` folders
holding region-of-interest masks named like the labels.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from medsight.data.labels import check_labels, make_consecutive, parse_labels
from medsight.data.spec import Case, DatasetSpec
from medsight.errors import DataError
from medsight.io.readers import split_suffix
from medsight.utils import atomic_write_text

_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")


def is_msd_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding dataset.json or imagesTr/."""
    return path.is_dir() and ((path / "dataset.json").is_file() or (path / "imagesTr").is_dir())


def read_dataset_json(root: Path) -> dict[str, Any]:
    """The parsed dataset.json of ``root`` (DataError when missing or not a JSON object)."""
    path = root / "dataset.json"
    if not path.is_file():
        raise DataError(f"{root}: dataset.json not found (an MSD / nnU-Net folder needs one)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot parse JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(meta).__name__}")
    return meta


def _channel_names(meta: dict[str, Any], where: str) -> dict[int, str]:
    raw = meta.get("channel_names", meta.get("modality"))
    if not isinstance(raw, dict) or not raw:
        raise DataError(
            f"{where}: 'channel_names' (or MSD v1 'modality') must be a non-empty mapping, found {raw!r}"
        )
    try:
        names = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: channel_names keys must be '0', '1', ..., found {list(raw)}") from exc
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{where}: channel_names keys must be 0..{len(names) - 1}, found {sorted(names)}")
    return dict(sorted(names.items()))


def _visible(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _file_ending(meta: dict[str, Any], root: Path) -> str:
    ending = meta.get("file_ending")
    if isinstance(ending, str) and ending:
        return ending if ending.startswith(".") else "." + ending
    for p in _visible(root / "imagesTr"):
        ending = split_suffix(p)[1]
        if ending:
            return ending
    raise DataError(f"{root}/dataset.json: 'file_ending' is missing and imagesTr/ holds no known image files")


def _scan_channels(folder: Path, ending: str) -> dict[str, set[int]]:
    """``CASE_XXXX<ending>`` files of ``folder``: case id -> channel indices found."""
    found: dict[str, set[int]] = {}
    for p in _visible(folder):
        if not p.name.endswith(ending):
            continue
        m = _CHANNEL_RE.match(p.name[: -len(ending)])
        if m is None:
            raise DataError(
                f"{p}: expected a name like CASE_0000{ending} (case id, underscore, 4-digit channel index)"
            )
        found.setdefault(m["case"], set()).add(int(m["ch"]))
    return found


def _files_per_case(found: dict[str, set[int]], n_channels: int, folder: Path) -> int:
    """Channel files per case: one per channel, or fewer when files hold several (an RGB picture)."""
    n_files = max((max(ch) + 1 for ch in found.values()), default=n_channels)
    if n_files > n_channels:
        case = next(c for c, ch in sorted(found.items()) if max(ch) + 1 == n_files)
        raise DataError(
            f"{folder / case}: {n_files} channel files exceed the {n_channels} channel(s) in channel_names"
        )
    return n_files


def _group(
    folder: Path, found: dict[str, set[int]], ending: str, n_files: int
) -> dict[str, tuple[Path, ...]]:
    """One expected path per channel file and case (missing files are kept, validation reports them)."""
    out = {}
    for case, chans in sorted(found.items()):
        if max(chans) >= n_files:
            raise DataError(
                f"{folder / case}: {max(chans) + 1} channel files, the training cases have {n_files}"
            )
        out[case] = tuple(folder / f"{case}_{c:04d}{ending}" for c in range(n_files))
    return out


def _resolve(root: Path, rel: str) -> Path:
    return (root / rel).resolve() if not Path(rel).is_absolute() else Path(rel)


def _optional(path: Path) -> Path | None:
    return path if path.is_file() else None


def _cases_v2(root: Path, ending: str, n_ch: int, patients: dict[str, str]) -> tuple[list[Case], list[Case]]:
    found_tr = _scan_channels(root / "imagesTr", ending)
    found_ts = _scan_channels(root / "imagesTs", ending)
    n_files = _files_per_case(found_tr, n_ch, root / "imagesTr")
    train = [
        Case(
            cid,
            imgs,
            label=root / "labelsTr" / f"{cid}{ending}",
            patient_id=patients.get(cid),
            roi=_optional(root / "roisTr" / f"{cid}{ending}"),
        )
        for cid, imgs in _group(root / "imagesTr", found_tr, ending, n_files).items()
    ]
    test = [
        Case(
            cid,
            imgs,
            label=_optional(root / "labelsTs" / f"{cid}{ending}"),
            patient_id=patients.get(cid),
            roi=_optional(root / "roisTs" / f"{cid}{ending}"),
        )
        for cid, imgs in _group(root / "imagesTs", found_ts, ending, n_files).items()
    ]
    return train, test


def _case_id(path: str, ending: str) -> str:
    name = Path(path).name
    return name[: -len(ending)] if name.endswith(ending) else name.split(".")[0]


def _cases_v1(
    root: Path, meta: dict[str, Any], ending: str, patients: dict[str, str]
) -> tuple[list[Case], list[Case]]:
    """MSD v1: "training": [{"image": ..., "label": ...}], "test": [path, ...]; one (4D) file per case."""
    train = []
    for i, entry in enumerate(meta.get("training") or []):
        if not isinstance(entry, dict) or "image" not in entry:
            raise DataError(
                f"{root}/dataset.json: training[{i}] must be {{'image': ..., 'label': ...}}, found {entry!r}"
            )
        cid = _case_id(entry["image"], ending)
        label = _resolve(root, entry["label"]) if entry.get("label") else None
        train.append(Case(cid, (_resolve(root, entry["image"]),), label=label, patient_id=patients.get(cid)))
    test = []
    for entry in meta.get("test") or []:
        rel = entry["image"] if isinstance(entry, dict) else entry
        cid = _case_id(rel, ending)
        label = _optional(root / "labelsTs" / f"{cid}{ending}")
        test.append(Case(cid, (_resolve(root, rel),), label=label, patient_id=patients.get(cid)))
    return train, test


def _cases_listed(
    root: Path, meta: dict[str, Any], patients: dict[str, str]
) -> tuple[list[Case], list[Case]]:
    """nnU-Net v2 explicit listing: "dataset": {case: {"images": [...], "label": ...}}."""
    train = []
    for cid, entry in sorted(meta["dataset"].items()):
        if not isinstance(entry, dict) or not entry.get("images"):
            raise DataError(
                f"{root}/dataset.json: dataset[{cid!r}] must hold 'images' and 'label', found {entry!r}"
            )
        images = tuple(_resolve(root, p) for p in entry["images"])
        label = _resolve(root, entry["label"]) if entry.get("label") else None
        train.append(Case(cid, images, label=label, patient_id=patients.get(cid)))
    return train, []


def _regions(raw: Any, where: str) -> dict[str, list[int]]:
    """medsight's ``regions`` key: region name -> list of label values."""
    ok = isinstance(raw, dict) and all(
        isinstance(vs, list) and vs and all(isinstance(v, int) and not isinstance(v, bool) for v in vs)
        for vs in raw.values()
    )
    if not ok:
        raise DataError(
            f"{where}: 'regions' must map names to non-empty lists of label values, found {raw!r}"
        )
    return {str(k): sorted(set(vs)) for k, vs in raw.items()}


def load_msd(root: str | Path) -> DatasetSpec:
    """Read an MSD / nnU-Net v2 folder into a :class:`DatasetSpec` (files are checked by validation).

    Raises:
        DataError: dataset.json is missing or malformed, a file name breaks the naming scheme, or
            numTraining disagrees with the cases found.
    """
    root = Path(root)
    where = f"{root}/dataset.json"
    meta = read_dataset_json(root)
    channels = _channel_names(meta, where)
    labels, regions = parse_labels(meta.get("labels"), where)
    if meta.get("regions") is not None:
        regions = _regions(meta["regions"], where)
    check_labels(labels, where)
    labels, regions, label_map = make_consecutive(labels, regions)
    ending = _file_ending(meta, root)
    patients = {str(k): str(v) for k, v in (meta.get("patients") or {}).items()}
    if isinstance(meta.get("dataset"), dict):
        train, test = _cases_listed(root, meta, patients)
    elif isinstance(meta.get("training"), list) and meta["training"]:
        train, test = _cases_v1(root, meta, ending, patients)
    else:
        train, test = _cases_v2(root, ending, len(channels), patients)
    if not train:
        raise DataError(f"{root}/imagesTr: no training images named CASE_0000{ending} found")
    n_declared = meta.get("numTraining")
    if isinstance(n_declared, int) and n_declared != len(train):
        raise DataError(f"{where}: numTraining is {n_declared} but {len(train)} training cases were found")
    return DatasetSpec(
        name=str(meta.get("name") or root.name),
        root=root,
        train=train,
        test=test,
        channel_names=channels,
        labels=labels,
        file_ending=ending,
        regions=regions,
        description=str(meta.get("description") or ""),
        label_note=str(meta.get("label_note") or ""),
        label_map=label_map,
    )


def dataset_json(spec: DatasetSpec, file_ending: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The nnU-Net v2 dataset.json content for ``spec`` (labels must already be consecutive)."""
    meta: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "channel_names": {str(k): v for k, v in sorted(spec.channel_names.items())},
        "labels": dict(sorted(spec.labels.items(), key=lambda kv: kv[1])),
        "numTraining": len(spec.train),
        "file_ending": file_ending,
    }
    if spec.regions:
        meta["regions"] = spec.regions
    if spec.label_note:
        meta["label_note"] = spec.label_note
    patients = {c.case_id: c.patient_id for c in spec.cases if c.patient_id}
    if patients:
        meta["patients"] = patients
    meta.update(extra or {})
    return meta


def write_dataset_json(root: Path, meta: dict[str, Any]) -> Path:
    """Write ``meta`` as ``root/dataset.json`` atomically."""
    return atomic_write_text(Path(root) / "dataset.json", json.dumps(meta, indent=2) + "\n")
