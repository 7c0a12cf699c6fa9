"""Box datasets: COCO JSON, a CSV of boxes, MONAI's 3D box JSON, and boxes from any label-map dataset,
all loaded into one :class:`BoxData` whose cases carry :class:`~medsight.data.spec.Boxes`.

Accepted sources (:func:`load_boxes`):

* a COCO JSON (``images``, ``annotations`` with ``bbox`` = [x, y, w, h] in pixels, ``categories``), or a
  folder holding one (``annotations.json``, or ``annotations/*.json``); image files are looked up beside
  the JSON, in ``images/`` or ``imgs/`` there or one folder up. An image's ``metadata.patientid`` (or
  ``patient_id``) keeps a patient's images in one split;
* a CSV of boxes, one row per box (``image, x0, y0, x1, y1, label``, optional ``z0, z1``, ``patient_id``,
  ``split``); a row with an empty ``label`` (and empty coordinates) names an image without boxes;
* MONAI's detection JSON (``{"training": [{"image": ..., "box": [[...]], "label": [...]}], ...}``), boxes
  ``box_mode`` ``"cccwhd"`` (centre + size, MONAI's LUNA16 default) or ``"xyzxyz"``, in ``"world"``
  (mm, the default) or ``"voxel"`` coordinates, given as top-level keys of the JSON, with optional class
  names (``"classes": {"1": "kidney"}``; else ``class_<label>``);
* any dataset :func:`medsight.data.load_dataset` reads (a name, an MSD folder, a CSV manifest): one
  box per connected component of each class (of each region where the dataset has regions);
* the registered names ``covid-cxr-lungs``, ``isic2018-boxes`` (lesion boxes from the ISIC masks)
  and ``tbx11k-samples`` (``cxr-samples/tbx11k``).

Boxes are corners in voxels, inclusive-exclusive: (x0, y0, x1, y1) in 2D with x the column, (x0, y0,
z0, x1, y1, z1) in 3D with x the first array axis (as :mod:`medsight.metrics.detection`). Images
without boxes are negatives. Problems (a box outside its image, a size <= 0, an unknown category id,
a duplicate image id, an image without a file) are :class:`BoxIssue` s naming the file, the annotation
and the field; :func:`load_boxes` raises one DataError listing every one (``strict=False`` keeps them
in ``BoxData.issues``, which ``medsight fingerprint`` prints).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.spec import Boxes, Case
from medsight.errors import DataError

SPLITS = ("train", "val", "test")
MIN_COMPONENT_VOXELS = 16  # label-map components smaller than this are specks, not objects
MIN_RELATIVE_EXTENT = 0.15  # ... and so are those whose size^(1/dim) is below this of the image's largest
_IMAGE_FOLDERS = ("", "images", "imgs")


@dataclass(frozen=True)
class BoxIssue:
    """One problem of a box dataset: the file, the annotation (or image) it is about, the field, what."""

    file: str
    item: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.item}: {self.field}: {self.message}"


@dataclass
class BoxData:
    """A box dataset: cases per split (each with ``boxes`` and ``extra["size"]``, the spatial shape)."""

    name: str
    dim: int
    channels: int
    class_names: list[str]
    splits: dict[str, list[Case]]
    source: str = ""
    category_ids: list[int] = field(default_factory=list)  # the dataset's id of each class (COCO)
    notes: list[str] = field(default_factory=list)
    issues: list[BoxIssue] = field(default_factory=list)

    @property
    def train(self) -> list[Case]:
        return self.splits.get("train", [])

    def describe(self) -> dict[str, Any]:
        """Images and boxes per split and class, box sizes and aspect ratios, problems found."""
        out: dict[str, Any] = {
            "name": self.name,
            "dim": self.dim,
            "channels": self.channels,
            "classes": self.class_names,
            "category_ids": self.category_ids,
            "splits": {s: _split_stats(cases, self.class_names) for s, cases in self.splits.items()},
            "notes": self.notes,
            "problems": [str(i) for i in self.issues],
        }
        out["boxes"] = box_statistics([c for cases in self.splits.values() for c in cases], self.dim)
        return out


def box_sides(cases: list[Case], dim: int) -> np.ndarray:
    """``(N, dim)`` sides of every box of ``cases``, in array-axis order (rows first in 2D)."""
    sides = [
        array_order(c.boxes.coords, dim)[:, dim:] - array_order(c.boxes.coords, dim)[:, :dim]
        for c in cases
        if c.boxes is not None and len(c.boxes.coords)
    ]
    return np.concatenate(sides) if sides else np.zeros((0, dim))


def array_order(coords: np.ndarray, dim: int) -> np.ndarray:
    """Boxes between medsight's order (2D: x = column first) and array-axis order (rows first); 3D
    boxes are already in array order. Its own inverse."""
    c = np.asarray(coords, dtype=np.float64).reshape(-1, 2 * dim)
    return c[:, [1, 0, 3, 2]] if dim == 2 else c


def box_statistics(cases: list[Case], dim: int) -> dict[str, Any]:
    """Counts and quantiles of box sides (array-axis order) and aspect ratios."""
    sides = box_sides(cases, dim)
    per_image = [len(c.boxes.coords) if c.boxes is not None else 0 for c in cases]
    stats: dict[str, Any] = {
        "boxes": int(len(sides)),
        "images_without_boxes": int(sum(n == 0 for n in per_image)),
        "boxes_per_image_max": int(max(per_image, default=0)),
    }
    if len(sides):
        q = [5, 25, 50, 75, 95]
        stats["side_quantiles (array axes; p5, p25, p50, p75, p95)"] = (
            np.percentile(sides, q, axis=0).round(2).T.tolist()
        )
        ratio = sides[:, 1:] / np.maximum(sides[:, :1], 1e-6)
        stats["aspect_ratio_quantiles (side / first side)"] = (
            np.percentile(ratio, q, axis=0).round(3).T.tolist()
        )
    return stats


def _split_stats(cases: list[Case], names: list[str]) -> dict[str, Any]:
    labels = Counter(int(v) for c in cases if c.boxes is not None for v in c.boxes.labels)
    return {
        "images": len(cases),
        "boxes_per_class": {n: labels.get(i, 0) for i, n in enumerate(names)},
        "patients": len({c.patient for c in cases}),
    }


# ------------------------------------------------------------------------------------------ entry point


def load_boxes(source: str | Path, *, data_root: str | Path | None = None, strict: bool = True) -> BoxData:
    """Load a box dataset from any accepted source (see the module doc).

    Args:
        source: a COCO / MONAI JSON, a CSV of boxes, a folder, or a registered dataset name.
        data_root: where registered datasets live (default ``../shared/data``).
        strict: raise on problems (else keep them in ``issues``; their boxes are dropped).

    Raises:
        DataError: an unreadable source, or (``strict``) every problem found, one per line.
    """
    data = _load(source, data_root)
    if strict and data.issues:
        lines = "\n  ".join(str(i) for i in data.issues[:50])
        more = f"\n  ... and {len(data.issues) - 50} more" if len(data.issues) > 50 else ""
        raise DataError(f"{data.source}: {len(data.issues)} problem(s) in the boxes:\n  {lines}{more}")
    if not data.train:
        raise DataError(f"{data.source}: no training images")
    return data


def _load(source: str | Path, data_root: str | Path | None) -> BoxData:
    from medsight.data.adapters import DATASETS

    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".json":
        content = _read_json(path)
        if isinstance(content, dict) and "annotations" in content:
            return load_coco(path)
        return load_monai_boxes(path, content)
    if path.is_file() and path.suffix.lower() == ".csv" and _is_box_csv(path):
        return load_box_csv(path)
    if path.is_dir() and (coco := _coco_file(path)) is not None:
        return load_coco(coco, name=path.name)
    name = str(source)
    if not path.exists() and name in DATASETS and DATASETS.get(name).targets == "boxes":
        from medsight.utils import shared_data_root

        return DATASETS.get(name).load(Path(data_root) if data_root else shared_data_root() or Path("."))
    return boxes_from_label_maps(source, data_root=data_root)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from exc


def _coco_file(folder: Path) -> Path | None:
    found = [folder / "annotations.json", *sorted((folder / "annotations").glob("*.json"))]
    return next((p for p in found if p.is_file()), None)


def _is_box_csv(path: Path) -> bool:
    with path.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    return {"image", "x0", "y0", "x1", "y1"} <= {h.strip() for h in header}


# ------------------------------------------------------------------------------------------------ COCO


def load_coco(path: Path, name: str | None = None) -> BoxData:
    """A COCO JSON of 2D boxes (see the module doc); every problem is collected in ``issues``."""
    content = _read_json(path)
    where = str(path)
    issues: list[BoxIssue] = []
    for key in ("images", "annotations", "categories"):
        if not isinstance(content.get(key), list):
            raise DataError(f"{where}: {key}: expected a list, found {type(content.get(key)).__name__}")
    categories = sorted(content["categories"], key=lambda c: c.get("id", 0))
    cat_index = {c["id"]: i for i, c in enumerate(categories)}
    images, base = _coco_images(content["images"], path, issues)
    boxes: dict[Any, list[tuple[list[float], int]]] = {i: [] for i in images}
    for ann in content["annotations"]:
        item = f"annotation {ann.get('id', '?')}"
        image = images.get(ann.get("image_id"))
        if ann.get("image_id") not in images:
            issues.append(BoxIssue(where, item, "image_id", f"no image with id {ann.get('image_id')!r}"))
            continue
        if ann.get("category_id") not in cat_index:
            known = sorted(cat_index)
            issues.append(
                BoxIssue(
                    where, item, "category_id", f"expected one of {known}, found {ann.get('category_id')!r}"
                )
            )
            continue
        corners = _coco_corners(ann.get("bbox"), image, where, item, issues)
        if corners is not None:
            boxes[ann["image_id"]].append((corners, cat_index[ann["category_id"]]))
    cases = [_coco_case(image, base, boxes[i]) for i, image in images.items() if image.get("_file")]
    return BoxData(
        name=name or path.stem,
        dim=2,
        channels=_channels(cases),
        class_names=[str(c.get("name", c["id"])) for c in categories],
        splits=_split_by_field(cases),
        source=where,
        category_ids=[int(c["id"]) for c in categories],
        issues=issues,
    )


def _coco_images(
    raw: list[dict[str, Any]], path: Path, issues: list[BoxIssue]
) -> tuple[dict[Any, dict], Path]:
    """Images by id (files resolved into ``_file``), the folder their files are under."""
    where = str(path)
    base = _image_base(path, [str(i.get("file_name", "")) for i in raw])
    images: dict[Any, dict] = {}
    for image in raw:
        item = f"image {image.get('id', '?')}"
        if image.get("id") in images:
            issues.append(BoxIssue(where, item, "id", "duplicate image id"))
            continue
        file = base / str(image.get("file_name", ""))
        if not image.get("file_name") or not file.is_file():
            issues.append(BoxIssue(where, item, "file_name", f"no file {file}"))
            image = {**image, "_file": None}
        else:
            image = {**image, "_file": file}
        for key in ("width", "height"):
            if not isinstance(image.get(key), int | float) or image[key] <= 0:
                issues.append(
                    BoxIssue(where, item, key, f"expected a positive number, found {image.get(key)!r}")
                )
                image["_file"] = None
        images[image.get("id")] = image
    return images, base


def _image_base(path: Path, names: list[str]) -> Path:
    """The folder under which the JSON's file names are found (the first candidate holding the first)."""
    first = next((n for n in names if n), "")
    candidates = [path.parent / f for f in _IMAGE_FOLDERS] + [path.parent.parent / f for f in _IMAGE_FOLDERS]
    return next((c for c in candidates if (c / first).is_file()), path.parent / "images")


