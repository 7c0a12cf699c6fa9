"""Run an exported model (``medsight export``) without torch: ONNX Runtime on the CPU.

The pre/post-processing is medsight's own torch-free code, the same the PyTorch predictors run:
normalisation, 3D crop to the non-zero region, resampling and ``restore`` from
:mod:`medsight.transforms.segmentation`, window placement and Gaussian blending from
:mod:`medsight.engine.windows`, file handling from :mod:`medsight.deploy.cases`. So
``medsight predict --model DIR`` writes what ``medsight predict --run RUN`` writes (label maps in the
input's geometry and format; the same classification CSV), up to float rounding in the network.

Imports: numpy, scipy, onnxruntime and medsight's readers, never torch (a test checks it). A
TorchScript export (``model.ts``) is run by torch itself, imported only then.

Example::

    from medsight.deploy.runtime import OnnxPredictor
    OnnxPredictor("deploy/drive").predict_path("fundus/", "masks/")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.deploy.batch import Shard
from medsight.errors import ConfigError, DataError
from medsight.io import Image, read_image

SPEC_FILE = "deploy.json"
Session = Callable[[np.ndarray], np.ndarray]


class OnnxPredictor:
    """An exported model folder ready to predict: ``OnnxPredictor(dir).predict_path(input, output)``.

    Args:
        model_dir: a folder written by ``medsight export`` (deploy.json + model.onnx or model.ts).
        tta: override the exported flip test-time augmentation (None: as exported).
        threads: CPU threads for the network (None: ONNX Runtime's default, all cores).
    """

    def __init__(self, model_dir: str | Path, *, tta: bool | None = None, threads: int | None = None) -> None:
        self.path = Path(model_dir)
        self.spec = load_spec(self.path)
        self.plan = _plan(self.spec, self.path)
        if tta is not None:
            self.plan = self.plan.model_copy(update={"tta": tta})
        self.task: str = self.spec["task"]
        self.run = load_network(self.path / self.spec["model"], self.spec["format"], threads)

    # ------------------------------------------------------------------ files in, files out
    def predict_path(
        self,
        input: str | Path,
        output: str | Path,
        *,
        overwrite: bool = False,
        shard: str | Shard | tuple[int, int] | None = None,
    ) -> list[Path]:
        """Predict every image under ``input``, writing what ``medsight predict --run`` writes:
        segmentation label maps in ``output`` (input geometry and format), or one classification CSV.
        Resume and sharding as in :mod:`medsight.deploy.cases`. Returns the output paths."""
        from medsight.deploy.cases import classify_path, segment_path

        if self.task == "classify":
            path = classify_path(
                Path(input), Path(output), self.plan, lambda: self.classify, overwrite=overwrite, shard=shard
            )
            return [path]
        return segment_path(
            Path(input),
            Path(output),
            self.plan.in_channels,
            self.segment_files,
            overwrite=overwrite,
            shard=shard,
        )

    # ------------------------------------------------------------------ segmentation
    def segment_files(self, files: list[Path], case_id: str = "case") -> Image:
        """The label map of one case given as one file per channel."""
        from medsight.deploy.cases import stack_channels

        return self.segment_image(stack_channels([read_image(p) for p in files]), case_id)

    def segment_image(self, image: Image, case_id: str = "case") -> Image:
        """The label map of ``image`` in its own geometry (as ``SegmentTask.predict``)."""
        from medsight.transforms.segmentation import largest_components, to_label_map

        full = self.segment_probabilities(image, case_id)
        labels = to_label_map(full, self.plan.label_values, self.plan.regions)
        if self.plan.postprocess_lcc:
            labels = largest_components(labels, self.plan.label_values[1:])
        return image.with_array(labels[None], kind="label")

    def segment_probabilities(self, image: Image, case_id: str = "case") -> np.ndarray:
        """Probabilities ``(C, *image.shape)`` on the input's grid (softmax classes or sigmoid regions)."""
        from medsight.transforms.segmentation import preprocess, restore

        self._need("segment")
        pre = preprocess(image, None, self.plan, case_id)
        region = self.plan.regions is not None
        probs = sliding_window(
            self.run,
            pre.image,
            patch_size=self.plan.patch_size,
            overlap=self.plan.sliding_window_overlap,
            tta_flips=self.plan.tta,
            activation="sigmoid" if region else "softmax",
            batch_size=self.plan.batch_size,
        )
        return restore(probs, pre, background=0.0 if region else 1.0)

    # ------------------------------------------------------------------ classification
    def classify(self, samples: Sequence[Any]) -> np.ndarray:
        """Class probabilities ``(N, K)`` of ``medsight.data.classification.Sample`` s."""
        return self.classify_arrays([s.read() for s in samples])

    def classify_arrays(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities ``(N, K)`` of raw ``(C, *spatial)`` images, averaged over flips (``tta``)."""
        from medsight.transforms.classification import input_array

        self._need("classify")
        x = np.stack([input_array(np.asarray(im, dtype=np.float32), self.plan) for im in images])
        x = x.astype(np.float16).astype(np.float32)  # the PyTorch path keeps inputs as float16
        views = [x] + ([np.flip(x, a + 2) for a in self.plan.flip_axes] if self.plan.tta else [])
        activation = _sigmoid if self.plan.problem == "multilabel" else _softmax
        return np.mean([activation(self.run(np.ascontiguousarray(v))) for v in views], axis=0)

    def _need(self, task: str) -> None:
        if self.task != task:
            raise ConfigError(f"{self.path}: this is a {self.task} model, not a {task} model")


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
    if spec["task"] not in ("segment", "classify"):
        raise DataError(f"{path}: task: expected 'segment' or 'classify', found {spec['task']!r}")
    if not (model_dir / spec["model"]).is_file():
        raise DataError(f"{model_dir / spec['model']}: model file missing (named in {path})")
    return spec


def _plan(spec: dict[str, Any], model_dir: Path) -> Any:
    from medsight.planning import plan_class

    try:
        return plan_class(spec["task"]).model_validate(spec["plan"])
    except (ConfigError, ValueError) as exc:
        raise DataError(f"{model_dir / SPEC_FILE}: invalid plan ({str(exc).splitlines()[0]})") from exc


def load_network(path: Path, format: str, threads: int | None) -> Session:
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
    run: Session,
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
    return _sigmoid(blended) if activation == "sigmoid" else _softmax(blended, axis=0)


def _flip_mean(run: Session, x: np.ndarray, flips: list[tuple[int, ...]]) -> np.ndarray:
    total: np.ndarray | None = None
    for flip in flips:
        axes = tuple(a + 2 for a in flip)
        out = run(np.ascontiguousarray(np.flip(x, axes)) if axes else x).astype(np.float32)
        out = np.flip(out, axes) if axes else out
        total = out.copy() if total is None else total + out
    assert total is not None
    return total / len(flips) if len(flips) > 1 else total


def _softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(x).astype(np.float32, copy=False)
