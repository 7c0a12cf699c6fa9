"""What detection ``predict`` writes, for every backend (torch-free), into the output folder:

* ``detections.csv``: one row per box, ``file, class, score, x0, y0, x1, y1`` (3D: then ``z0, z1``),
  corners in pixels / voxels of the input image (2D: x = column, y = row; 3D: x, y, z along the array
  axes), best score first per file;
* ``detections.json``: the same boxes in COCO's results format (``image_id``, ``category_id``, ``bbox``
  [x, y, w, h] (3D: [x, y, z, w, h, d]), ``score``) plus ``file_name``; ``image_id`` is the input's
  1-based position in sorted order;
* ``images.csv``: one row per input (its size and number of boxes): what a rerun resumes from;
* ``overlays/<name>.png`` for 2D inputs: the image with its boxes (red, scored).

The PyTorch predictor and the ONNX runtime call :func:`detect_path` with their own network, so both
write the same files. Sharding (``"I/N"``) writes ``*.part-I-of-N`` files; the shard completing the
last merges them.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.inputs import input_samples
from medsight.data.spec import Case
from medsight.io.batch import ResumableCsv, ShardLike, merge_parts, part_path, resolve_shard
from medsight.utils import atomic_write, atomic_write_text

log = logging.getLogger(__name__)
PREDICT_BATCH = 16
OVERLAY_SCORE = 0.3  # overlay PNGs draw boxes from this score (the CSV and JSON keep every box)

Detector = Callable[[list[Case]], list[tuple[np.ndarray, dict[str, np.ndarray]]]]  # -> (image, detections)


CSV_ORDER = {2: [0, 1, 2, 3], 3: [0, 1, 3, 4, 2, 5]}  # corners (x0, y0[, z0], x1, y1[, z1]) -> CSV columns


def box_header(dim: int) -> list[str]:
    """detections.csv's columns: ``file, class, score, x0, y0, x1, y1`` (3D: then ``z0, z1``)."""
    corners = ["x0", "y0", "x1", "y1", "z0", "z1"] if dim == 3 else ["x0", "y0", "x1", "y1"]
    return ["file", "class", "score", *corners]


def corners_of_row(row: list[str], dim: int) -> list[float]:
    """A detections.csv row's box as corners (x0, y0[, z0], x1, y1[, z1])."""
    values = [float(v) for v in row[3:]]
    out = [0.0] * (2 * dim)
    for column, corner in enumerate(CSV_ORDER[dim]):
        out[corner] = values[column]
    return out


def detect_path(
    source: Path,
    output: Path,
    plan: Any,
    make_detector: Callable[[], Detector],
    *,
    overwrite: bool = False,
    shard: ShardLike = None,
) -> list[Path]:
    """Detect boxes in every input under ``source``; write the files above into the folder ``output``.

    ``make_detector()`` is called only when some input is left; it returns a function from cases to
    (image array, detections in image pixels, medsight order) per case. Resumable: a rerun skips the
    inputs already in images.csv (``overwrite=True`` starts afresh).
    """
    part = resolve_shard(shard)
    cases = input_samples(source)
    keys = [";".join(str(f) for f in c.images) for c in cases]
    ids = {k: i + 1 for i, k in enumerate(keys)}
    mine = set(part.select(keys))
    images = ResumableCsv(
        part_path(output / "images.csv", part), ["input", "image_id", "size", "boxes"], overwrite=overwrite
    )
    store = _BoxStore(part_path(output / "detections.csv", part), plan.dim, overwrite)
    todo = [(c, k) for c, k in zip(cases, keys, strict=True) if k in mine and not images.done(k)]
    log.info("shard %s: %d of %d inputs, %d already done", part, len(mine), len(cases), len(mine) - len(todo))
    detector = make_detector() if todo else None
    for start in range(0, len(todo), PREDICT_BATCH):
        chunk = todo[start : start + PREDICT_BATCH]
        found = detector([c for c, _ in chunk]) if detector is not None else []
        for (_, key), (image, det) in zip(chunk, found, strict=True):
            store.add(key, det, plan.class_names)
            if image.ndim == 3:
                _write_overlay(output / "overlays", key, image, det, plan.class_names)
        store.flush()
        images.add(
            [key, str(ids[key]), "x".join(str(s) for s in image.shape[1:]), str(len(det["scores"]))]
            for (_, key), (image, det) in zip(chunk, found, strict=True)
        )
    if not todo and not images.path.exists():
        images.flush()
        store.flush()
    written = _finish(output, part, keys, ids, plan)
    return written