def _coco_corners(
    bbox: Any, image: dict[str, Any], where: str, item: str, issues: list[BoxIssue]
) -> list[float] | None:
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, int | float) for v in bbox):
        issues.append(BoxIssue(where, item, "bbox", f"expected [x, y, w, h] numbers, found {bbox!r}"))
        return None
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        issues.append(BoxIssue(where, item, "bbox", f"expected width and height > 0, found w={w:g}, h={h:g}"))
        return None
    corners = [x, y, x + w, y + h]
    size = [float(image.get("width", 0)), float(image.get("height", 0))]
    if image.get("_file") and not _inside(corners, size):
        issues.append(
            BoxIssue(
                where,
                item,
                "bbox",
                f"box {corners} outside the image (width x height {size[0]:g} x {size[1]:g})",
            )
        )
        return None
    return corners


def _inside(corners: list[float], size: list[float], tolerance: float = 1.0) -> bool:
    """Corners within [0, size] on every axis (size in box order), up to ``tolerance`` voxels."""
    d = len(size)
    return all(corners[a] >= -tolerance and corners[a + d] <= size[a] + tolerance for a in range(d))


def _coco_case(image: dict[str, Any], base: Path, boxes: list[tuple[list[float], int]]) -> Case:
    meta = image.get("metadata") or {}
    patient = meta.get("patientid") or meta.get("patient_id") or image.get("patient_id")
    size = (int(image["height"]), int(image["width"]))
    extra = {"image_id": image["id"], "size": size, "split": image.get("split")}
    return Case(
        str(Path(str(image["file_name"])).with_suffix("")),
        (image["_file"],),
        patient_id=str(patient) if patient not in (None, "") else None,
        boxes=_boxes(boxes, 2, size),
        extra=extra,
    )


