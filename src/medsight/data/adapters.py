"""Adapters for the real datasets in ``../shared/data``, registered by name in :data:`DATASETS`.

Each adapter turns a folder in its original layout into a :class:`DatasetSpec` without copying a
file; ``label_map`` translates what the label files store into consecutive class values::

    spec = load_dataset("drive")            # or medsight.data.DATASETS.get("drive").load(root)
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsight.data.spec import Case, DatasetSpec
from medsight.errors import DataError
from medsight.registry import Registry


@dataclass(frozen=True)
class DatasetAdapter:
    """A named real dataset: its folder under the data root, a one-line description, a builder.

    ``layout`` holds glob patterns, relative to the dataset folder, that each match at least one
    path in a folder of this layout: :meth:`matches` recognises such a folder by its structure,
    whatever its name. ``targets`` says what its cases carry (``"label maps"``: a DatasetSpec;
    ``"classes"``: a ClassificationData), so each loader takes the names it can read.
    """

    name: str
    folder: str
    description: str
    build: Callable[[Path], Any]
    layout: tuple[str, ...] = ()
    targets: str = "label maps"

    def load(self, data_root: Path) -> Any:
        """Build the spec from ``data_root/folder`` (DataError when the folder is absent)."""
        root = Path(data_root) / self.folder
        if not root.is_dir():
            raise DataError(
                f"dataset {self.name!r}: folder {root} not found (expected {self.folder}/ in the data root)"
            )
        return self.build(root)

    def matches(self, folder: str | Path) -> bool:
        """True when ``folder`` has this dataset's structure (every ``layout`` pattern finds a path).

        Cheap: each pattern stops at its first hit. An adapter without ``layout`` matches nothing.
        """
        root = Path(folder)
        return bool(self.layout) and root.is_dir() and all(_found(root, pat) for pat in self.layout)

    def describe_layout(self) -> str:
        """``"drive: training/images/*.tif + ..."``, for messages listing the accepted layouts."""
        return f"{self.name}: {' + '.join(self.layout)}" if self.layout else self.name


def _found(root: Path, pattern: str) -> bool:
    return next((p for p in root.glob(pattern) if not p.name.startswith(".")), None) is not None


DATASETS: Registry[DatasetAdapter] = Registry("dataset")


def _adapter(
    name: str, folder: str, description: str, layout: tuple[str, ...] = ()
) -> Callable[[Callable[[Path], DatasetSpec]], DatasetAdapter]:
    def decorator(build: Callable[[Path], DatasetSpec]) -> DatasetAdapter:
        adapter = DatasetAdapter(name, folder, description, build, layout)
        DATASETS.add(name, adapter)
        return adapter

    return decorator


def _files(folder: Path, pattern: str) -> list[Path]:
    found = sorted(p for p in folder.glob(pattern) if not p.name.startswith("."))
    if not found:
        raise DataError(f"{folder}: no files matching {pattern!r}")
    return found


def _numeric_key(p: Path) -> tuple[int, str]:
    m = re.match(r"\d+", p.name)
    return (int(m.group()) if m else 1 << 30, p.name)


@_adapter(
    "isbi2012",
    "isbi2012-em",
    "ISBI 2012 EM membranes: 30 train (labelled) + 30 test slices, 512x512 grey",
    layout=("train/image/*.png", "train/label/*.png", "test/image/*.png"),
)
def isbi2012(root: Path) -> DatasetSpec:
    """ISBI 2012 EM: label PNGs store 255 = cell interior and 0 (black) = membrane; membrane is class 1.

    The 30 training slices are consecutive sections of one ssTEM stack, so they have no patient
    ids: folds split by section (neighbouring sections are correlated).
    """
    train = [
        Case(f"isbi_{p.stem.zfill(2)}", (p,), label=root / "train" / "label" / p.name)
        for p in sorted(_files(root / "train" / "image", "*.png"), key=_numeric_key)
    ]
    test = [
        Case(f"isbi_test_{p.stem.zfill(2)}", (p,))
        for p in sorted(_files(root / "test" / "image", "*.png"), key=_numeric_key)
    ]
    return DatasetSpec(
        name="isbi2012",
        root=root,
        train=train,
        test=test,
        channel_names={0: "EM"},
        labels={"background": 0, "membrane": 1},
        file_ending=".png",
        label_map={0: 1, 255: 0},
        description="ISBI 2012 EM challenge: serial-section TEM of the Drosophila ventral nerve cord",
        label_note="label PNGs: 0 (black) = membrane -> class 1, 255 = cell interior -> background; manual",
    )


def _drive_case(root: Path, sub: str, stem: str, number: str) -> Case:
    tag = "training" if sub == "training" else "test"
    extra = {}
    second = root / sub / "2nd_manual" / f"{number}_manual2.gif"
    if second.is_file():
        extra["second_manual"] = second
    return Case(
        case_id=f"drive_{number}",
        images=(root / sub / "images" / f"{stem}.tif",),
        label=root / sub / "1st_manual" / f"{number}_manual1.gif",
        roi=root / sub / "mask" / f"{number}_{tag}_mask.gif",
        extra=extra,
    )


@_adapter(
    "drive",
    "drive",
    "DRIVE retinal vessels: 20 train + 20 test colour fundus images with FOV masks",
    layout=("training/images/*.tif", "training/1st_manual/*_manual1.gif", "testing/images/*.tif"),
)
def drive(root: Path) -> DatasetSpec:
    """DRIVE: vessel = 1 from the 1st manual GIF (0/255); roi = the field-of-view mask.

    Test cases carry the second observer's tracing in ``extra["second_manual"]``. A few traced pixels
    (under 0.3%) overhang the field of view; metrics computed inside the roi ignore them.
    """
    cases = {}
    for sub in ("training", "testing"):
        cases[sub] = [
            _drive_case(root, sub, p.stem, p.stem.split("_")[0])
            for p in _files(root / sub / "images", "*.tif")
        ]
    return DatasetSpec(
        name="drive",
        root=root,
        train=cases["training"],
        test=cases["testing"],
        channel_names={0: "R", 1: "G", 2: "B"},
        labels={"background": 0, "vessel": 1},
        file_ending=".tif",
        label_map={0: 0, 255: 1},
        description="DRIVE: Digital Retinal Images for Vessel Extraction (565x584 colour fundus)",
        label_note="1st manual tracing (human); test cases add a 2nd observer in extra['second_manual']",
    )


def _isic_attributes(csv_path: Path) -> dict[str, dict[str, int]]:
    if not csv_path.is_file():
        return {}
    with open(csv_path, newline="") as f:
        return {r["image"]: {k: int(v) for k, v in r.items() if k != "image"} for r in csv.DictReader(f)}


def _isic_cases(folder: Path) -> list[Case]:
    attrs = _isic_attributes(folder / "attributes.csv")
    out = []
    for p in _files(folder / "images", "*.jpg"):
        extra = {"attributes": attrs[p.stem]} if p.stem in attrs else {}
        out.append(Case(p.stem, (p,), label=folder / "masks" / f"{p.stem}_segmentation.png", extra=extra))
    return out


@_adapter(
    "isic2018",
    "isic2018",
    "ISIC 2018 dermoscopy lesions: 1600 train + 400 val (as test), 256x256 RGB",
    layout=("train/images/*.jpg", "train/masks/*_segmentation.png", "val/images/*.jpg"),
)
def isic2018(root: Path) -> DatasetSpec:
    """ISIC 2018 Task 1: lesion = 1 from the 0/255 masks; the 400 validation images are the test split.

    Each case's ``extra["attributes"]`` holds the Task 2 attributes (0/1) from attributes.csv.
    """
    return DatasetSpec(
        name="isic2018",
        root=root,
        train=_isic_cases(root / "train"),
        test=_isic_cases(root / "val"),
        channel_names={0: "R", 1: "G", 2: "B"},
        labels={"background": 0, "lesion": 1},
        file_ending=".jpg",
        label_map={0: 0, 255: 1},
        description="ISIC 2018 skin lesion segmentation (Task 1) with Task 2 attributes, resized to 256x256",
        label_note="lesion masks 0/255 from ISIC 2018 (manual or semi-automatic); val used as test",
    )


_BRATS_CHANNELS = {0: "T1", 1: "T1c", 2: "T2", 3: "FLAIR"}
_BRATS_SUFFIXES = (("t1", "t1n"), ("t1c",), ("t2", "t2w"), ("fla", "t2f"))


def _brats_channel(folder: Path, options: tuple[str, ...]) -> Path:
    for suffix in options:
        p = folder / f"{folder.name}_{suffix}.nii.gz"
        q = folder / f"{folder.name}-{suffix}.nii.gz"
        for cand in (p, q):
            if cand.is_file():
                return cand
    raise DataError(f"{folder}: no {'/'.join(options)} channel file found")


@_adapter(
    "brats",
    "brats-tcga",
    "BraTS (TCGA examples): 2 train cases, T1/T1c/T2/FLAIR, labels from BraTS algorithms",
    layout=("*/seg_fusion_simple.nii.gz", "*/*[_-]t1c.nii.gz"),
)
def brats(root: Path) -> DatasetSpec:
    """BraTS examples: labels 1 = necrotic / non-enhancing core, 2 = edema, 4 = enhancing (stored 4 -> 3).

    Training cases use ``seg_fusion_simple`` (a fusion of BraTS challenge algorithms: not manual).
    The BraTS 2023 case without a tumour label becomes a test case.
    """
    train, test = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = tuple(_brats_channel(folder, opts) for opts in _BRATS_SUFFIXES)
        seg = folder / "seg_fusion_simple.nii.gz"
        (train if seg.is_file() else test).append(
            Case(folder.name, images, label=seg if seg.is_file() else None, patient_id=folder.name)
        )
    if not train:
        raise DataError(f"{root}: no case folder holds seg_fusion_simple.nii.gz")
    return DatasetSpec(
        name="brats",
        root=root,
        train=train,
        test=test,
        channel_names=dict(_BRATS_CHANNELS),
        labels={"background": 0, "necrotic_core": 1, "edema": 2, "enhancing": 3},
        file_ending=".nii.gz",
        regions={"whole_tumour": [1, 2, 3], "tumour_core": [1, 3], "enhancing_tumour": [3]},
        label_map={0: 0, 1: 1, 2: 2, 4: 3},
        description="BraTS glioma examples from TCGA, 240x240x155 at 1 mm, co-registered and skull-stripped",
        label_note="outputs of BraTS algorithms (seg_fusion_simple), not manual; stored 1/2/4, 4 read as 3",
    )


_TOTALSEG_KEEP = ("spleen", "kidney_right", "kidney_left", "liver")
_TOTALSEG_V2_IDS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "liver": 5}


def totalseg_class_table(path: Path) -> dict[int, str]:
    """The TotalSegmentator label table stored in a NIfTI header extension (value -> name), or {}."""
    import nibabel as nib

    try:
        exts = nib.load(str(path)).header.extensions
    except Exception as exc:  # nibabel raises several types for broken files
        raise DataError(f"{path}: cannot read NIfTI header ({type(exc).__name__}: {exc})") from exc
    table: dict[int, str] = {}
    for ext in exts:
        text = ext.get_content()
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        for key, name in re.findall(r'<Label Key="(\d+)"[^>]*><!\[CDATA\[([^\]]+)\]\]>', text):
            table[int(key)] = name
    return table


@_adapter(
    "totalseg",
    "totalseg-examples",
    "TotalSegmentator CT example, 3 mm: spleen, kidneys, liver (model output)",
    layout=(
        "example_ct.nii.gz",
        "example_seg_fast_force_split.nii.gz",
        "example_ct_sm.nii.gz",
        "example_seg.nii.gz",
    ),
)
def totalseg(root: Path) -> DatasetSpec:
    """TotalSegmentator example CT with 4 large organs kept; the other 113 classes read as background.

    Train: ``example_ct`` (122x101x112) with ``example_seg_fast_force_split``. Test: ``example_ct_sm``
    (its last 30 slices, stored with the same origin) with ``example_seg``. Both are one patient.
    """
    pairs = {"example_ct": "example_seg_fast_force_split", "example_ct_sm": "example_seg"}
    table = totalseg_class_table(root / f"{pairs['example_ct']}.nii.gz")
    ids = {name: key for key, name in table.items()} if table else _TOTALSEG_V2_IDS
    missing = [n for n in _TOTALSEG_KEEP if n not in ids]
    if missing:
        raise DataError(f"{root}: the label table lacks {missing}")
    keep = {ids[n]: i for i, n in enumerate(_TOTALSEG_KEEP, start=1)}
    stored = set(range(118)) | set(table)
    label_map = {v: keep.get(v, 0) for v in sorted(stored)}
    cases = [
        Case(ct, (root / f"{ct}.nii.gz",), label=root / f"{seg}.nii.gz", patient_id="totalseg_example")
        for ct, seg in pairs.items()
    ]
    return DatasetSpec(
        name="totalseg",
        root=root,
        train=cases[:1],
        test=cases[1:],
        channel_names={0: "CT"},
        labels={"background": 0, **{n: i for i, n in enumerate(_TOTALSEG_KEEP, start=1)}},
        file_ending=".nii.gz",
        label_map=label_map,
        description="TotalSegmentator example abdominal CT at 3 mm; test case: a crop of the train volume",
        label_note="reference outputs of the TotalSegmentator model, not manual; 4 of 117 classes kept",
    )
