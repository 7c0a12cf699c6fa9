"""Anomaly detection end to end: data -> normal training cases -> train -> threshold on validation ->
evaluate (per-case CSV, image AUROC / AP with CIs, pixel metrics where masks exist, score histogram and
the most anomalous cases' maps) -> report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from medsight.data.classification import ClassificationData, load_classification
from medsight.data.spec import Case
from medsight.errors import ConfigError, DataError
from medsight.metrics.table import MetricTable
from medsight.runs import Run
from medsight.tasks.anomaly.planning import AnomalyPlan
from medsight.tasks.anomaly.scoring import scores_and_maps
from medsight.tasks.anomaly.task import AnomalyTask, stack_inputs
from medsight.tasks.contract import EvaluateRequest

log = logging.getLogger(__name__)
EVAL_BATCH = 128
N_SHOWN = 4  # most anomalous cases drawn in the report


def load_run_data(run: Run) -> ClassificationData:
    return load_classification(run.config.data.dataset)


def normal_index(plan: AnomalyPlan) -> int:
    return plan.class_names.index(plan.normal_class)


def anomalous_labels(cases: list[Case], plan: AnomalyPlan) -> torch.Tensor:
    """1 for a case of any class but the normal one, else 0."""
    k = normal_index(plan)
    return torch.tensor([int(int(c.classes) != k) for c in cases], dtype=torch.long)


def split_cases(run: Run, data: ClassificationData) -> tuple[list[Case], list[Case]]:
    """(training, validation) cases of every class: the dataset's validation split when it has one,
    else the run's patient-level fold of the training cases."""
    from medsight.runs import fold_ids

    if data.splits.get("val"):
        return data.train, data.splits["val"]
    train_ids, val_ids = fold_ids(run, data.train)
    by_id = {c.case_id: c for c in data.train}
    return [by_id[i] for i in train_ids], [by_id[i] for i in val_ids]


def normal_cases(cases: list[Case], plan: AnomalyPlan) -> list[Case]:
    k = normal_index(plan)
    normals = [c for c in cases if int(c.classes) == k]
    if not normals:
        raise DataError(f"{plan.dataset}: no case of the normal class {plan.normal_class!r} to train on")
    return normals


class NormalBatches:
    """Shuffled passes over the normal training inputs (in memory), one pass per iteration."""

    def __init__(self, x: torch.Tensor, batch_size: int, seed: int) -> None:
        self.x, self.batch_size = x, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = torch.randperm(len(self.x), generator=self.generator)
        batch = min(self.batch_size, len(order))
        for start in range(0, len(order) - batch + 1, batch):
            yield {"image": self.x[order[start : start + batch]]}