def _boxes(items: list[tuple[list[float], int]], dim: int, size: tuple[int, ...]) -> Boxes:
    """Boxes clipped to the image (``size`` in array order), corners in medsight's order."""
    coords = np.array([c for c, _ in items], dtype=np.float64).reshape(-1, 2 * dim)
    limit = np.array(size[::-1] if dim == 2 else size, dtype=np.float64)
    coords[:, :dim] = np.clip(coords[:, :dim], 0, limit)
    coords[:, dim:] = np.clip(coords[:, dim:], 0, limit)
    return Boxes(coords, np.array([lab for _, lab in items], dtype=np.int64))


def _channels(cases: list[Case]) -> int:
    """The channels of the first image (RGB pictures: 3; grey ones, volumes: 1)."""
    return int(cases[0].read().shape[0]) if cases else 1


def _split_by_field(cases: list[Case]) -> dict[str, list[Case]]:
    """Cases by their ``extra["split"]`` (train when absent)."""
    splits: dict[str, list[Case]] = {"train": []}
    for case in cases:
        splits.setdefault(str(case.extra.get("split") or "train"), []).append(case)
    return {k: v for k, v in splits.items() if v or k == "train"}


# ------------------------------------------------------------------------------------------------- CSV


def load_box_csv(path: Path) -> BoxData:
    """A CSV of boxes (see the module doc): rows grouped by image, paths relative to the CSV."""
    where = str(path)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    dim = 3 if rows and "z0" in rows[0] else 2
    names = sorted({r["label"].strip() for r in rows if (r.get("label") or "").strip()})
    index = {n: i for i, n in enumerate(names)}
    issues: list[BoxIssue] = []
    grouped: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for line, row in enumerate(rows, start=2):
        grouped.setdefault(row["image"].strip(), []).append((line, row))
    cases = [
        c
        for image, items in grouped.items()
        if (c := _csv_case(path, image, items, dim, index, issues)) is not None
    ]
    return BoxData(
        path.stem,
        dim,
        _channels(cases),
        names,
        _split_by_field(cases),
        where,
        list(range(1, len(names) + 1)),
        issues=issues,
    )


