"""The Python API behind the CLI: train, predict, evaluate (the CLI is a thin layer over these).

Example::

    from medsight import train, predict, evaluate
    run = train("drive", overrides=["train.time_budget=20m"])
    predict(run, "scans/", "masks/")
    evaluate(run, split="test")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medsight.config import RunConfig, load_config
from medsight.errors import ConfigError, DataError
from medsight.runs import Run, create_run, open_run

log = logging.getLogger(__name__)


TASK_NAMES = ("segment", "classify")


def prepare(dataset: str | Path, config: RunConfig, *, measure: bool = True) -> tuple[Any, Any, Any]:
    """Load, validate and describe a dataset, and plan for it: (data, fingerprint or description, plan)."""
    if config.task == "classify":
        return _prepare_classify(dataset, config, measure)
    if config.task != "segment":
        raise ConfigError(f"task: {config.task!r} is not available; known: {', '.join(TASK_NAMES)}")
    from medsight.data import fingerprint_dataset, load_dataset
    from medsight.data.validate import raise_on_issues
    from medsight.planning import plan_dataset

    spec = load_dataset(dataset)
    fp = fingerprint_dataset(spec, cache_dir=config.data.cache_dir)
    raise_on_issues(fp.data_issues)
    plan = plan_dataset(
        fp,
        task=config.task,
        device=config.train.device,
        measure=measure,
        overrides=config.plan,
        time_budget_s=planning_budget(config),
    )
    return spec, fp, plan


def _prepare_classify(dataset: str | Path, config: RunConfig, measure: bool) -> tuple[Any, Any, Any]:
    from medsight.data.classification import load_classification
    from medsight.engine import resolve_device
    from medsight.planning.classify import plan_classification

    data = load_classification(dataset, problem=config.plan.get("problem"))
    plan = plan_classification(
        data,
        device=str(resolve_device(config.train.device)),
        measure=measure,
        time_budget_s=planning_budget(config),
    )
    return data, data.describe(), plan.with_overrides(config.plan)


def planning_budget(config: RunConfig) -> float | None:
    """The time budget the planner sizes the network for: with adversarial training each step also runs
    the attack (``steps`` more forward-backward passes, one more for TRADES), so the budget is divided."""
    budget, adversarial = config.train.time_budget_seconds, config.train.adversarial
    if budget is None or adversarial is None:
        return budget
    return budget / (1 + adversarial.steps + (adversarial.method == "trades"))


def train(
    dataset: str | Path,
    *,
    task: str = "segment",
    config: RunConfig | str | Path | None = None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    measure: bool = True,
) -> Path:
    """Train a model on ``dataset`` and return the run folder (ends with eval/ and report.html).

    Args:
        dataset: anything ``medsight.data.load_dataset`` accepts (MSD folder, CSV, adapter name).
        task: the task family (``segment``).
        config: a RunConfig or a YAML file; ``overrides`` (``["train.epochs=5", ...]``) apply on top.
        out: the parent folder of run folders (default ``runs``).
        measure: let the planner time candidate networks on this machine.
    """
    from medsight.engine.distributed import (
        broadcast_object,
        cleanup_distributed,
        dist_info,
        setup_distributed,
    )

    cfg = _config(config, overrides, task=task, dataset=str(dataset), out=out)
    owns_group = setup_distributed(device=cfg.train.device)  # under torchrun: rank 0 plans, all ranks train
    try:
        main = dist_info().is_main
        if main:
            spec, _, plan = prepare(cfg.data.dataset, cfg, measure=measure)
            run = create_run(cfg, plan, spec.name)
            if cfg.task == "segment":
                _folds(run, spec)
            log.info("run folder: %s", run.path)
        return _train_run(broadcast_object(str(run.path) if main else None))
    finally:
        if owns_group:
            cleanup_distributed()


def resume(run_dir: str | Path) -> Path:
    """Continue a killed ``train`` in its own run folder, from checkpoints/last.pt."""
    from medsight.engine.distributed import cleanup_distributed, setup_distributed

    owns_group = setup_distributed(device=open_run(run_dir).config.train.device)
    try:
        return _train_run(run_dir)
    finally:
        if owns_group:
            cleanup_distributed()


def _train_run(run_dir: str | Path) -> Path:
    """Train (or continue) the run in ``run_dir``; rank 0 then evaluates and writes the report."""
    from medsight.data import load_dataset
    from medsight.engine.distributed import dist_info
    from medsight.report import build_report
    from medsight.tasks.segment.pipeline import train_segmentation

    run = open_run(run_dir)
    main = dist_info().is_main
    if run.config.task == "classify":
        from medsight.tasks.classify.pipeline import train_classification

        train_classification(run, evaluate=main)
    else:
        spec = load_dataset(run.config.data.dataset)
        train_segmentation(run, spec, _folds(run, spec), evaluate=main)
    if main:
        build_report(run.path)
    return run.path


def _folds(run: Run, spec: Any) -> list[dict[str, list[str]]]:
    """The run's patient-level folds (none needed when training on every case)."""
    from medsight.runs import run_folds

    if run.config.data.fold == "all":
        return []
    return run_folds(run.path / "splits.json", spec, run.config.data.num_folds, run.config.train.seed)


