"""What ``predict`` reads and writes, for every backend: the cases under an input path, and the label
maps / classification CSV it writes (resumable and shardable, see :mod:`medsight.deploy.batch`).

Torch-free: the PyTorch predictors (``medsight.tasks.*.predictor``) and the ONNX runtime
(``medsight.deploy.runtime``) call the same functions with their own model, so their outputs have
the same names, formats and layout.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.classification import Sample, is_image_file
from medsight.deploy.batch import ResumableCsv, Shard, merge_parts, part_path, resolve_shard
from medsight.errors import DataError
from medsight.io import Image, write_image
from medsight.io.readers import detect_format, split_suffix

log = logging.getLogger(__name__)
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")
PREDICT_BATCH = 64

# ------------------------------------------------------------------------------------ segmentation


def group_inputs(folder: Path, in_channels: int) -> dict[str, list[Path]]:
    """Case id -> channel files under ``folder``: ``CASE_0000.ext``, ``CASE_0001.ext`` ... for
    multi-channel inputs (nnU-Net naming), one file per case otherwise; a DICOM series folder is one
    case. A file or folder given directly is one case."""
    if folder.is_file() or (folder.is_dir() and _is_dicom_folder(folder)):
        return {split_suffix(folder)[0]: [folder]}
    if not folder.is_dir():
        raise DataError(f"{folder}: input not found")
    groups: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or (p.is_file() and not _readable(p)):
            continue
        stem = split_suffix(p)[0]
        match = _CHANNEL.match(stem)
        case = (
            match.group("case")
            if (match and in_channels > 1) or (match and match.group("ch") == "0000")
            else stem
        )
        groups.setdefault(case, []).append(p)
    if not groups:
        raise DataError(f"{folder}: no readable image found")
    for case, files in groups.items():
        if len(files) > 1 and len(files) != in_channels:
            raise DataError(
                f"{folder}: case {case!r} has {len(files)} channel files, the model expects {in_channels}"
            )
    return groups


def _readable(path: Path) -> bool:
    try:
        detect_format(path)
    except DataError:
        return False
    return True


def _is_dicom_folder(folder: Path) -> bool:
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.lower().endswith(".zip")]
    return (
        bool(files)
        and all(detect_format(p) == "dicom" for p in files if _readable(p))
        and any(_readable(p) for p in files)
    )


def output_suffix(source: Path) -> str:
    """Label maps keep the input's format; DICOM and lossy JPEG inputs give NIfTI / PNG."""
    suffix = split_suffix(source)[1].lower()
    if source.is_dir() or detect_format(source) == "dicom":
        return ".nii.gz"
    if suffix in (".jpg", ".jpeg", ".gif", ".bmp"):
        return ".png"
    return suffix or ".nii.gz"


def stack_channels(images: list[Image]) -> Image:
    """One image per channel file -> one multi-channel image with the first file's geometry."""
    if len(images) == 1:
        return images[0]
    first = images[0]
    stacked = np.concatenate([im.array.astype(np.float32) for im in images], axis=0)
    return Image(stacked, first.spacing, first.origin, first.direction, first.meta)


def segment_path(
    input: Path,
    output: Path,
    in_channels: int,
    predict_files: Callable[[list[Path], str], Image],
    *,
    overwrite: bool = False,
    shard: str | Shard | tuple[int, int] | None = None,
) -> list[Path]:
    """Predict every case under ``input`` with ``predict_files(files, case_id)``; write
    ``output/<case><ext>`` (a file when ``output`` has an image suffix and ``input`` is one case)
    and return this shard's output paths.

    Resumable: a case whose output exists is skipped (``overwrite=True`` predicts it again and
    replaces the file); each output is written atomically, so a killed run leaves only complete
    files. With ``shard`` (``"I/N"``, or torchrun's RANK / WORLD_SIZE) this process predicts every
    N-th case by sorted case id."""
    groups = group_inputs(input, in_channels)
    single = len(groups) == 1 and split_suffix(output)[1] != ""
    part = resolve_shard(shard)
    outputs = []
    skipped = 0
    for case_id in part.select(groups):
        files = groups[case_id]
        target = output if single else output / f"{case_id}{output_suffix(files[0])}"
        outputs.append(target)
        if target.exists() and not overwrite:
            skipped += 1
            continue
        write_image(predict_files(files, case_id), target)
    log.info("shard %s: %d of %d cases, %d already done", part, len(outputs), len(groups), skipped)
    return outputs