def _csv_case(
    path: Path,
    image: str,
    items: list[tuple[int, dict[str, str]]],
    dim: int,
    index: dict[str, int],
    issues: list[BoxIssue],
) -> Case | None:
    where, file = str(path), path.parent / image
    if not file.is_file():
        issues.append(BoxIssue(where, f"line {items[0][0]}", "image", f"no file {file}"))
        return None
    size = image_size(file)
    keys = ["x0", "y0", "z0", "x1", "y1", "z1"] if dim == 3 else ["x0", "y0", "x1", "y1"]
    boxes = []
    for line, row in items:
        if not (row.get("label") or "").strip():
            continue  # an image without boxes
        try:
            corners = [float(row[k]) for k in keys]
        except (KeyError, TypeError, ValueError):
            issues.append(
                BoxIssue(
                    where,
                    f"line {line}",
                    "x0..",
                    f"expected numbers in {keys}, found {[row.get(k) for k in keys]}",
                )
            )
            continue
        if any(corners[a + dim] <= corners[a] for a in range(dim)):
            issues.append(
                BoxIssue(where, f"line {line}", "x1/y1", f"expected x1 > x0 and y1 > y0, found {corners}")
            )
            continue
        if not _inside(corners, list(size[::-1] if dim == 2 else size)):
            issues.append(
                BoxIssue(
                    where, f"line {line}", "x0..", f"box {corners} outside the image of shape {list(size)}"
                )
            )
            continue
        boxes.append((corners, index[row["label"].strip()]))
    first = items[0][1]
    extra = {"size": size, "split": (first.get("split") or "").strip() or None}
    patient = (first.get("patient_id") or "").strip() or None
    return Case(
        Path(image).with_suffix("").as_posix(),
        (file,),
        patient_id=patient,
        boxes=_boxes(boxes, dim, size),
        extra=extra,
    )


