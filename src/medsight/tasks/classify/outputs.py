"""What classification ``predict`` writes, for every backend: one CSV row per input (its path, a
probability column per class, the predicted label), resumable and shardable (see
:mod:`medsight.io.batch`).

Torch-free: the PyTorch predictor (:mod:`medsight.tasks.classify.predictor`) and the ONNX runtime
(:mod:`medsight.tasks.classify.runtime`) call :func:`classify_path` with their own model, so their
CSVs have the same columns, rows and formatting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.inputs import input_samples
from medsight.data.spec import Case
from medsight.io.batch import ResumableCsv, ShardLike, merge_parts, part_path, resolve_shard

log = logging.getLogger(__name__)
PREDICT_BATCH = 64

Probabilities = Callable[[list[Case]], np.ndarray]  # samples -> class probabilities (N, K)


def classify_path(
    source: Path,
    output: Path,
    plan: Any,
    make_predictor: Callable[[], Probabilities],
    *,
    overwrite: bool = False,
    shard: ShardLike = None,
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
    path = output if output.suffix.lower() == ".csv" else output / "predictions.csv"
    part = resolve_shard(shard)
    samples = input_samples(source)
    keys = [sample_key(s) for s in samples]
    mine = set(part.select(keys))
    header = ["input", *plan.class_names, "predicted"]
    table = ResumableCsv(part_path(path, part), header, overwrite=overwrite)
    todo = [s for s, k in zip(samples, keys, strict=True) if k in mine and not table.done(k)]
    log.info(
        "shard %s: %d of %d inputs, %d already done", part, len(mine), len(samples), len(mine) - len(todo)
    )
    if todo:
        _classify(todo, plan, make_predictor(), table)
    elif not table.path.exists():
        table.flush()  # a shard without inputs still marks itself complete
    if part.count == 1:
        return table.path
    return merge_parts(path, header, keys, part.count) or table.path


def _classify(todo: list[Case], plan: Any, probabilities: Probabilities, table: ResumableCsv) -> None:
    """Classify ``todo`` in batches of PREDICT_BATCH, adding each batch's rows to ``table``."""
    from medsight.metrics.classification import predict_labels

    names = list(plan.class_names)
    for start in range(0, len(todo), PREDICT_BATCH):
        chunk = todo[start : start + PREDICT_BATCH]
        probs = probabilities(chunk)
        labels = predict_labels(probs, plan.problem, plan.thresholds)
        table.add(
            [sample_key(s), *(f"{v:.6f}" for v in p), label_text(label, names)]
            for s, p, label in zip(chunk, probs, labels, strict=True)
        )


def sample_key(sample: Case) -> str:
    """The ``input`` column of a sample: its files joined with ``;``."""
    return ";".join(str(f) for f in sample.images)


def label_text(label: np.ndarray | int, names: list[str]) -> str:
    """A predicted label as written in the CSV: a class name, or ``;``-joined names (multi-label;
    ``-`` for none)."""
    return ";".join(predicted_names(label, names)) or "-"


def predicted_names(label: np.ndarray | int, names: list[str]) -> list[str]:
    """A predicted label as the list of class names it stands for (one, or any number: multi-label)."""
    arr = np.asarray(label)
    if arr.ndim == 0:
        return [names[int(arr)]]
    return [n for n, v in zip(names, arr, strict=True) if v]
