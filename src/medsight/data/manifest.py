"""CSV manifests: one row per case, paths relative to the CSV file.

Columns (header names, case-insensitive):

* ``image`` — one file per case (an RGB picture or a 4D NIfTI counts as one file), or
  ``image_0000``, ``image_0001``, ... — one file per channel;
* ``label`` (optional) — the label map; ``roi`` (optional) — a mask restricting evaluation;
* ``case_id`` (optional, default: the image file name without its ending and ``_0000``);
* ``patient_id`` (optional; folds keep a patient's cases together);
* ``split`` (optional) — ``train`` (default) or ``test``.

Class values are read from the label files: the values found are renumbered 0..n-1 and named
``class_1``, ``class_2``, ...; channel names come from the first image (R, G, B for colour pictures).
"""

from __future__ import annotations

import csv
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from medsight.data.labels import make_consecutive
from medsight.data.reading import label_array, label_values
from medsight.data.spec import Case, DatasetSpec
from medsight.errors import DataError
from medsight.io import read_image
from medsight.io.readers import split_suffix
from medsight.utils import cpu_count

_IMAGE_COL = re.compile(r"^image_(\d{4})$")


def image_columns(header: list[str], where: str) -> list[str]:
    if "image" in header:
        return ["image"]
    cols = sorted((h for h in header if _IMAGE_COL.match(h)), key=lambda h: int(h[6:]))
    if not cols:
        raise DataError(
            f"{where}: needs an 'image' column or 'image_0000', 'image_0001', ... columns; found {header}"
        )
    idx = [int(c[6:]) for c in cols]
    if idx != list(range(len(idx))):
        raise DataError(
            f"{where}: channel columns must be image_0000..image_{len(idx) - 1:04d}, found {cols}"
        )
    return cols


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: the manifest has no rows")
    return header, rows


def _case_from_row(row: dict[str, str], n: int, cols: list[str], base: Path, where: str) -> tuple[Case, str]:
    missing = [c for c in cols if not row.get(c)]
    if missing:
        raise DataError(f"{where} row {n}: empty {', '.join(missing)}")
    images = tuple((base / row[c]) for c in cols)
    stem, _ = split_suffix(images[0].name)
    case_id = row.get("case_id") or (stem[:-5] if re.search(r"_\d{4}$", stem) else stem)
    split = (row.get("split") or "train").lower()
    if split not in ("train", "test"):
        raise DataError(
            f"{where} row {n} ({case_id}): split must be 'train' or 'test', found {row['split']!r}"
        )
    label = base / row["label"] if row.get("label") else None
    roi = base / row["roi"] if row.get("roi") else None
    return Case(case_id, images, label=label, patient_id=row.get("patient_id") or None, roi=roi), split


def _unique_values(paths: list[Path]) -> list[int]:
    def one(p: Path) -> set[int]:
        return set(label_values(label_array(read_image(p).array, str(p), None)))

    with ThreadPoolExecutor(max_workers=min(16, 2 * cpu_count())) as pool:
        found = set().union(*pool.map(one, paths)) if paths else set()
    return sorted(found | {0})


def _channel_names(first: Path, n_cols: int) -> dict[int, str]:
    if n_cols > 1:
        return {i: f"channel_{i}" for i in range(n_cols)}
    img = read_image(first)
    if img.ndim == 2 and img.channels == 3:
        return {0: "R", 1: "G", 2: "B"}
    return {i: ("image" if img.channels == 1 else f"channel_{i}") for i in range(img.channels)}


def load_manifest(path: str | Path) -> DatasetSpec:
    """Read a CSV manifest (see the module doc) into a :class:`DatasetSpec`.

    Raises:
        DataError: missing columns, empty cells, duplicate case ids, an unknown split, or an
            unreadable first image / label file.
    """
    path = Path(path)
    header, rows = read_rows(path)
    cols = image_columns(header, str(path))
    train: list[Case] = []
    test: list[Case] = []
    seen: dict[str, int] = {}
    for n, row in enumerate(rows, start=2):  # row 1 is the header
        case, split = _case_from_row(row, n, cols, path.parent, str(path))
        if case.case_id in seen:
            raise DataError(
                f"{path} row {n}: case id {case.case_id!r} already used on row {seen[case.case_id]}"
            )
        seen[case.case_id] = n
        (train if split == "train" else test).append(case)
    label_paths = [c.label for c in train + test if c.label is not None and c.label.is_file()]
    values = _unique_values(label_paths)
    labels = {"background": 0, **{f"class_{i}": v for i, v in enumerate(values[1:], start=1)}}
    labels, _, label_map = make_consecutive(labels)
    first = (train or test)[0].images[0]
    _, ending = split_suffix(first.name)
    return DatasetSpec(
        name=split_suffix(path.name)[0],
        root=path.parent,
        train=train,
        test=test,
        channel_names=_channel_names(first, len(cols)),
        labels=labels,
        file_ending=ending,
        label_map=label_map,
        description=f"CSV manifest {path.name}",
        label_note="class values inferred from the label files",
    )
