"""Classify images with a trained run: one CSV row per input (its path, a probability column per
class named after the class, the predicted label).

Inputs: one image file, a folder of images (searched recursively, sorted), or a CSV manifest with an
``image`` column (or ``image_0000``, ``image_0001`` ... one file per modality), paths relative to it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from medsight.data.classification import Sample, is_image_file
from medsight.errors import DataError
from medsight.runs import open_run
from medsight.utils import atomic_write_text

PREDICT_BATCH = 64


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


def predict_path(
    run_dir: str | Path, source: str | Path, output: str | Path, *, tta: bool | None = None
) -> Path:
    """Classify every input under ``source``; write ``output`` (a .csv file, or a folder that gets
    predictions.csv) atomically and return its path."""
    from medsight.metrics.classification import predict_labels
    from medsight.tasks.classify.pipeline import load_model, predict_probabilities, stack_inputs

    run = open_run(run_dir)
    task, model = load_model(run)
    if tta is not None:
        task.plan = task.plan.model_copy(update={"tta": tta})
    samples = input_samples(Path(source))
    names = task.plan.class_names
    lines = io.StringIO()
    writer = csv.writer(lines)
    writer.writerow(["input", *names, "predicted"])
    for start in range(0, len(samples), PREDICT_BATCH):
        chunk = samples[start : start + PREDICT_BATCH]
        probs = predict_probabilities(task, model, stack_inputs(chunk, task.plan))
        labels = predict_labels(probs, task.plan.problem, task.plan.thresholds)
        for sample, p, label in zip(chunk, probs, labels, strict=True):
            writer.writerow(
                [";".join(str(f) for f in sample.images), *(f"{v:.6f}" for v in p), _label_text(label, names)]
            )
    out = Path(output)
    path = out if out.suffix.lower() == ".csv" else out / "predictions.csv"
    return atomic_write_text(path, lines.getvalue())


def _label_text(label: np.ndarray | int, names: list[str]) -> str:
    arr = np.asarray(label)
    if arr.ndim == 0:
        return names[int(arr)]
    return ";".join(n for n, v in zip(names, arr, strict=True) if v) or "-"