def image_size(file: Path) -> tuple[int, ...]:
    """The spatial shape of an image file (array order), read from its header where the format allows."""
    from medsight.io.readers import is_image_file

    if file.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp") and is_image_file(file):
        from PIL import Image as PILImage

        with PILImage.open(file) as im:
            return (int(im.size[1]), int(im.size[0]))
    if file.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return tuple(int(s) for s in nib.load(str(file)).shape[:3])
    from medsight.io import read_image

    return tuple(read_image(file).shape)


# ------------------------------------------------------------------------------------- MONAI 3D boxes


def load_monai_boxes(path: Path, content: Any) -> BoxData:
    """MONAI's detection JSON (see the module doc): split lists of ``{"image", "box", "label"}``."""
    where = str(path)
    if not isinstance(content, dict) or not any(
        isinstance(content.get(k), list) for k in ("training", "validation", "test")
    ):
        raise DataError(
            f"{where}: expected COCO (images, annotations) or MONAI boxes (training: [...]), found neither"
        )
    mode, coords = content.get("box_mode", "cccwhd"), content.get("coordinates", "world")
    if mode not in ("cccwhd", "xyzxyz") or coords not in ("world", "voxel"):
        raise DataError(
            f"{where}: box_mode / coordinates: expected cccwhd|xyzxyz / world|voxel, found {mode} / {coords}"
        )
    issues: list[BoxIssue] = []
    labels = sorted(
        {
            int(v)
            for k in ("training", "validation", "test")
            for e in content.get(k) or []
            for v in e.get("label", [])
        }
    )
    index = {v: i for i, v in enumerate(labels)}
    names = _monai_class_names(where, content.get("classes", {}), labels)
    splits: dict[str, list[Case]] = {"train": []}
    for key, split in (("training", "train"), ("validation", "val"), ("test", "test")):
        for n, entry in enumerate(content.get(key) or []):
            case = _monai_case(path, f"{key}[{n}]", entry, mode, coords, index, issues)
            if case is not None:
                splits.setdefault(split, []).append(case)
    return BoxData(path.stem, 3, 1, names, splits, where, labels, issues=issues)