# ---------------------------------------------------------------------------------- classification


def input_samples(source: Path) -> list[Sample]:
    """The samples to classify under ``source`` (labels unknown: -1)."""
    if source.is_file() and source.suffix.lower() == ".csv":
        from medsight.data.manifest import image_columns, read_rows

        header, rows = read_rows(source)
        cols = image_columns(header, str(source))
        return [Sample(r[cols[0]], -1, images=tuple(source.parent / r[c] for c in cols)) for r in rows]
    if source.is_file():
        return [Sample(str(source), -1, images=(source,))]
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if is_image_file(p))
        if not files:
            raise DataError(
                f"{source}: no image files found (looked for PNG, JPG, TIF, NIfTI, NRRD, MHA ...)"
            )
        return [Sample(str(p), -1, images=(p,)) for p in files]
    raise DataError(f"{source}: input not found (expected an image, a folder of images or a CSV manifest)")


def classify_path(
    source: Path,
    output: Path,
    plan: Any,
    make_predictor: Callable[[], Callable[[list[Sample]], np.ndarray]],
    *,
    overwrite: bool = False,
    shard: str | Shard | tuple[int, int] | None = None,
) -> Path:
    """Classify every input under ``source``; write ``output`` (a .csv file, or a folder that gets
    predictions.csv): columns ``input``, one probability per class of ``plan.class_names``,
    ``predicted`` (thresholds ``plan.thresholds`` for ``plan.problem``).

    ``make_predictor()`` is called only when some input is left to classify; it returns a function
    from samples to probabilities ``(N, K)``. Resumable: the CSV is rewritten atomically after each
    batch and a rerun skips the inputs that already have a row (``overwrite=True`` starts afresh).
    With ``shard`` (``"I/N"``, or torchrun's RANK / WORLD_SIZE) this process classifies every N-th
    input by sorted path and writes ``<stem>.part-I-of-N.csv``; the shard that completes the last
    part merges the parts into ``output`` (in input order) and returns it, the others their part.
    """
    from medsight.metrics.classification import predict_labels

    path = output if output.suffix.lower() == ".csv" else output / "predictions.csv"
    part = resolve_shard(shard)
    samples = input_samples(source)
    keys = [sample_key(s) for s in samples]
    mine = set(part.select(keys))
    names = list(plan.class_names)
    header = ["input", *names, "predicted"]
    table = ResumableCsv(part_path(path, part), header, overwrite=overwrite)
    todo = [s for s, k in zip(samples, keys, strict=True) if k in mine and not table.done(k)]
    log.info(
        "shard %s: %d of %d inputs, %d already done", part, len(mine), len(samples), len(mine) - len(todo)
    )
    if todo:
        probabilities = make_predictor()
        for start in range(0, len(todo), PREDICT_BATCH):
            chunk = todo[start : start + PREDICT_BATCH]
            probs = probabilities(chunk)
            labels = predict_labels(probs, plan.problem, plan.thresholds)
            table.add(
                [sample_key(s), *(f"{v:.6f}" for v in p), label_text(label, names)]
                for s, p, label in zip(chunk, probs, labels, strict=True)
            )
    elif not table.path.exists():
        table.flush()  # a shard without inputs still marks itself complete
    if part.count == 1:
        return table.path
    return merge_parts(path, header, keys, part.count) or table.path


def sample_key(sample: Sample) -> str:
    """The ``input`` column of a sample: its files joined with ``;``."""
    return ";".join(str(f) for f in sample.images)


def label_text(label: np.ndarray | int, names: list[str]) -> str:
    """A predicted label as written in the CSV: a class name, or ``;``-joined names (multi-label)."""
    arr = np.asarray(label)
    if arr.ndim == 0:
        return names[int(arr)]
    return ";".join(n for n, v in zip(names, arr, strict=True) if v) or "-"
