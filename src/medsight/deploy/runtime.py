"""Run an exported model (``medsight export``) without torch: ONNX Runtime on the CPU.

This module is the generic half: it reads deploy.json, loads the network (ONNX Runtime, or torch for
a TorchScript export), and offers the numpy sliding window and activations. The task half is the
runtime module that deploy.json names (``"runtime"``: ``medsight.tasks.<name>.runtime``, written by
``medsight export`` from the task's :class:`~medsight.deploy.export.ExportSpec`). That module defines
``Runtime``, a :class:`TaskRuntime`: its ``plan_type`` validates deploy.json's ``"plan"``, and
``Runtime(network, plan).predict_path(input, output)`` writes what ``medsight predict --run RUN``
writes, with the same torch-free pre/post-processing and file handling as the PyTorch predictor.

Imports: numpy, scipy, onnxruntime and medsight's readers, never torch (a test checks it; task
runtimes must not import it either). A TorchScript export (``model.ts``) is run by torch itself,
imported only then.

Example::

    from medsight.deploy.runtime import OnnxPredictor
    predictor = OnnxPredictor("deploy/drive")
    predictor.predict_path("fundus/", "masks/")
    probs = predictor.runtime.probabilities(image)   # the task runtime's own methods
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from medsight.errors import ConfigError, DataError
from medsight.io.batch import ShardLike

SPEC_FILE = "deploy.json"
RUNTIME_PACKAGE = "medsight.tasks"
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
Network = Callable[[np.ndarray], np.ndarray]  # a float32 batch in, the network's output out


class TaskRuntime(Protocol):
    """What a task's torch-free runtime module defines as ``Runtime``.

    ``Runtime(network, plan)`` is built once per export folder; ``plan_type`` is the task's plan model
    (deploy.json's ``"plan"`` is validated with it, so a runtime module and what it imports must be
    torch-free). ``predict_path`` writes the task's outputs for every input under ``input``, resumable
    and shardable as in :mod:`medsight.io.batch`, and returns the paths written (or owned) by this shard.
    """

    plan_type: ClassVar[type[Any]]

    def __init__(self, network: Network, plan: Any) -> None: ...

    def predict_path(
        self, input: Path, output: Path, *, overwrite: bool = False, shard: ShardLike = None
    ) -> list[Path]: ...


class OnnxPredictor:
    """An exported model folder ready to predict: ``OnnxPredictor(dir).predict_path(input, output)``.

    Args:
        model_dir: a folder written by ``medsight export`` (deploy.json + model.onnx or model.ts).
        tta: override the exported flip test-time augmentation (None: as exported).
        threads: CPU threads for the network (None: ONNX Runtime's default, all cores).

    Attributes:
        spec: deploy.json. plan: the task's plan (validated). runtime: the task's :class:`TaskRuntime`.
    """

    def __init__(self, model_dir: str | Path, *, tta: bool | None = None, threads: int | None = None) -> None:
        self.path = Path(model_dir)
        self.spec = load_spec(self.path)
        runtime_type = runtime_class(runtime_name(self.spec), self.path / SPEC_FILE)
        self.plan = _plan(runtime_type.plan_type, self.spec, self.path)
        if tta is not None:
            self.plan = self.plan.model_copy(update={"tta": tta})
        self.task: str = self.spec["task"]
        self.network = load_network(self.path / self.spec["model"], self.spec["format"], threads)
        self.runtime: TaskRuntime = runtime_type(self.network, self.plan)

    def predict_path(
        self, input: str | Path, output: str | Path, *, overwrite: bool = False, shard: ShardLike = None
    ) -> list[Path]:
        """Predict every input under ``input``, writing what ``medsight predict --run`` writes (e.g.
        label maps in the input's geometry and format, or one classification CSV); resume and sharding
        as in :mod:`medsight.io.batch`. Returns the output paths."""
        return self.runtime.predict_path(Path(input), Path(output), overwrite=overwrite, shard=shard)


def load_spec(model_dir: Path) -> dict[str, Any]:
    """deploy.json of an export folder, checked for what the runtime needs."""
    if not model_dir.is_dir():
        raise DataError(f"--model: {model_dir}: folder not found (expected the output of `medsight export`)")
    path = model_dir / SPEC_FILE
    if not path.is_file():
        raise DataError(f"--model: {path} is missing; is {model_dir} a folder written by `medsight export`?")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(spec, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(spec).__name__}")
    missing = [k for k in ("task", "format", "model", "plan") if k not in spec]
    if missing:
        raise DataError(f"{path}: missing field(s) {', '.join(missing)}")
    if spec["format"] not in ("onnx", "torchscript"):
        raise DataError(f"{path}: format: expected 'onnx' or 'torchscript', found {spec['format']!r}")
    if not (model_dir / spec["model"]).is_file():
        raise DataError(f"{model_dir / spec['model']}: model file missing (named in {path})")
    return spec


def runtime_name(spec: dict[str, Any]) -> str:
    """The runtime module deploy.json names; exports written before it had ``"runtime"`` name their
    task's, ``medsight.tasks.<task>.runtime``."""
    return str(spec.get("runtime") or f"{RUNTIME_PACKAGE}.{spec['task']}.runtime")


def check_runtime_name(name: str, where: str | Path) -> str:
    """``name`` when it is a module path under ``medsight.tasks`` (the only modules an export may name).

    Raises:
        DataError: any other name, with ``where`` (the deploy.json or the task) named.
    """
    if not isinstance(name, str) or not _MODULE.match(name) or not name.startswith(RUNTIME_PACKAGE + "."):
        raise DataError(
            f"{where}: runtime: expected a module under {RUNTIME_PACKAGE} "
            f"(such as {RUNTIME_PACKAGE}.<task>.runtime), found {name!r}"
        )
    return name


def runtime_class(name: str, where: str | Path) -> type[TaskRuntime]:
    """The ``Runtime`` class of the task runtime module ``name`` (checked to be under medsight.tasks).

    Raises:
        DataError: a name outside medsight.tasks, a module not installed here, or one without a
            ``Runtime`` that has ``plan_type`` and ``predict_path``.
    """
    check_runtime_name(name, where)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if not exc.name or not (name == exc.name or name.startswith(exc.name + ".")):
            raise  # the module exists but one of its own imports is missing
        raise DataError(
            f"{where}: runtime: module {name} not found (exported by a medsight with another task family?)"
        ) from exc
    runtime = getattr(module, "Runtime", None)
    if not isinstance(runtime, type) or not all(hasattr(runtime, a) for a in ("plan_type", "predict_path")):
        raise DataError(f"{where}: runtime: {name} defines no Runtime class with plan_type and predict_path")
    return runtime


def _plan(plan_type: type[Any], spec: dict[str, Any], model_dir: Path) -> Any:
    try:
        return plan_type.model_validate(spec["plan"])
    except (ConfigError, ValueError) as exc:
        raise DataError(f"{model_dir / SPEC_FILE}: invalid plan ({str(exc).splitlines()[0]})") from exc


def load_network(path: Path, format: str, threads: int | None) -> Network:
    """A function running the network on a float32 batch: ONNX Runtime, or torch for TorchScript."""
    if format == "torchscript":
        import torch  # a TorchScript model needs torch itself

        if threads:
            torch.set_num_threads(threads)
        module = torch.jit.load(str(path), map_location="cpu").eval()

        def run_ts(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(x)).float().numpy()

        return run_ts
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        raise DataError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from exc
    name = session.get_inputs()[0].name

    def run_onnx(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x.astype(np.float32, copy=False)})[0]

    return run_onnx


def sliding_window(
    run: Network,
    image: np.ndarray,
    *,
    patch_size: Sequence[int],
    overlap: float = 0.5,
    tta_flips: bool | Sequence[Sequence[int]] = False,
    activation: str = "softmax",
    batch_size: int = 1,
    mode: str = "gaussian",
    sigma_scale: float = 0.125,
) -> np.ndarray:
    """Probabilities ``(C, *spatial)`` of a ``(C, *spatial)`` image from overlapping windows: the
    numpy twin of ``medsight.engine.inference.sliding_window_predict`` (same windows, Gaussian,
    batches, flip averaging of logits, then the activation), holding the whole volume in memory."""
    from medsight.engine.windows import flip_sets, importance_map, plan_windows

    plan = plan_windows(image.shape[1:], patch_size, overlap)
    x = np.pad(image, [(0, 0), *plan.pad_width]) if any(plan.pad) else image
    weight = importance_map(plan.roi, mode, sigma_scale)[None]
    flips = flip_sets(tta_flips, len(plan.roi))
    acc: np.ndarray | None = None
    count = np.zeros((1, *plan.size), dtype=np.float32)
    for _, windows in plan.groups:
        for i in range(0, len(windows), max(1, batch_size)):
            batch = windows[i : i + batch_size]
            xb = np.stack([x[(slice(None), *w)] for w in batch]).astype(np.float32, copy=False)
            logits = _flip_mean(run, xb, flips)
            if logits.shape[2:] != plan.roi:
                raise DataError(f"model output windows are {logits.shape[2:]}, expected {plan.roi}")
            logits *= weight
            if acc is None:
                acc = np.zeros((logits.shape[1], *plan.size), dtype=np.float32)
            for out, w in zip(logits, batch, strict=True):
                acc[(slice(None), *w)] += out
                count[(slice(None), *w)] += weight
    assert acc is not None
    crop = (slice(None), *plan.crop)
    blended = acc[crop] / count[crop]
    return sigmoid(blended) if activation == "sigmoid" else softmax(blended, axis=0)


def _flip_mean(run: Network, x: np.ndarray, flips: list[tuple[int, ...]]) -> np.ndarray:
    total: np.ndarray | None = None
    for flip in flips:
        axes = tuple(a + 2 for a in flip)
        out = run(np.ascontiguousarray(np.flip(x, axes)) if axes else x).astype(np.float32)
        out = np.flip(out, axes) if axes else out
        total = out.copy() if total is None else total + out
    assert total is not None
    return total / len(flips) if len(flips) > 1 else total


def softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """Softmax along ``axis`` (default: the class axis of a batch)."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, float32."""
    from scipy.special import expit

    return expit(x).astype(np.float32, copy=False)
