"""Segmentation end to end: plan -> preprocess once -> train -> evaluate -> report; and inference."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from medsight.data.reading import CaseData, read_case
from medsight.data.spec import Case, DatasetSpec
from medsight.engine.contract import Prediction
from medsight.errors import ConfigError, DataError
from medsight.metrics import MetricTable
from medsight.runs import Run
from medsight.tasks.contract import EvaluateRequest
from medsight.tasks.segment.planning import Plan
from medsight.tasks.segment.sampler import default_workers, patch_loader
from medsight.tasks.segment.task import SegmentTask
from medsight.transforms.segmentation import Preprocessed, preprocess
from medsight.utils import cpu_count

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_VAL_CASES = 50
LCC_MIN_GAIN = 0.002  # mean Dice gain that switches largest-component post-processing on
N_OVERLAYS = 3


def parallel_map(fn: Callable[[Case], T], items: Iterable[Case]) -> list[T]:
    """Map over cases with a thread pool sized from the core count (I/O and numpy release the GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, cpu_count())) as pool:
        return list(pool.map(fn, items))


def preprocess_cases(spec: DatasetSpec, cases: list[Case], plan: Plan) -> list[Preprocessed]:
    """Read and preprocess cases once; training never reads a file again."""

    def one(case: Case) -> Preprocessed:
        data = read_case(spec, case)
        return preprocess(data.image, data.label, plan, case.case_id)

    return parallel_map(one, cases)


def fit(run: Run, spec: DatasetSpec, train_cases: list[Case], val_cases: list[Case]) -> SegmentTask:
    """Train the run's model on ``train_cases``, validating on ``val_cases``; checkpoints in the run."""
    from medsight.engine import Trainer
    from medsight.engine.distributed import dist_info

    config, plan = run.config, run.plan
    task = SegmentTask(plan, config.train)
    trainer = Trainer(task, config.train, run.path)
    model = task.build_model()
    log.info("preprocessing %d training and %d validation cases", len(train_cases), len(val_cases))
    train_pre = preprocess_cases(spec, train_cases, plan)
    val_pre = preprocess_cases(spec, val_cases[:MAX_VAL_CASES], plan) if val_cases else None
    seed = config.train.seed + 1000 * dist_info().rank  # each DDP rank draws its own patches
    loader = patch_loader(train_pre, plan, seed, default_workers(config.data.num_workers))
    trainer.fit(model, loader, val_pre)
    return task


def load_model(run: Run, device: str = "auto") -> tuple[SegmentTask, torch.nn.Module]:
    """The run's task and its best (else last) weights, in eval mode on ``device`` (auto: CUDA if any)."""
    from medsight.engine import load_model_weights, resolve_device

    task = SegmentTask(run.plan, run.config.train)
    model = task.build_model()
    load_model_weights(model, run.checkpoint)
    return task, model.to(resolve_device(device)).eval()


def predict_cases(
    task: SegmentTask,
    model: torch.nn.Module,
    spec: DatasetSpec,
    cases: list[Case],
    on_case: Callable[[Prediction, CaseData], None],
) -> None:
    """Predict each case in its original geometry and hand (prediction, case data) to ``on_case``."""
    with torch.inference_mode():
        for case in cases:
            data = read_case(spec, case)
            on_case(task.predict(model, data), data)


def evaluate_cases(
    run: Run, spec: DatasetSpec, cases: list[Case], split: str, choose_postprocessing: bool = False
) -> MetricTable:
    """Predict and score ``cases``: per-case rows (one per class) and overlays of the best and worst
    cases in eval/<split>/overlays/; the caller writes the table (:meth:`MetricTable.write`).

    With ``choose_postprocessing``, largest-connected-component post-processing is switched on in
    the plan when it raises the mean Dice by at least LCC_MIN_GAIN on these cases.
    """
    from medsight.transforms.segmentation import largest_components

    labelled = [c for c in cases if c.label is not None]
    if not labelled:
        raise DataError(f"split {split!r} of {spec.name}: no case has a reference label to evaluate against")
    task, model = load_model(run)
    if choose_postprocessing:  # score without it first; otherwise the run's own choice applies
        task.plan = task.plan.model_copy(update={"postprocess_lcc": False})
    rows, rows_lcc, overlays = [], [], []

    def on_case(pred: Prediction, data: CaseData) -> None:
        rows.extend(task.case_rows(pred, data))
        if choose_postprocessing:
            cleaned = pred.output.with_array(largest_components(pred.output.array, run.plan.label_values[1:]))
            rows_lcc.extend(task.case_rows(Prediction(pred.case_id, cleaned, pred.probabilities), data))
        overlays.append(_overlay_candidate(pred, data))

    predict_cases(task, model, spec, labelled, on_case)
    if choose_postprocessing:
        before, after = _mean_dice(rows), _mean_dice(rows_lcc)
        use = after >= before + LCC_MIN_GAIN
        reason = f"validation Dice {before:.4f} without, {after:.4f} with the largest component only"
        run.save_plan(
            run.plan.model_copy(
                update={"postprocess_lcc": use, "reasons": {**run.plan.reasons, "postprocess_lcc": reason}}
            )
        )
        rows = rows_lcc if use else rows
    _write_overlays(overlays, rows, run.eval_dir(split) / "overlays")
    return MetricTable(rows=rows, keys=["case_id", "class"], info={"split": split, "cases": len(labelled)})