def _monai_class_names(where: str, classes: Any, labels: list[int]) -> list[str]:
    """The optional top-level ``"classes": {"<label>": "<name>"}`` of a MONAI box JSON, else class_<label>."""
    if not isinstance(classes, dict) or not all(isinstance(n, str) for n in classes.values()):
        raise DataError(f'{where}: classes: expected {{"<label>": "<name>", ...}}, found {classes!r}')
    return [classes.get(str(v), f"class_{v}") for v in labels]


def _monai_case(
    path: Path,
    item: str,
    entry: dict[str, Any],
    mode: str,
    coords: str,
    index: dict[int, int],
    issues: list[BoxIssue],
) -> Case | None:
    where = str(path)
    file = path.parent / str(entry.get("image", ""))
    if not entry.get("image") or not file.is_file():
        issues.append(BoxIssue(where, item, "image", f"no file {file}"))
        return None
    import nibabel as nib

    header = nib.load(str(file))
    size = tuple(int(s) for s in header.shape[:3])
    raw = np.asarray(entry.get("box", []), dtype=np.float64).reshape(-1, 6)
    labels = [int(v) for v in entry.get("label", [])]
    if len(labels) != len(raw):
        issues.append(
            BoxIssue(where, item, "label", f"expected one label per box ({len(raw)}), found {len(labels)}")
        )
        return None
    voxel = [_to_voxels(b, mode, coords, header.affine) for b in raw]
    boxes = []
    for k, (corners, lab) in enumerate(zip(voxel, labels, strict=True)):
        if any(corners[a + 3] <= corners[a] for a in range(3)):
            issues.append(
                BoxIssue(
                    where, f"{item}.box[{k}]", "box", f"expected positive sizes, found {raw[k].tolist()}"
                )
            )
        elif not _inside(corners, list(size)):
            issues.append(
                BoxIssue(
                    where,
                    f"{item}.box[{k}]",
                    "box",
                    f"box {np.round(corners, 2).tolist()} (voxels) outside the image {list(size)}",
                )
            )
        else:
            boxes.append((corners, index[lab]))
    return Case(file.name.split(".")[0], (file,), boxes=_boxes(boxes, 3, size), extra={"size": size})


def _to_voxels(box: np.ndarray, mode: str, coords: str, affine: np.ndarray) -> list[float]:
    """One MONAI box as voxel corners (x0, y0, z0, x1, y1, z1) along the array axes."""
    lo, hi = (box[:3] - box[3:] / 2, box[:3] + box[3:] / 2) if mode == "cccwhd" else (box[:3], box[3:])
    if coords == "voxel":
        return [*lo.tolist(), *hi.tolist()]
    inverse = np.linalg.inv(affine)
    a = (inverse @ np.append(lo, 1.0))[:3]
    b = (inverse @ np.append(hi, 1.0))[:3]
    return [*np.minimum(a, b).tolist(), *np.maximum(a, b).tolist()]


# --------------------------------------------------------------------------------- label maps -> boxes


def boxes_from_label_maps(source: str | Path, *, data_root: str | Path | None = None) -> BoxData:
    """A label-map dataset (anything ``load_dataset`` reads) with one box per connected component of
    each class, or of each region where the dataset defines regions (BraTS: whole tumour ...)."""
    from medsight.data.loader import load_dataset

    spec = load_dataset(source, data_root=data_root)
    groups = spec.regions or {n: [v] for n, v in spec.labels.items() if v != 0}
    names = list(groups)
    splits = {"train": [_label_case(c, spec, groups) for c in spec.train if c.label is not None]}
    test = [_label_case(c, spec, groups) for c in spec.test if c.label is not None]
    if test:
        splits["test"] = test
    dim = _dim_of(splits["train"])
    note = (
        f"boxes: one per connected component (>= {MIN_COMPONENT_VOXELS} voxels and >= "
        f"{MIN_RELATIVE_EXTENT:g} of the largest one's extent) of each of {names}"
    )
    return BoxData(
        f"{spec.name}-boxes",
        dim,
        spec.num_channels,
        names,
        splits,
        str(source),
        list(range(1, len(names) + 1)),
        notes=[note, spec.label_note] if spec.label_note else [note],
    )


