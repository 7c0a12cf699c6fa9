"""Classification end to end: data -> plan -> tensors once -> train -> thresholds on validation ->
evaluate (per-case CSV, summary with CIs, ROC / confusion / reliability plots, explanations) -> report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from medsight.data.classification import ClassificationData, load_classification
from medsight.data.spec import Case
from medsight.engine.contract import Prediction
from medsight.errors import ConfigError, DataError
from medsight.metrics.table import MetricTable
from medsight.runs import Run
from medsight.tasks.classify.planning import ClassifyPlan
from medsight.tasks.classify.task import ClassifyTask
from medsight.tasks.contract import EvaluateRequest
from medsight.transforms.classification import augment_batch, to_input

log = logging.getLogger(__name__)
EVAL_BATCH = 256
N_EXPLAINED = 3  # right and wrong cases explained in the report
MIN_THRESHOLD_CASES = 50  # validation cases of the rarer side needed to move a threshold off 0.5


def load_run_data(run: Run) -> ClassificationData:
    return load_classification(run.config.data.dataset, problem=run.plan.problem)


def stack_inputs(samples: list[Case], plan: ClassifyPlan) -> torch.Tensor:
    """All samples as the network's inputs, (N, C, *input_size) float16 (converted per batch)."""
    out = torch.empty((len(samples), plan.in_channels, *plan.input_size), dtype=torch.float16)
    for i, sample in enumerate(samples):
        try:
            out[i] = to_input(sample.read(), plan)
        except DataError as exc:
            raise DataError(f"case {sample.case_id}: {exc}") from exc
    return out


def label_tensor(samples: list[Case], multilabel: bool) -> torch.Tensor:
    y = torch.tensor(np.array([s.classes for s in samples]))
    return y.float() if multilabel else y.long()


class ShuffledBatches:
    """One shuffled pass over in-memory inputs per iteration, augmented batch by batch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, plan: ClassifyPlan, seed: int) -> None:
        self.x, self.y, self.plan = x, y, plan
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = torch.randperm(len(self.x), generator=self.generator)
        batch = min(self.plan.batch_size, len(order))
        for start in range(0, len(order) - batch + 1, batch):
            idx = order[start : start + batch]
            image = self.x[idx].float()
            if self.plan.augment:
                image = augment_batch(image, self.plan.flip_axes, self.generator)
            yield {"image": image, "label": self.y[idx]}


def validation_batches(x: torch.Tensor, y: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    return [
        {"image": x[i : i + EVAL_BATCH].float(), "label": y[i : i + EVAL_BATCH]}
        for i in range(0, len(x), EVAL_BATCH)
    ]


def split_samples(run: Run, data: ClassificationData) -> tuple[list[Case], list[Case]]:
    """(train, validation) samples: the dataset's own validation split when it has one, else the
    run's patient-level fold of the training cases (``data.fold``; ``all``: no validation)."""
    from medsight.runs import fold_ids

    if data.splits.get("val"):
        return data.train, data.splits["val"]
    train_ids, val_ids = fold_ids(run, data.train)
    by_id = {s.case_id: s for s in data.train}
    return [by_id[i] for i in train_ids], [by_id[i] for i in val_ids]


def train_classification(run: Run, evaluate: bool = True) -> None:
    """Train the run's classifier; then (``evaluate``) choose thresholds and score validation."""
    from medsight.engine import Trainer
    from medsight.engine.distributed import dist_info
    from medsight.tasks.classify.synthetic import synthetic_samples

    data = load_run_data(run)
    train, val = split_samples(run, data)
    train = train + synthetic_samples(run, train, data.class_names)  # data.synthetic: training only
    task = ClassifyTask(run.plan, run.config.train)
    trainer = Trainer(task, run.config.train, run.path)
    model = task.build_model()
    if run.plan.pretrained and not trainer.last_checkpoint.is_file():  # a fresh start, not a resume
        from medsight.models.pretrained import load_pretrained

        report = load_pretrained(model, run.plan.pretrained)
        log.info(
            "%s: %d tensors loaded, skipped %s", run.plan.pretrained, report["loaded"], report["mismatched"]
        )
    log.info("preparing %d training and %d validation cases", len(train), len(val))
    x, y = stack_inputs(train, run.plan), label_tensor(train, task.multilabel)
    x_val = stack_inputs(val, run.plan) if val else None
    val_data = validation_batches(x_val, label_tensor(val, task.multilabel)) if x_val is not None else None
    seed = run.config.train.seed + 1000 * dist_info().rank
    trainer.fit(model, ShuffledBatches(x, y, run.plan, seed), val_data)
    if val and evaluate:
        evaluate_samples(run, val, "val", choose_thresholds=True, inputs=x_val).write(run.eval_dir("val"))


def load_model(run: Run, device: str = "auto") -> tuple[ClassifyTask, torch.nn.Module]:
    from medsight.engine import load_model_weights, resolve_device

    task = ClassifyTask(run.plan, run.config.train)
    model = task.build_model()
    load_model_weights(model, run.checkpoint)
    return task, model.to(resolve_device(device)).eval()