def _config(config: RunConfig | str | Path | None, overrides: list[str] | None, **base: Any) -> RunConfig:
    if isinstance(config, RunConfig):
        from medsight.config import apply_overrides

        data = apply_overrides(config.model_dump(), overrides or [])
        return RunConfig.model_validate(data)
    defaults: dict[str, Any] = {"task": base["task"], "data": {"dataset": base["dataset"]}}
    if base.get("out") is not None:
        defaults["out"] = str(base["out"])
    return load_config(config, overrides, **defaults)


def predict(
    run_dir: str | Path | None = None,
    input: str | Path | None = None,
    output: str | Path | None = None,
    *,
    model: str | Path | None = None,
    tta: bool | None = None,
    overwrite: bool = False,
    shard: str | tuple[int, int] | None = None,
    dicom: bool | None = None,
) -> list[Path]:
    """Run a trained model on every image under ``input``. Segmentation: label maps in ``output`` in
    the input's geometry and format (DICOM series in -> NIfTI out). Classification: one CSV
    (``output`` ending in .csv, else ``output/predictions.csv``) with a probability column per class
    and the predicted label. Returns the output paths.

    The model is a run folder (``run_dir``, PyTorch) or an export folder (``model``, written by
    :func:`export`: ONNX Runtime, without torch); give exactly one.

    Batch runs resume: cases whose output exists (segmentation) or that have a row (classification)
    are skipped unless ``overwrite``. ``shard="I/N"`` (default: torchrun's RANK / WORLD_SIZE) predicts
    every N-th case by sorted case id; see :mod:`medsight.deploy.batch`.

    With a run folder, DICOM inputs also get DICOM results (``dicom=None``: when possible; ``True``:
    required; ``False``: none): a DICOM SEG ``<case>.seg.dcm`` beside each series' label map
    (segmentation; the input a series folder or zip), a Comprehensive SR ``<input>.sr.dcm`` beside the
    CSV (classification). See :mod:`medsight.deploy.dicom_seg` and :mod:`medsight.deploy.dicom_sr`."""
    if (run_dir is None) == (model is None):
        raise ConfigError(
            "predict: give exactly one of --run (a run folder) and --model (an export folder), "
            f"got {'both' if model is not None else 'neither'}"
        )
    if input is None or output is None:
        raise ConfigError(f"predict: --input and --output are required (got input={input}, output={output})")
    from medsight.deploy.batch import resolve_shard

    resolve_shard(shard)  # a bad --shard fails before a model is loaded
    if model is not None:
        from medsight.deploy.runtime import OnnxPredictor

        return OnnxPredictor(model, tta=tta).predict_path(input, output, overwrite=overwrite, shard=shard)
    if open_run(run_dir).config.task == "classify":
        from medsight.tasks.classify.predictor import predict_path

        table = predict_path(run_dir, input, output, tta=tta, overwrite=overwrite, shard=shard)
        if dicom is False:
            return [table]
        from medsight.deploy.dicom_sr import classification_srs

        name = open_run(run_dir).path.name
        return [table, *classification_srs(table, name, required=bool(dicom), overwrite=overwrite)]
    from medsight.tasks.segment.predictor import Predictor

    predictor = Predictor.from_run(run_dir, tta=tta)
    outputs = predictor.predict_path(Path(input), Path(output), overwrite=overwrite, shard=shard)
    if dicom is False:
        return outputs
    from medsight.deploy.dicom_seg import dicom_segs

    return outputs + dicom_segs(run_dir, Path(input), outputs, required=bool(dicom), overwrite=overwrite)


