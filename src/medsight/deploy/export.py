"""Export a run's network to ONNX or TorchScript, with the pre/post-processing spec beside it.

::

    out/
      model.onnx | model.ts   the network the task chose (e.g. a segmenter's full-resolution head only),
                              batch axis dynamic
      deploy.json             everything pre/post-processing needs (see ``deploy_spec``)

What is exported comes from the run's task, through the registry: ``get_task(task).export_spec(run)``
returns an :class:`ExportSpec` (the network, an example input, the task's deploy.json fields and its
torch-free runtime module). ``medsight predict --model out`` (:mod:`medsight.deploy.runtime`) runs it
with ONNX Runtime, without torch, through that runtime module, and writes what
``medsight predict --run RUN`` writes.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from medsight.deploy.runtime import check_runtime_name
from medsight.errors import ConfigError, RunError
from medsight.utils import atomic_folder

log = logging.getLogger(__name__)

FORMATS = {"onnx": "model.onnx", "torchscript": "model.ts"}
SPEC_FILE = "deploy.json"
SPEC_VERSION = 1
OPSET = 17
CHECK_TOLERANCE = 1e-3  # max abs logit difference between the exported and the eager model
# the deploy.json fields export writes itself (see deploy_spec); a task's ExportSpec.fields add to them
_EXPORT_FIELDS = frozenset(
    "spec_version format model input_name output_name task runtime dim in_channels normalization "
    "class_names tta opset medsight_version source_run exported plan".split()
)


@dataclass(frozen=True)
class ExportSpec:
    """What export needs from a task (``Task.export_spec(run)``).

    Attributes:
        network: the ``torch.nn.Module`` to export, on the CPU in eval mode, taking ``(batch, ...)``
            float32 and returning one tensor (e.g. a segmenter's full-resolution head only).
        example: an example input batch of one (``torch.Tensor``) that traces the network; see
            :func:`example_input`.
        runtime: the dotted path of the task's torch-free runtime module, under ``medsight.tasks``
            (derive it from the task package's ``__package__``: ``f"{__package__}.runtime"``); it
            defines ``Runtime`` (:class:`medsight.deploy.runtime.TaskRuntime`).
        fields: the task's own deploy.json fields (input layout, activation, thresholds ...), beside
            those export writes itself (see :func:`deploy_spec`).
    """

    network: Any
    example: Any
    runtime: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_runtime_name(self.runtime, "ExportSpec")
        clash = sorted(set(self.fields) & _EXPORT_FIELDS)
        if clash:
            raise ConfigError(f"ExportSpec.fields: {clash} are written by export itself; rename them")


def example_input(channels: int, size: list[int] | tuple[int, ...], seed: int = 0) -> Any:
    """A reproducible random example batch ``(1, channels, *size)`` to trace a network with."""
    import torch

    return torch.randn((1, channels, *size), generator=torch.Generator().manual_seed(seed))


def export_run(
    run_dir: str | Path,
    format: str = "onnx",
    out: str | Path | None = None,
    *,
    force: bool = False,
    opset: int = OPSET,
) -> Path:
    """Export the run's best (else last) weights to ``out`` (default ``<run>/export-<format>``).

    Args:
        run_dir: a run folder written by ``medsight train``.
        format: ``"onnx"`` (``model.onnx``) or ``"torchscript"`` (``model.ts``).
        out: the folder to write; an existing non-empty one is an error unless ``force``.
        force: replace an existing ``out`` (only once the new export is complete).
        opset: the ONNX opset.

    Returns:
        The export folder. The exported network is run once on a random input and compared with
        the PyTorch model (and the ONNX file checked with ``onnx.checker``) before it is kept.

    Example:
        >>> export_run("runs/RUN", "onnx", "deploy/RUN")
    """
    from medsight.runs import open_run
    from medsight.task_registry import get_task

    if format not in FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")
    run = open_run(run_dir)
    if not run.checkpoint.is_file():
        raise RunError(f"{run.path}: no checkpoint to export (checkpoints/best.pt or last.pt)")
    dest = Path(out) if out is not None else run.path / f"export-{format}"
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"--out: {dest} is a file, expected a folder to create")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise ConfigError(f"--out: {dest} exists and is not empty; choose another folder or pass --force")
    export = get_task(run.config.task).export_spec(run)
    with atomic_folder(dest, replace=force) as tmp:
        if format == "onnx":
            export_onnx(export.network, export.example, tmp / FORMATS[format], opset)
        else:
            export_torchscript(export.network, export.example, tmp / FORMATS[format])
        spec = deploy_spec(run, export, format, opset)
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2), encoding="utf-8")
        _copy_input_profile(run.path, tmp)
    log.info("exported %s to %s", run.path.name, dest)
    return dest


def _copy_input_profile(run: Path, dest: Path) -> None:
    """The run's input profile travels with the export, so ``predict --model`` flags unusual inputs too."""
    import shutil

    from medsight.deploy.ood import PROFILE_FILE

    if (run / PROFILE_FILE).is_file():
        shutil.copy2(run / PROFILE_FILE, dest / PROFILE_FILE)


def export_onnx(model: Any, example: Any, path: Path, opset: int) -> None:
    import onnx
    import torch

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # legacy-exporter and instance-norm notices
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=opset,
        )
    onnx.checker.check_model(str(path))
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = torch.cat([example, -example])  # two samples: the batch axis really is dynamic
    got = session.run(None, {"input": batch.numpy()})[0]
    _check_same(model, batch, got, "ONNX")


def export_torchscript(model: Any, example: Any, path: Path) -> None:
    import torch

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        traced = torch.jit.freeze(traced.eval())
    traced.save(str(path))
    batch = torch.cat([example, -example])
    with torch.inference_mode():
        got = torch.jit.load(str(path))(batch).numpy()
    _check_same(model, batch, got, "TorchScript")


def _check_same(model: Any, batch: Any, got: np.ndarray, kind: str) -> None:
    import torch

    with torch.inference_mode():
        want = model(batch).float().numpy()
    if got.shape != want.shape:
        raise RunError(f"{kind} export: output shape {got.shape} differs from PyTorch's {want.shape}")
    diff = float(np.abs(got - want).max())
    if not diff <= CHECK_TOLERANCE:
        raise RunError(f"{kind} export: outputs differ from PyTorch by {diff:.3g} (> {CHECK_TOLERANCE})")


def deploy_spec(run: Any, export: ExportSpec, format: str, opset: int) -> dict[str, Any]:
    """What pre/post-processing needs, for deploy.json: the export's own fields, the runtime module,
    the fields every plan has (:class:`~medsight.planning.plan.PlanBase`), the task's
    (``export.fields``), and ``plan``: the run's whole plan, from which the torch-free runtime rebuilds
    exactly the PyTorch path's preprocessing. The named fields repeat what a non-medsight consumer needs."""
    from medsight import __version__

    plan = run.plan
    return {
        "spec_version": SPEC_VERSION,
        "format": format,
        "model": FORMATS[format],
        "input_name": "input",
        "output_name": "output",
        "task": run.config.task,
        "runtime": export.runtime,
        "dim": plan.dim,
        "in_channels": plan.in_channels,
        "normalization": [n.model_dump(mode="json") for n in plan.normalization],
        "class_names": list(plan.class_names),
        "tta": plan.tta,
        "opset": opset if format == "onnx" else None,
        "medsight_version": __version__,
        "source_run": run.path.name,
        "exported": datetime.now().isoformat(timespec="seconds"),
        **export.fields,
        "plan": plan.model_dump(mode="json"),
    }