def predict_probabilities(task: ClassifyTask, model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    device = next(model.parameters()).device
    with torch.inference_mode():
        parts = [
            task.predict_batch(model, x[i : i + EVAL_BATCH].float().to(device))
            for i in range(0, len(x), EVAL_BATCH)
        ]
    return torch.cat(parts).cpu().numpy()


def evaluate_request(run: Run, request: EvaluateRequest) -> MetricTable:
    """Score the run on ``val`` (its validation cases), ``test`` or ``train`` of its dataset."""
    if request.input is not None or request.reference is not None:
        raise ConfigError("evaluate: --input/--reference are for segmentation; classify scores --split")
    return evaluate_samples(run, samples_of_split(run, request.split), request.split)


def samples_of_split(run: Run, split: str) -> list[Case]:
    """The run's ``val`` (its validation cases), ``test`` or ``train`` samples; never empty."""
    data = load_run_data(run)
    if split == "val":
        samples = split_samples(run, data)[1]
    elif split in ("test", "train"):
        samples = data.splits.get(split, [])
    else:
        raise ConfigError(f"--split: expected val, test or train, got {split!r}")
    if not samples:
        raise DataError(f"{data.name}: split {split!r} has no cases")
    return samples


def evaluate_samples(
    run: Run,
    samples: list[Case],
    split: str,
    choose_thresholds: bool = False,
    inputs: torch.Tensor | None = None,
) -> MetricTable:
    """Predict and score ``samples``: a row per case and the pooled summary with bootstrap CIs; ROC,
    confusion and reliability plots and explanations go into eval/<split>/ (the caller writes the table).

    With ``choose_thresholds`` (validation), the decision thresholds are chosen on these cases with the
    plan's ``threshold_rule`` and saved in plan.json before scoring. ``inputs``: the samples already
    prepared by :func:`stack_inputs` (training has them for validation), else they are prepared here.
    """
    from medsight.metrics.classification import bootstrap_summary, confusion_matrix, predict_labels
    from medsight.report.classification_plots import write_classification_plots

    task, model = load_model(run)
    plan = run.plan
    x = stack_inputs(samples, plan) if inputs is None else inputs
    y = np.array([s.classes for s in samples])
    probs = predict_probabilities(task, model, x)
    if choose_thresholds and plan.threshold_rule == "youden" and plan.problem in ("binary", "multilabel"):
        thresholds, reason = youden_thresholds(y, probs, plan.problem, plan.class_names)
        update = {"thresholds": thresholds, "reasons": {**plan.reasons, "thresholds": reason}}
        run.save_plan(plan.model_copy(update=update))
        plan = task.plan = run.plan
    pred = predict_labels(probs, plan.problem, plan.thresholds)
    out = run.eval_dir(split)
    rows = [
        task.case_row(Prediction(s.case_id, p, pr), s.classes)
        for s, p, pr in zip(samples, pred, probs, strict=True)
    ]
    info = {
        "split": split,
        "cases": len(samples),
        "thresholds": plan.thresholds,
        "confusion_matrix (rows: reference)": confusion_matrix(y, pred, len(plan.class_names)).tolist(),
    }
    pooled = bootstrap_summary(y, probs, plan.problem, plan.class_names, plan.thresholds)
    write_classification_plots(out, y, probs, plan.problem, plan.class_names, plan.thresholds)
    _write_explanations(model, x, samples, rows, out / "explanations")
    return MetricTable(rows=rows, keys=["case_id"], info=info, pooled=pooled)


def youden_thresholds(
    y: np.ndarray, probs: np.ndarray, problem: str, class_names: list[str]
) -> tuple[list[float], str]:
    """Youden's J thresholds on validation; 0.5 for a label whose rarer side has fewer than
    MIN_THRESHOLD_CASES validation cases (the optimum of so few cases is mostly noise)."""
    from medsight.metrics.classification import choose_thresholds

    chosen = choose_thresholds(y, probs, problem) or [0.5]
    positives = y.reshape(len(y), -1).sum(axis=0) if problem == "multilabel" else np.array([y.sum()])
    rarer = np.minimum(positives, len(y) - positives)
    kept = [t if n >= MIN_THRESHOLD_CASES else 0.5 for t, n in zip(chosen, rarer, strict=True)]
    names = class_names if problem == "multilabel" else class_names[1:]
    fixed = [n for n, c in zip(names, rarer, strict=True) if c < MIN_THRESHOLD_CASES]
    reason = f"Youden's J on the {len(y)} validation cases"
    if fixed:
        reason += f"; 0.5 kept for {', '.join(fixed)} (fewer than {MIN_THRESHOLD_CASES} cases of one side)"
    return [round(float(t), 6) for t in kept], reason


def _write_explanations(
    model: torch.nn.Module, x: torch.Tensor, samples: list[Case], rows: list[dict], folder: Path
) -> None:
    """Grad-CAM of a few right and wrong cases (occlusion where Grad-CAM does not apply, e.g. a ViT
    or TransMed's per-slice feature maps of a volume)."""
    from medsight.utils import atomic_write

    right = [i for i, r in enumerate(rows) if r["correct"]][:N_EXPLAINED]
    wrong = [i for i, r in enumerate(rows) if not r["correct"]][:N_EXPLAINED]
    for kind, picks in (("right", right), ("wrong", wrong)):
        for i in picks:
            row = rows[i]
            title = f"{kind}: {row['case_id']} (reference {row['reference']}, predicted {row['predicted']})"
            png = explanation_figure(model, x[i].float(), title)
            name = f"{kind}-{samples[i].case_id}".replace("/", "_")
            atomic_write(folder / f"{name}.png", lambda tmp, data=png: tmp.write_bytes(data))


def explanation_figure(
    model: torch.nn.Module, image: torch.Tensor, title: str, target: int | None = None
) -> bytes:
    """A PNG of the image beside its Grad-CAM map, or its occlusion map where Grad-CAM does not apply."""
    from medsight.explain import explain, explanation_png

    try:
        heat, method = explain(model, image, method="gradcam", target=target), "Grad-CAM"
    except ConfigError:
        heat, method = explain(model, image, method="occlusion", target=target), "occlusion"
    return explanation_png(image.numpy(), heat, title=f"{title} [{method}]")
