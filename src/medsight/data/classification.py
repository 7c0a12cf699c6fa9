"""Classification datasets: MedMNIST ``.npz``, class folders, CSV manifests and registered names,
all loaded into one :class:`ClassificationData`.

Accepted sources (:func:`load_classification`):

* a MedMNIST ``.npz`` (``train/val/test_images`` + ``_labels``; the official splits are kept), or a
  MedMNIST name (``breastmnist``, ``pneumoniamnist_64`` ...) found under ``<data root>/medmnist/``;
* a class-folder root: ``root/<class>/<image>``, or ``root/{train,val,test}/<class>/<image>``;
* a CSV manifest, paths relative to the CSV: ``image`` (or ``image_0000``, ``image_0001`` ... one file
  per modality), then either a ``label`` column (class names or integers: single-label) or one 0/1
  column per label (multi-label); optional ``case_id``, ``patient_id`` (splits keep a patient's cases
  together) and ``split`` (``train``, ``val`` or ``test``). An image value without a file ending is
  looked up in an ``images/`` folder beside the CSV (ISIC's attributes.csv names images by id);
* ``isic2018-attributes``: the ISIC 2018 attribute labels (multi-label, 5 attributes) of
  ``<data root>/isic2018/{train,val}``.

The problem is ``binary`` (2 classes), ``multiclass``, ``multilabel`` or ``ordinal`` (MedMNIST's
``ordinal-regression`` datasets; any single-label source with ``problem="ordinal"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.spec import Case
from medsight.errors import DataError, did_you_mean
from medsight.io.readers import IMAGE_SUFFIXES, is_image_file
from medsight.utils import shared_data_root

PROBLEMS = ("binary", "multiclass", "multilabel", "ordinal")
SPLITS = ("train", "val", "test")
_MEDMNIST_TASKS = {
    "binary-class": "binary",
    "multi-class": "multiclass",
    "multi-label, binary-class": "multilabel",
    "ordinal-regression": "ordinal",
}


@dataclass
class ClassificationData:
    """A classification dataset: samples per split and what the labels mean."""

    name: str
    problem: str
    class_names: list[str]
    splits: dict[str, list[Case]]
    dim: int
    channels: int
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def train(self) -> list[Case]:
        return self.splits.get("train", [])

    def labels(self, split: str) -> np.ndarray:
        """Labels of a split: (N,) class indices, or (N, K) 0/1 for multi-label problems."""
        return np.array([s.classes for s in self.splits.get(split, [])])

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Cases per class (multi-label: positives per label)."""
        y = self.labels(split)
        if self.problem == "multilabel":
            return y.sum(axis=0).astype(int) if y.size else np.zeros(len(self.class_names), int)
        return np.bincount(y.astype(int), minlength=len(self.class_names))

    def describe(self) -> dict[str, Any]:
        """Sizes, classes and counts per split (what ``medsight fingerprint --task classify`` prints)."""
        return {
            "name": self.name,
            "problem": self.problem,
            "dim": self.dim,
            "channels": self.channels,
            "classes": self.class_names,
            "splits": {
                split: {"cases": len(samples), "per_class": self.class_counts(split).tolist()}
                for split, samples in self.splits.items()
            },
            "notes": self.notes,
        }


def load_classification(
    source: str | Path | ClassificationData,
    *,
    data_root: str | Path | None = None,
    problem: str | None = None,
) -> ClassificationData:
    """Load a classification dataset from any accepted source (see the module doc).

    Args:
        problem: force the problem type (e.g. ``"ordinal"`` for ordered classes in a CSV).

    Raises:
        DataError: an unknown source or malformed content, named with the file and field.
    """
    if isinstance(source, ClassificationData):
        data = source
    else:
        data = _load(source, data_root)
    if problem is not None:
        data = _with_problem(data, problem)
    _check(data)
    return data