def export(
    run_dir: str | Path, format: str = "onnx", out: str | Path | None = None, *, force: bool = False
) -> Path:
    """Export a run's network (``format``: ``onnx`` or ``torchscript``) with its pre/post-processing
    spec (deploy.json) to the folder ``out``; ``predict(model=out, ...)`` runs it. An existing
    non-empty ``out`` is an error unless ``force``. See :mod:`medsight.deploy.export`."""
    from medsight.deploy.export import export_run

    return export_run(run_dir, format, out, force=force)


def evaluate(
    run_dir: str | Path,
    *,
    split: str = "val",
    input: str | Path | None = None,
    reference: str | Path | None = None,
) -> dict[str, Any]:
    """Score a run: its validation fold (``split="val"``), the dataset's labelled test split
    (``split="test"``), or the images under ``input`` against label files under ``reference``.
    Writes eval/<split>/ and refreshes report.html; returns the summary."""
    from medsight.data import load_dataset
    from medsight.report import build_report
    from medsight.tasks.segment.pipeline import evaluate_cases

    run = open_run(run_dir)
    if run.config.task == "classify":
        if input is not None or reference is not None:
            raise ConfigError("evaluate: --input/--reference are for segmentation; classify scores --split")
        from medsight.tasks.classify.pipeline import evaluate_split

        summary = evaluate_split(run, split)
        build_report(run.path)
        return summary
    if input is not None or reference is not None:
        if input is None or reference is None:
            raise ConfigError("evaluate: --input and --reference go together")
        spec = _folder_spec(run, Path(input), Path(reference))
        cases, split = spec.train, "custom"
    else:
        spec = load_dataset(run.config.data.dataset)
        cases = split_cases(run, spec, split)
    summary = evaluate_cases(run, spec, cases, split)
    build_report(run.path)
    return summary


def split_cases(run: Run, spec: Any, split: str) -> list[Any]:
    """A segmentation run's cases of ``split``: its validation fold, or the dataset's test or train cases."""
    if split == "test":
        return spec.test
    if split == "train":
        return spec.train
    if split != "val":
        raise ConfigError(f"--split: expected val, test or train, got {split!r}")
    fold = run.config.data.fold
    if fold == "all":
        raise ConfigError(f"{run.path}: trained on all cases (data.fold=all): there is no validation split")
    ids = set(_folds(run, spec)[int(fold)]["val"])
    return [c for c in spec.train if c.case_id in ids]


def _folder_spec(run: Run, images: Path, labels: Path) -> Any:
    """A dataset of the images under ``images`` paired by file name with labels under ``labels``."""
    from medsight.data.spec import Case, DatasetSpec
    from medsight.deploy.cases import group_inputs
    from medsight.io.readers import split_suffix

    groups = group_inputs(images, run.plan.in_channels)
    label_files = {split_suffix(p)[0]: p for p in sorted(labels.iterdir()) if p.is_file()}
    cases = []
    for case_id, files in groups.items():
        if case_id not in label_files:
            raise DataError(f"{labels}: no label file for case {case_id!r} (looked for {case_id}.*)")
        cases.append(Case(case_id=case_id, images=tuple(files), label=label_files[case_id]))
    names = run.plan.label_names()
    return DatasetSpec(
        name=images.name,
        root=images,
        train=cases,
        test=[],
        channel_names={i: f"channel_{i}" for i in range(run.plan.in_channels)},
        labels=names,
        file_ending="",
    )