class _BoxStore:
    """detections.csv rows of this shard, kept in memory and rewritten atomically after each batch."""

    def __init__(self, path: Path, dim: int, overwrite: bool) -> None:
        self.path, self.header = path, box_header(dim)
        self.rows: dict[str, list[list[str]]] = {}
        if path.is_file() and not overwrite:
            for row in _read_rows(path, self.header):
                self.rows.setdefault(row[0], []).append(row)

    def add(self, key: str, det: dict[str, np.ndarray], names: list[str]) -> None:
        self.rows[key] = [
            [
                key,
                names[int(k)],
                f"{float(s):.6f}",
                *(f"{float(box[c]):.3f}" for c in CSV_ORDER[len(box) // 2]),
            ]
            for box, s, k in zip(det["boxes"], det["scores"], det["labels"], strict=True)
        ]

    def flush(self) -> None:
        from medsight.io.batch import csv_text

        atomic_write_text(self.path, csv_text(self.header, [r for rows in self.rows.values() for r in rows]))


def _read_rows(path: Path, header: list[str]) -> list[list[str]]:
    from medsight.errors import DataError

    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        found = next(reader, None)
        if found is not None and found != header:
            raise DataError(
                f"{path}: existing detections have columns {found}, this model writes {header}; "
                "pass --overwrite"
            )
        return [r for r in reader if r]


def _finish(output: Path, part: Any, keys: list[str], ids: dict[str, int], plan: Any) -> list[Path]:
    """The merged files once every shard is done (a single shard: already complete)."""
    header = ["input", "image_id", "size", "boxes"]
    if part.count > 1 and merge_parts(output / "images.csv", header, keys, part.count) is None:
        return [part_path(output / "images.csv", part), part_path(output / "detections.csv", part)]
    rows: list[list[str]] = []
    for i in range(part.count):
        from medsight.io.batch import Shard

        rows += _read_rows(part_path(output / "detections.csv", Shard(i, part.count)), box_header(plan.dim))
    order = {k: n for n, k in enumerate(keys)}
    rows.sort(key=lambda r: (order.get(r[0], len(order)), -float(r[2])))
    from medsight.io.batch import csv_text

    csv_path = atomic_write_text(output / "detections.csv", csv_text(box_header(plan.dim), rows))
    json_path = atomic_write_text(
        output / "detections.json", json.dumps(coco_results(rows, ids, plan), indent=1)
    )
    return [csv_path, json_path, output / "images.csv"]


def coco_results(rows: list[list[str]], ids: dict[str, int], plan: Any) -> list[dict[str, Any]]:
    """detections.csv rows in COCO's results format (``bbox`` = corner + size)."""
    d = plan.dim
    category = {
        n: (plan.category_ids[k] if k < len(plan.category_ids) else k + 1)
        for k, n in enumerate(plan.class_names)
    }
    out = []
    for row in rows:
        corners = corners_of_row(row, d)
        bbox = corners[:d] + [corners[d + a] - corners[a] for a in range(d)]
        out.append(
            {
                "image_id": ids.get(row[0], 0),
                "file_name": row[0],
                "category_id": category[row[1]],
                "bbox": [round(v, 3) for v in bbox],
                "score": float(row[2]),
            }
        )
    return out


def _write_overlay(
    folder: Path, key: str, image: np.ndarray, det: dict[str, np.ndarray], names: list[str]
) -> None:
    from medsight.tasks.detect.drawing import overlay, png_bytes

    keep = det["scores"] >= OVERLAY_SCORE
    labels = [names[int(k)] for k in det["labels"][keep]]
    rgb = overlay(image, None, det["boxes"][keep], det["scores"][keep].tolist(), labels)
    name = Path(key.split(";")[0]).name.split(".")[0]
    data = png_bytes(rgb)
    atomic_write(folder / f"{name}.png", lambda tmp: tmp.write_bytes(data))
