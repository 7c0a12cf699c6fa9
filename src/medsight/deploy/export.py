"""Export a run's network to ONNX or TorchScript, with the pre/post-processing spec beside it.

::

    out/
      model.onnx | model.ts   the network (segmentation: full-resolution head only), batch axis dynamic
      deploy.json             everything pre/post-processing needs (see ``deploy_spec``)

``medsight predict --model out`` (:mod:`medsight.deploy.runtime`) runs it with ONNX Runtime, without
torch, and gives the same label maps / CSV as ``medsight predict --run RUN``.
"""

from __future__ import annotations

import json
import logging
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import ConfigError, RunError
from medsight.utils import atomic_folder

log = logging.getLogger(__name__)

FORMATS = {"onnx": "model.onnx", "torchscript": "model.ts"}
SPEC_FILE = "deploy.json"
SPEC_VERSION = 1
OPSET = 17
CHECK_TOLERANCE = 1e-3  # max abs logit difference between the exported and the eager model


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
        >>> export_run("runs/segment-drive-20250101-120000", "onnx", "deploy/drive")
    """
    from medsight.runs import open_run

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
    model, example = _network(run)
    with atomic_folder(dest, replace=force) as tmp:
        if format == "onnx":
            export_onnx(model, example, tmp / FORMATS[format], opset)
        else:
            export_torchscript(model, example, tmp / FORMATS[format])
        spec = deploy_spec(run, format, opset)
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2), encoding="utf-8")
    log.info("exported %s to %s", run.path.name, dest)
    return dest


def _network(run: Any) -> tuple[Any, Any]:
    """The run's network on the CPU in eval mode, as exported, and an example input (batch of 1)."""
    import torch

    if run.config.task == "classify":
        from medsight.tasks.classify.pipeline import load_model

        _, model = load_model(run, "cpu")
        size = run.plan.input_size
    else:
        from medsight.tasks.segment.pipeline import load_model
        from medsight.tasks.segment.task import HeadOnly

        _, net = load_model(run, "cpu")
        model = HeadOnly(net).eval()  # deep supervision: the full-resolution output only
        size = run.plan.patch_size
    example = torch.randn((1, run.plan.in_channels, *size), generator=torch.Generator().manual_seed(0))
    return model, example


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


def deploy_spec(run: Any, format: str, opset: int) -> dict[str, Any]:
    """What pre/post-processing needs, for deploy.json. ``plan`` holds the run's whole plan, from which
    the torch-free runtime rebuilds exactly the PyTorch path's preprocessing; the named fields repeat
    what a non-medsight consumer needs."""
    from medsight import __version__

    plan = run.plan
    spec: dict[str, Any] = {
        "spec_version": SPEC_VERSION,
        "format": format,
        "model": FORMATS[format],
        "input_name": "input",
        "output_name": "output",
        "task": run.config.task,
        "dim": plan.dim,
        "in_channels": plan.in_channels,
        "normalization": [n.model_dump(mode="json") for n in plan.normalization],
        "class_names": list(plan.class_names),
        "tta": plan.tta,
        "opset": opset if format == "onnx" else None,
        "medsight_version": __version__,
        "source_run": run.path.name,
        "exported": datetime.now().isoformat(timespec="seconds"),
    }
    if run.config.task == "classify":
        spec.update(
            input_size=list(plan.input_size),
            layout="(batch, channels, *input_size), float32, normalised",
            problem=plan.problem,
            activation="sigmoid" if plan.problem == "multilabel" else "softmax",
            thresholds=plan.thresholds,
            tta_flip_axes=[[a] for a in plan.flip_axes],
        )
    else:
        from medsight.engine.windows import flip_sets

        spec.update(
            target_spacing=list(plan.target_spacing),
            crop_to_nonzero=plan.dim == 3,
            patch_size=list(plan.patch_size),
            layout="(batch, channels, *patch_size), float32, normalised; output: logits",
            overlap=plan.sliding_window_overlap,
            blend="gaussian",
            sigma_scale=0.125,
            window_batch_size=plan.batch_size,
            tta_flip_axes=[list(f) for f in flip_sets(True, plan.dim)[1:]],
            label_values=list(plan.label_values),
            regions=plan.regions,
            activation="sigmoid" if plan.regions else "softmax",
            postprocess_lcc=plan.postprocess_lcc,
        )
    spec["plan"] = plan.model_dump(mode="json")
    return spec