def _dim_of(cases: list[Case]) -> int:
    return len(cases[0].extra["size"]) if cases else 2


def _label_case(case: Case, spec: Any, groups: dict[str, list[int]]) -> Case:
    from medsight.data.reading import read_label

    label = read_label(spec, case).array[0]
    items = []
    for k, values in enumerate(groups.values()):
        items += [(c, k) for c in component_boxes(np.isin(label, values))]
    size = tuple(int(s) for s in label.shape)
    return Case(
        case.case_id,
        case.images,
        patient_id=case.patient_id,
        boxes=_boxes(items, label.ndim, size),
        extra={"size": size},
    )


def component_boxes(
    mask: np.ndarray, min_voxels: int = MIN_COMPONENT_VOXELS, min_relative: float = MIN_RELATIVE_EXTENT
) -> list[list[float]]:
    """Corner boxes (medsight order) of the connected components of ``mask`` with >= ``min_voxels``
    voxels and a linear extent (voxels^(1/dim)) >= ``min_relative`` of the largest component's:
    specks beside a lesion (as in ISIC's masks) are label noise, not lesions."""
    from scipy import ndimage

    labelled, n = ndimage.label(mask)
    if n == 0:
        return []
    counts = np.bincount(labelled.ravel())
    floor = max(float(min_voxels), float(counts[1:].max()) * min_relative**mask.ndim)
    out = []
    for k, slices in enumerate(ndimage.find_objects(labelled), start=1):
        if slices is None or counts[k] < floor:
            continue
        lo = [float(s.start) for s in slices]
        hi = [float(s.stop) for s in slices]
        out.append(array_order(np.array([*lo, *hi]), mask.ndim)[0].tolist())
    return out


# ---------------------------------------------------------------------------------- registered names


def _register_datasets() -> None:
    """The box datasets of ``../shared/data`` in the one DATASETS registry (targets ``"boxes"``)."""
    from medsight.data.adapters import DATASETS, DatasetAdapter

    def covid(root: Path) -> BoxData:
        data = load_coco(root / "annotations.json", name="covid-cxr-lungs")
        data.notes.append("right and left lung boxes of COVID-19 chest X-rays; patient ids from metadata")
        return data

    def isic(root: Path) -> BoxData:
        data = boxes_from_label_maps(root, data_root=None)
        data.name = "isic2018-boxes"
        data.splits = {"train": data.splits["train"], "val": data.splits.get("test", [])}
        data.notes.append("ISIC 2018 lesion boxes from the masks; val is ISIC's validation set")
        return data

    def tbx11k(root: Path) -> BoxData:
        return load_coco(root / "annotations" / "TBX11K_train.json", name="tbx11k-samples")

    for name, folder, text, build in (
        (
            "covid-cxr-lungs",
            "covid-cxr-lungs",
            "COVID-19 chest X-rays, right / left lung boxes (COCO), 292 images",
            covid,
        ),
        ("isic2018-boxes", "isic2018", "ISIC 2018 lesion boxes from the masks: train 1600 / val 400", isic),
        (
            "tbx11k-samples",
            "cxr-samples/tbx11k",
            "3 TBX11K chest X-rays with TB boxes (COCO): a smoke set",
            tbx11k,
        ),
    ):
        DATASETS.add(name, DatasetAdapter(name, folder, text, build, targets="boxes"))


_register_datasets()