def _load(source: str | Path, data_root: str | Path | None) -> ClassificationData:
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".npz":
        return load_medmnist_file(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return load_class_manifest(path)
    if path.is_dir():
        return load_class_folders(path)
    from medsight.data.adapters import DATASETS

    name = str(source).lower()
    if name in DATASETS and DATASETS.get(name).targets == "classes":
        return DATASETS.get(name).load(_data_root(name, data_root))
    if _medmnist_base(name) is not None:  # a size variant: pneumoniamnist_64
        return load_medmnist_file(_data_root(name, data_root) / "medmnist" / f"{name}.npz")
    known = [n for n in DATASETS.names() if DATASETS.get(n).targets == "classes"]
    raise DataError(
        f"{source!r}: not a MedMNIST .npz, a class folder, a CSV manifest or a registered name"
        f"{did_you_mean(name, known)}; accepted: a file or folder, or {', '.join(known)} "
        "(MedMNIST names take a size suffix: _64, _128, _224)"
    )


def _data_root(name: str, explicit: str | Path | None) -> Path:
    root = shared_data_root(explicit)
    if root is None:
        raise DataError(f"dataset {name!r}: real-data folder not found (set MEDSIGHT_DATA or give data_root)")
    return root


def _with_problem(data: ClassificationData, problem: str) -> ClassificationData:
    if problem not in PROBLEMS:
        raise DataError(f"problem: expected one of {', '.join(PROBLEMS)}, got {problem!r}")
    single = data.problem != "multilabel"
    if single != (problem != "multilabel"):
        raise DataError(f"{data.name}: labels are {data.problem}; they cannot be read as {problem}")
    data.problem = problem
    return data


def _check(data: ClassificationData) -> None:
    if not data.train:
        raise DataError(f"{data.name}: no training cases")
    k = len(data.class_names)
    if data.problem != "multilabel" and k < 2:
        raise DataError(f"{data.name}: classification needs at least 2 classes, found {data.class_names}")
    for split, samples in data.splits.items():
        y = data.labels(split)
        bad = (y.shape[1:] != (k,)) if data.problem == "multilabel" else ((y < 0) | (y >= k)).any()
        if samples and bad:
            raise DataError(
                f"{data.name} ({split}): labels outside the {k} declared classes {data.class_names}"
            )


# ------------------------------------------------------------------------------------------ MedMNIST


def _medmnist_base(name: str) -> str | None:
    """'pneumoniamnist_64' -> 'pneumoniamnist' when it is a MedMNIST name."""
    base = name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name
    from medsight.data.medmnist import MEDMNIST

    return base if base in MEDMNIST else None


def load_medmnist_file(path: str | Path) -> ClassificationData:
    """A MedMNIST ``.npz`` with its official train/val/test splits; the problem type and class names
    come from the MedMNIST table when the file is named after a MedMNIST dataset."""
    from medsight.io.npz import read_medmnist

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: MedMNIST file not found (fetch it: medsight datasets fetch medmnist NAME)")
    arrays = read_medmnist(path)
    stem = path.name[: -len(".npz")].lower()
    base = _medmnist_base(stem)
    images, labels = arrays["train"]
    named_3d = base is not None and base.endswith("3d")
    dim = 3 if named_3d or (images.ndim == 4 and images.shape[-1] > 4) else 2  # (N, D, H, W), not RGB(A)
    problem, names = _medmnist_meta(base, labels)
    splits = {}
    for split, (imgs, ys) in arrays.items():
        chw = _channel_first(imgs, dim)
        splits[split] = [
            Case(f"{split}_{i:05d}", classes=ys[i].tolist() if ys.ndim == 2 else int(ys[i]), array=chw[i])
            for i in range(len(ys))
        ]
    first = splits["train"][0].array
    return ClassificationData(stem, problem, names, splits, dim, int(first.shape[0]), source=str(path))


def _channel_first(images: np.ndarray, dim: int) -> np.ndarray:
    """MedMNIST (N, H, W), (N, H, W, 3) or (N, D, H, W) -> (N, C, *spatial) views."""
    if dim == 3 or images.ndim == 3:
        return images[:, None]
    return np.moveaxis(images, -1, 1)


def _medmnist_meta(base: str | None, labels: np.ndarray) -> tuple[str, list[str]]:
    if base is None:
        problem = "multilabel" if labels.ndim == 2 else ("binary" if labels.max() <= 1 else "multiclass")
        k = labels.shape[1] if labels.ndim == 2 else int(labels.max()) + 1
        return problem, [f"class_{i}" for i in range(k)]
    from medsight.data.medmnist import medmnist_info

    info = medmnist_info(base)
    return _MEDMNIST_TASKS[info.task], [str(name) for name in info.labels]


# ------------------------------------------------------------------------------------ class folders


def load_class_folders(root: str | Path) -> ClassificationData:
    """``root/<class>/*`` (split later into folds) or ``root/{train,val,test}/<class>/*``."""
    root = Path(root)
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if "train" not in split_dirs:
        split_dirs = {"train": root}
    names = sorted(d.name for d in split_dirs["train"].iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(names) < 2:
        raise DataError(
            f"{split_dirs['train']}: expected one sub-folder per class (at least 2), found {names}"
        )
    splits: dict[str, list[Case]] = {}
    for split, folder in split_dirs.items():
        samples = []
        for k, name in enumerate(names):
            files = (
                sorted(p for p in (folder / name).glob("*") if is_image_file(p))
                if (folder / name).is_dir()
                else []
            )
            samples += [Case(f"{name}/{p.name}", (p,), classes=k) for p in files]
        splits[split] = samples
    if not splits["train"]:
        raise DataError(f"{root}: no image files in the class folders {names}")
    return _from_files(root.name, "binary" if len(names) == 2 else "multiclass", names, splits, str(root))


def _from_files(
    name: str, problem: str, class_names: list[str], splits: dict[str, list[Case]], source: str
) -> ClassificationData:
    """Read the first image for the dimensionality and channel count."""
    from medsight.io import read_image

    first = splits["train"][0] if splits.get("train") else None
    if first is None:
        raise DataError(f"{source}: no training cases")
    images = [read_image(p) for p in first.images]
    dim = images[0].ndim
    channels = sum(im.channels for im in images)
    return ClassificationData(name, problem, class_names, splits, dim, channels, source=source)


# --------------------------------------------------------------------------------------- manifests

_RESERVED = {"case_id", "patient_id", "split"}


def load_class_manifest(path: str | Path, name: str | None = None) -> ClassificationData:
    """A CSV manifest (see the module doc)."""
    from medsight.data.manifest import image_columns, read_rows

    path = Path(path)
    header, rows = read_rows(path)
    cols = image_columns(header, str(path))
    label_cols = ["label"] if "label" in header else [h for h in header if h not in {*cols, *_RESERVED}]
    if not label_cols:
        raise DataError(f"{path}: needs a 'label' column or one 0/1 column per label; found {header}")
    multilabel = label_cols != ["label"]
    class_names = label_cols if multilabel else _class_names([r.get("label", "") for r in rows], path)
    splits: dict[str, list[Case]] = {}
    for n, row in enumerate(rows, start=2):
        sample, split = _manifest_sample(row, n, cols, label_cols, class_names, multilabel, path)
        splits.setdefault(split, []).append(sample)
    _unique_ids(splits, path)
    problem = "multilabel" if multilabel else ("binary" if len(class_names) == 2 else "multiclass")
    return _from_files(name or path.stem, problem, class_names, splits, str(path))


def _class_names(values: list[str], path: Path) -> list[str]:
    found = sorted(set(values) - {""})
    if found and all(v.lstrip("-").isdigit() for v in found):
        ints = sorted(int(v) for v in found)
        if ints[0] < 0:
            raise DataError(f"{path}: label: expected class names or integers >= 0, found {ints[0]}")
        return [str(i) for i in range(ints[-1] + 1)]
    return found


def _manifest_sample(
    row: dict[str, str],
    n: int,
    cols: list[str],
    label_cols: list[str],
    class_names: list[str],
    multilabel: bool,
    path: Path,
) -> tuple[Case, str]:
    where = f"{path} row {n}"
    if any(not row.get(c) for c in cols + label_cols):
        empty = [c for c in cols + label_cols if not row.get(c)]
        raise DataError(f"{where}: empty {', '.join(empty)}")
    images = tuple(_resolve_image(path.parent, row[c], where) for c in cols)
    if multilabel:
        try:
            label: Any = [int(float(row[c])) for c in label_cols]
        except ValueError as exc:
            raise DataError(f"{where}: label columns must hold 0 or 1 ({exc})") from exc
        if any(v not in (0, 1) for v in label):
            raise DataError(f"{where}: label columns must hold 0 or 1, found {label}")
    else:
        label = class_names.index(row["label"]) if row["label"] in class_names else int(row["label"])
    split = (row.get("split") or "train").lower()
    if split not in SPLITS:
        raise DataError(f"{where}: split must be one of {', '.join(SPLITS)}, found {row['split']!r}")
    from medsight.io.readers import split_suffix

    case_id = row.get("case_id") or split_suffix(images[0].name)[0]
    return Case(case_id, images, classes=label, patient_id=row.get("patient_id") or None), split


def _resolve_image(base: Path, value: str, where: str) -> Path:
    """A path relative to the CSV; a bare id is looked up in ``images/`` with a known ending."""
    direct = base / value
    if direct.exists():
        return direct
    for folder in (base / "images", base):
        for suffix in IMAGE_SUFFIXES:
            candidate = folder / f"{value}{suffix}"
            if candidate.is_file():
                return candidate
    raise DataError(
        f"{where}: image {value!r} not found (relative to {base}, or in images/ with a known ending)"
    )


def _unique_ids(splits: dict[str, list[Case]], path: Path) -> None:
    seen: set[str] = set()
    for samples in splits.values():
        for s in samples:
            if s.case_id in seen:
                raise DataError(f"{path}: case id {s.case_id!r} appears twice (add a case_id column)")
            seen.add(s.case_id)


# ---------------------------------------------------------------------------------------- adapters


def _isic_attributes(base: Path) -> ClassificationData:
    train = load_class_manifest(base / "train" / "attributes.csv", name="isic2018-attributes")
    val = load_class_manifest(base / "val" / "attributes.csv")
    train.splits["val"] = val.splits["train"]
    train.notes.append("ISIC 2018 Task 2 attributes from the lesion images; val is ISIC's validation set")
    return train


def _register_datasets() -> None:
    """The classification datasets in the one DATASETS registry: every MedMNIST name (its .npz in
    ``<data root>/medmnist/``) and the ISIC 2018 attributes."""
    from medsight.data.adapters import DATASETS, DatasetAdapter
    from medsight.data.medmnist import MEDMNIST

    DATASETS.add(
        "isic2018-attributes",
        DatasetAdapter(
            "isic2018-attributes",
            "isic2018",
            "ISIC 2018 dermoscopic attributes (5, multi-label) of the lesion images; train 1600 / val 400",
            _isic_attributes,
            targets="classes",
        ),
    )
    for name, info in MEDMNIST.items():
        kind = f"{info.dim}D, {info.task}, {len(info.labels)} classes"
        DATASETS.add(
            name,
            DatasetAdapter(
                name,
                "medmnist",
                f"MedMNIST {name}: {kind} (the .npz in medmnist/, or fetch it)",
                lambda folder, n=name: load_medmnist_file(folder / f"{n}.npz"),
                targets="classes",
            ),
        )


_register_datasets()
