"""The Python API behind the CLI: train, predict, evaluate, export, explain (the CLI is a thin layer).

Every verb reaches the run's task family through the registry (:mod:`medsight.task_registry`) and the
Task contract (:mod:`medsight.tasks.contract`); nothing here names a task.

Example::

    from medsight import train, predict, evaluate
    run = train("drive", overrides=["train.time_budget=20m"])
    predict(run, "scans/", "masks/")
    evaluate(run, split="test")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsight.config import RunConfig, load_config
from medsight.errors import ConfigError
from medsight.runs import create_run, open_run
from medsight.task_registry import get_task

if TYPE_CHECKING:
    from medsight.planning.plan import PlanBase
    from medsight.tasks.contract import TaskData

log = logging.getLogger(__name__)


def prepare(dataset: str | Path, config: RunConfig, *, measure: bool = True) -> tuple[TaskData, PlanBase]:
    """Load, validate and describe a dataset with the config's task family, and plan for it."""
    from medsight.planning import plan_dataset

    return plan_dataset(dataset, config, measure=measure)


def train(
    dataset: str | Path,
    *,
    task: str | None = None,
    config: RunConfig | str | Path | None = None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    measure: bool = True,
) -> Path:
    """Train a model on ``dataset`` and return the run folder (ends with eval/ and report.html).

    Args:
        dataset: anything ``medsight.data.load_dataset`` accepts (MSD folder, CSV, adapter name).
        task: the task family (``medsight list tasks``: segment, classify ...).
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
            data, plan = prepare(cfg.data.dataset, cfg, measure=measure)
            run = create_run(cfg, plan, data.name)
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
    from medsight.deploy.ood import fit_run_profile
    from medsight.engine.distributed import dist_info
    from medsight.report import build_report

    run = open_run(run_dir)
    main = dist_info().is_main
    get_task(run.config.task).train(run, evaluate=main)
    if main:
        fit_run_profile(run)  # what predictions are checked against: RUN/input_profile.json
        build_report(run.path)
    return run.path


def _config(config: RunConfig | str | Path | None, overrides: list[str] | None, **base: Any) -> RunConfig:
    if isinstance(config, RunConfig):
        from medsight.config import apply_overrides

        data = apply_overrides(config.model_dump(), overrides or [])
        return RunConfig.model_validate(data)
    defaults: dict[str, Any] = {"data": {"dataset": base["dataset"]}}
    if base.get("task") is not None:
        defaults["task"] = base["task"]
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
    reference: str | Path | None = None,
) -> list[Path]:
    """Run a trained model on every image under ``input``, writing what the run's task writes into
    ``output`` (segmentation: label maps in the input's geometry and format; classification: one CSV
    with a probability column per class and the predicted label). Returns the output paths.

    The model is a run folder (``run_dir``, PyTorch) or an export folder (``model``, written by
    :func:`export`: ONNX Runtime, without torch); give exactly one.

    Batch runs resume: finished cases are skipped unless ``overwrite``. ``shard="I/N"`` (default:
    torchrun's RANK / WORLD_SIZE) predicts every N-th case by sorted case id.

    With a run folder, DICOM inputs also get DICOM results where the task makes them (``dicom=None``:
    when possible; ``True``: required; ``False``: none): a DICOM SEG beside a series' label map, a
    Comprehensive SR beside a classification CSV.

    ``reference`` is an image the run's task needs beside every input, where it takes one (a
    registration run: the fixed image, default its atlas); an export folder uses the run's own.

    Every input is checked against the training images (:mod:`medsight.deploy.ood`): ``ood.csv``
    in ``output`` says which look unlike them and why, and the log warns about each."""
    if (run_dir is None) == (model is None):
        raise ConfigError(
            "predict: give exactly one of --run (a run folder) and --model (an export folder), "
            f"got {'both' if model is not None else 'neither'}"
        )
    if input is None or output is None:
        raise ConfigError(f"predict: --input and --output are required (got input={input}, output={output})")
    from medsight.deploy.ood import flag_inputs
    from medsight.io.batch import resolve_shard

    resolve_shard(shard)  # a bad --shard fails before a model is loaded
    if model is not None and reference is not None:
        raise ConfigError("predict: --reference is used with --run; an export folder uses its run's own")
    if model is not None:
        from medsight.deploy.runtime import OnnxPredictor

        onnx = OnnxPredictor(model, tta=tta)
        written = onnx.predict_path(input, output, overwrite=overwrite, shard=shard)
        folder, in_channels, checked_run = Path(model), onnx.plan.in_channels, None
    else:
        from medsight.tasks.contract import PredictRequest

        run = open_run(run_dir)
        ref = Path(reference) if reference is not None else None
        request = PredictRequest(Path(input), Path(output), tta, overwrite, shard, dicom, ref)
        written = get_task(run.config.task).predict(run, request)
        folder, in_channels, checked_run = run.path, run.plan.in_channels, run
    flag_inputs(folder, Path(input), Path(output), in_channels, shard, checked_run)  # ood.csv beside them
    return written


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
    (``split="test"``), or the images under ``input`` against reference files under ``reference``
    (split "custom"). Writes eval/<split>/ and refreshes report.html; returns the summary."""
    from medsight.report import build_report
    from medsight.tasks.contract import EvaluateRequest

    run = open_run(run_dir)
    custom = input is not None or reference is not None
    request = EvaluateRequest(
        "custom" if custom else split,
        Path(input) if input is not None else None,
        Path(reference) if reference is not None else None,
    )
    table = get_task(run.config.task).evaluate(run, request)
    summary = table.write(run.eval_dir(request.split))
    build_report(run.path)
    return summary


def explain(
    run_dir: str | Path,
    input: str | Path,
    output: str | Path,
    *,
    method: str = "gradcam",
    target: str | None = None,
) -> list[Path]:
    """Explanation maps (Grad-CAM or occlusion) of the run's answers for every input, one PNG each."""
    run = open_run(run_dir)
    return get_task(run.config.task).explain(run, Path(input), Path(output), method=method, target=target)
