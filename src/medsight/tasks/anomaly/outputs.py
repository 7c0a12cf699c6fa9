"""What anomaly ``predict`` writes, for every backend: ``scores.csv`` (one row per input: its path, its
anomaly score, whether it is above the run's threshold, its map file) and one anomaly map per input,
``maps/<name>.nii.gz`` (float32), in the input's own grid and geometry (spacing, origin, direction).

Torch-free: the PyTorch predictor and the ONNX runtime call :func:`anomaly_path` with their own scorer,
so both write the same files. Resumable and shardable as classification CSVs are
(:mod:`medsight.io.batch`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.inputs import input_samples, stack_channels
from medsight.data.spec import Case
from medsight.errors import DataError
from medsight.io import Image, read_image, write_image
from medsight.io.batch import ResumableCsv, ShardLike, merge_parts, part_path, resolve_shard
from medsight.io.readers import split_suffix

log = logging.getLogger(__name__)
PREDICT_BATCH = 64
HEADER = ["input", "score", "anomalous", "map"]
MAP_SUFFIX = ".nii.gz"

Scores = Callable[
    [list[np.ndarray]], tuple[np.ndarray, np.ndarray]
]  # images -> scores (N,), maps (N, 1, *grid)


def input_array(image: np.ndarray, plan: Any) -> np.ndarray:
    """``(C, *spatial)`` raw intensities -> the plan's normalised ``(C, *input_size)`` float32 array."""
    from medsight.transforms.segmentation import normalize, resize

    if image.shape[0] != plan.in_channels or image.ndim - 1 != plan.dim:
        raise DataError(
            f"image of shape {tuple(image.shape)} (channels first): the model expects "
            f"{plan.in_channels} channel(s) of a {plan.dim}D image"
        )
    normalised = normalize(image, plan.normalization)
    return np.ascontiguousarray(resize(normalised, tuple(plan.input_size)), dtype=np.float32)


def split_output(out: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The exported scorer's output ``(B, 1 + prod(size))`` -> ``(scores (B,), maps (B, 1, *size))``."""
    return out[:, 0], out[:, 1:].reshape(out.shape[0], 1, *size)


def map_in_geometry(grid_map: np.ndarray, like: Image) -> Image:
    """A ``(1, *grid)`` map resized (linearly) to ``like``'s grid, with ``like``'s geometry."""
    from medsight.transforms.segmentation import resize

    arr = np.asarray(resize(grid_map.astype(np.float32), tuple(like.shape)), dtype=np.float32)
    return Image(arr, like.spacing, like.origin, like.direction.copy())


def anomaly_path(
    source: Path,
    output: Path,
    plan: Any,
    make_scorer: Callable[[], Scores],
    *,
    overwrite: bool = False,
    shard: ShardLike = None,
) -> list[Path]:
    """Score every input under ``source`` (a file, a folder of images or a CSV manifest); write
    ``output/scores.csv`` and ``output/maps/``; return the CSV's path (this shard's part when sharded).

    ``make_scorer()`` is called only when some input is left; it maps raw images to scores and maps on
    the plan's grid. A rerun skips inputs that have a row (``overwrite=True`` starts afresh)."""
    if output.suffix.lower() == ".csv":
        raise DataError(f"--output: {output}: expected a folder (it gets scores.csv and maps/)")
    path = output / "scores.csv"
    part = resolve_shard(shard)
    samples = input_samples(source)
    keys = [";".join(str(f) for f in s.images) for s in samples]
    names = map_names(samples)
    mine = set(part.select(keys))
    table = ResumableCsv(part_path(path, part), HEADER, overwrite=overwrite)
    todo = [
        (s, k, n) for s, k, n in zip(samples, keys, names, strict=True) if k in mine and not table.done(k)
    ]
    log.info(
        "shard %s: %d of %d inputs, %d already done", part, len(mine), len(samples), len(mine) - len(todo)
    )
    if todo:
        _score(todo, plan, make_scorer(), table, output)
    elif not table.path.exists():
        table.flush()
    if part.count == 1:
        return [table.path]
    return [merge_parts(path, HEADER, keys, part.count) or table.path]


def map_names(samples: list[Case]) -> list[str]:
    """A unique map file name per sample: its first file's stem (its relative path where stems repeat)."""
    stems = [split_suffix(Path(s.images[0]))[0] for s in samples]
    if len(set(stems)) == len(stems):
        return [f"{s}{MAP_SUFFIX}" for s in stems]
    return [f"{'_'.join(Path(s.images[0]).with_suffix('').parts[-3:])}{MAP_SUFFIX}" for s in samples]


def _score(
    todo: list[tuple[Case, str, str]], plan: Any, scorer: Scores, table: ResumableCsv, out: Path
) -> None:
    for start in range(0, len(todo), PREDICT_BATCH):
        chunk = todo[start : start + PREDICT_BATCH]
        images = [stack_channels([read_image(p) for p in case.images]) for case, _, _ in chunk]
        scores, maps = scorer([im.array.astype(np.float32) for im in images])
        rows = []
        for (_, key, name), image, score, grid_map in zip(chunk, images, scores, maps, strict=True):
            write_image(map_in_geometry(grid_map, image), out / "maps" / name)
            rows.append([key, f"{float(score):.6g}", _flag(float(score), plan.threshold), f"maps/{name}"])
        table.add(rows)


def _flag(score: float, threshold: float | None) -> str:
    return "-" if threshold is None else str(int(score > threshold))