def evaluate_request(run: Run, request: EvaluateRequest) -> MetricTable:
    """The cases ``request`` names (a split of the run's data, or images paired with reference files)
    predicted and scored."""
    from medsight.data import load_dataset
    from medsight.runs import split_cases

    if request.input is not None or request.reference is not None:
        if request.input is None or request.reference is None:
            raise ConfigError("evaluate: --input and --reference go together")
        spec = folder_spec(run, request.input, request.reference)
        return evaluate_cases(run, spec, spec.train, request.split)
    spec = load_dataset(run.config.data.dataset)
    return evaluate_cases(run, spec, split_cases(run, spec, request.split), request.split)


def folder_spec(run: Run, images: Path, labels: Path) -> DatasetSpec:
    """A dataset of the images under ``images`` paired by file name with labels under ``labels``."""
    from medsight.data.inputs import group_inputs
    from medsight.io.readers import split_suffix

    groups = group_inputs(images, run.plan.in_channels)
    label_files = {split_suffix(p)[0]: p for p in sorted(labels.iterdir()) if p.is_file()}
    cases = []
    for case_id, files in groups.items():
        if case_id not in label_files:
            raise DataError(f"{labels}: no label file for case {case_id!r} (looked for {case_id}.*)")
        cases.append(Case(case_id=case_id, images=tuple(files), label=label_files[case_id]))
    return DatasetSpec(
        name=images.name,
        root=images,
        train=cases,
        test=[],
        channel_names={i: f"channel_{i}" for i in range(run.plan.in_channels)},
        labels=run.plan.label_names(),
        file_ending="",
    )


def _mean_dice(rows: list[dict[str, Any]]) -> float:
    vals = [float(r["dice"]) for r in rows if np.isfinite(float(r["dice"]))]
    return float(np.mean(vals)) if vals else float("nan")


def _overlay_candidate(pred: Prediction, data: CaseData) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """A 2D view (image, reference, prediction) of a case: the slice with most foreground in 3D."""
    from medsight.report.plots import middle_slice

    image, ref, out = data.image.array, data.label.array[0], pred.output.array[0]
    if image.ndim == 4:
        k = middle_slice((ref > 0) | (out > 0), axis=-1)
        return pred.case_id, image[0, ..., k], ref[..., k], out[..., k]
    view = np.moveaxis(image, 0, -1) if image.shape[0] == 3 else image[0]
    return pred.case_id, view, ref, out


def _write_overlays(candidates: list[tuple], rows: list[dict[str, Any]], folder: Path) -> None:
    from medsight.report.plots import save_overlay

    dice: dict[str, list[float]] = {}
    for r in rows:
        dice.setdefault(str(r["case_id"]), []).append(float(r["dice"]))
    score = {k: float(np.nanmean(v)) if np.isfinite(v).any() else 0.0 for k, v in dice.items()}
    ranked = sorted(candidates, key=lambda c: score.get(c[0], 0.0))
    picks = [("worst", c) for c in ranked[:N_OVERLAYS]]
    picks += [("best", c) for c in ranked[::-1][:N_OVERLAYS] if c not in ranked[:N_OVERLAYS]]
    for kind, (case_id, image, ref, out) in picks:
        save_overlay(
            image,
            ref,
            out,
            folder / f"{kind}-{case_id}.png",
            title=f"{kind}: {case_id} (Dice {score.get(case_id, float('nan')):.3f})",
        )


def train_segmentation(run: Run, evaluate: bool = True) -> None:
    """Train one fold (or all cases) of the run's dataset; then (``evaluate``) score the validation cases
    and choose post-processing. Under DDP only rank 0 evaluates."""
    from medsight.data import load_dataset
    from medsight.runs import fold_ids

    spec = load_dataset(run.config.data.dataset)
    by_id = {c.case_id: c for c in spec.train}
    train_ids, val_ids = fold_ids(run, spec.train)
    fit(run, spec, [by_id[i] for i in train_ids], [by_id[i] for i in val_ids])
    if val_ids and evaluate:
        table = evaluate_cases(run, spec, [by_id[i] for i in val_ids], "val", choose_postprocessing=True)
        table.write(run.eval_dir("val"))