def validation_batches(x: torch.Tensor, y: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    return [
        {"image": x[i : i + EVAL_BATCH], "anomalous": y[i : i + EVAL_BATCH]}
        for i in range(0, len(x), EVAL_BATCH)
    ]


class FittedStop:
    """Ends training once a PaDiM model has seen every normal training image (one pass is its fit)."""

    model: Any = None

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        if self.model is not None and float(self.model.count) >= self.model.max_samples:
            trainer.should_stop = True


def train_anomaly(run: Run, evaluate: bool = True) -> None:
    """Train the run's model on the normal training cases; then (``evaluate``) choose the threshold
    and score the validation split."""
    from medsight.engine import Trainer

    data = load_run_data(run)
    train, val = split_cases(run, data)
    normals = normal_cases(train, run.plan)
    task = AnomalyTask(run.plan, run.config.train)
    stop = FittedStop()
    trainer = Trainer(task, run.config.train, run.path, callbacks=[stop] if run.plan.model == "padim" else [])
    model = stop.model = task.build_model()  # built after the trainer has seeded everything
    log.info("training on %d normal cases; validating on %d cases", len(normals), len(val))
    x = stack_inputs(normals, run.plan)
    x_val = stack_inputs(val, run.plan) if val else None
    val_data = validation_batches(x_val, anomalous_labels(val, run.plan)) if x_val is not None else None
    trainer.fit(model, NormalBatches(x, run.plan.batch_size, run.config.train.seed), val_data)
    if val and evaluate:
        evaluate_cases(run, val, "val", choose_threshold=True, inputs=x_val).write(run.eval_dir("val"))


def load_model(run: Run, device: str = "auto") -> tuple[AnomalyTask, torch.nn.Module]:
    from medsight.engine import load_model_weights, resolve_device

    task = AnomalyTask(run.plan, run.config.train)
    model = task.build_model()
    load_model_weights(model, run.checkpoint)
    return task, model.to(resolve_device(device)).eval()


def score_inputs(task: AnomalyTask, model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(N,)`` and maps ``(N, 1, *input_size)`` of normalised inputs."""
    device = next(model.parameters()).device
    scores, maps = [], []
    with torch.inference_mode():
        for i in range(0, len(x), EVAL_BATCH):
            s, m = scores_and_maps(model, x[i : i + EVAL_BATCH].to(device), task.plan)
            scores.append(s.float().cpu())
            maps.append(m.float().cpu())
    return torch.cat(scores).numpy(), torch.cat(maps).numpy()


def evaluate_request(run: Run, request: EvaluateRequest) -> MetricTable:
    """Score the run on ``val``, ``test`` or ``train`` of its dataset (every class)."""
    if request.input is not None or request.reference is not None:
        raise ConfigError("evaluate: --input/--reference are for segmentation; anomaly scores --split")
    return evaluate_cases(run, cases_of_split(run, request.split), request.split)


def cases_of_split(run: Run, split: str) -> list[Case]:
    data = load_run_data(run)
    if split == "val":
        cases = split_cases(run, data)[1]
    elif split in ("test", "train"):
        cases = data.splits.get(split, [])
    else:
        raise ConfigError(f"--split: expected val, test or train, got {split!r}")
    if not cases:
        raise DataError(f"{data.name}: split {split!r} has no cases")
    return cases


def evaluate_cases(
    run: Run,
    cases: list[Case],
    split: str,
    choose_threshold: bool = False,
    inputs: torch.Tensor | None = None,
) -> MetricTable:
    """Score ``cases``: a row per case, image AUROC / AP (and sensitivity / specificity at the threshold)
    with bootstrap CIs, pixel AUROC / AP / best Dice where the cases carry masks; plots into eval/<split>/.

    With ``choose_threshold`` (validation) the threshold (Youden's J) is chosen here and saved in plan.json.
    """
    from medsight.metrics.anomaly import image_summary, youden_threshold

    task, model = load_model(run)
    x = stack_inputs(cases, run.plan) if inputs is None else inputs
    y = anomalous_labels(cases, run.plan).numpy()
    scores, maps = score_inputs(task, model, x)
    plan = run.plan
    if choose_threshold:
        threshold = youden_threshold(y, scores)
        reasons = {**plan.reasons, "threshold": f"Youden's J on the {len(y)} validation cases"}
        run.save_plan(plan.model_copy(update={"threshold": round(threshold, 8), "reasons": reasons}))
        plan = task.plan = run.plan
    rows = [_row(c, int(t), float(s), plan.threshold) for c, t, s in zip(cases, y, scores, strict=True)]
    pooled = image_summary(y, scores, plan.threshold)
    pooled["all"].update(_pixel_metrics(cases, maps, plan))
    info = {
        "split": split,
        "cases": len(cases),
        "anomalous": int(y.sum()),
        "threshold": plan.threshold,
        "normal_class": plan.normal_class,
        "model": plan.model,
        "score": plan.score,
    }
    from medsight.tasks.anomaly.figures import write_figures

    write_figures(run.eval_dir(split), x, maps, scores, y, cases)
    return MetricTable(rows=rows, keys=["case_id"], info=info, pooled=pooled)


def _row(case: Case, anomalous: int, score: float, threshold: float | None) -> dict:
    row = {
        "case_id": case.case_id,
        "reference": "anomalous" if anomalous else "normal",
        "score": round(score, 8),
    }
    if threshold is not None:
        row["predicted"] = "anomalous" if score > threshold else "normal"
        row["correct"] = (score > threshold) == bool(anomalous)
    return row


def _pixel_metrics(cases: list[Case], maps: np.ndarray, plan: AnomalyPlan) -> dict[str, Any]:
    """Pixel AUROC / AP / best Dice with CIs on the plan grid, where cases carry masks
    (``case.extra["mask"]``): the masked cases, and the normal cases as all-normal pixels (anomalous
    cases without a mask are left out: where their anomaly lies is unknown)."""
    from medsight.metrics.anomaly import pixel_summary
    from medsight.transforms.segmentation import resize

    if not any(c.extra.get("mask") is not None for c in cases):
        return {}
    k = normal_index(plan)
    picks, masks = [], []
    for i, case in enumerate(cases):
        mask = case.extra.get("mask")
        if mask is None and int(case.classes) != k:
            continue
        mask = np.zeros(case.read().shape[1:], np.int16) if mask is None else np.asarray(mask, np.int16)
        masks.append(resize(mask[None], tuple(plan.input_size), labels=True)[0] > 0)
        picks.append(i)
    return pixel_summary(maps[picks, 0], np.stack(masks))


__all__ = ["evaluate_request", "load_model", "score_inputs", "train_anomaly"]
