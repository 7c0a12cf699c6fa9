"""What the REST service computes: a run's model loaded once, checks of an uploaded image, and the
JSON-able answer (mask or probabilities, with a PNG preview for the web page)."""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsight.errors import ConfigError, DataError
from medsight.runs import Run, open_run

if TYPE_CHECKING:
    from medsight.io import Image


class ServedModel:
    """A loaded run: ``predict(image) -> JSON-able dict``."""

    kind: str

    def __init__(self, run: Run) -> None:
        self.run = run

    def info(self) -> dict[str, Any]:
        plan = self.run.plan
        return {
            "network": getattr(plan, "network", None),
            "dim": plan.dim,
            "in_channels": plan.in_channels,
            "classes": list(plan.class_names),
            "checkpoint": self.run.checkpoint.name,
        }

    def check(self, image: Image) -> None:
        """Refuse images the model cannot take, with the reason."""
        from medsight.io.readers import has_nonfinite

        plan = self.run.plan
        if image.ndim != plan.dim:
            raise DataError(
                f"the image is {image.ndim}D (spatial shape {image.shape}); "
                f"this model takes {plan.dim}D images"
            )
        if image.channels != plan.in_channels:
            raise DataError(
                f"the image has {image.channels} channel(s); this model takes {plan.in_channels}"
                + (" (send one file per case with the channels stacked)" if plan.in_channels > 1 else "")
            )
        if has_nonfinite(image):
            raise DataError("the image holds NaN or infinite values")


class _Segmenter(ServedModel):
    kind = "segment"

    def __init__(self, run: Run) -> None:
        from medsight.tasks.segment.pipeline import load_model
        from medsight.tasks.segment.predictor import Predictor

        super().__init__(run)
        self.predictor = Predictor(*load_model(run, "auto"))

    def predict(self, image: Image, output: str, preview: bool) -> dict[str, Any] | bytes:
        labels = self.predictor.predict_image(image, "upload")
        plan = self.run.plan
        names = plan.label_names()
        clean = _without_meta(labels)
        fmt = output if output != "json" else ("png" if labels.ndim == 2 else "nifti")
        if fmt == "png" and labels.ndim != 2:
            raise DataError("format=png is only for 2D images; ask for format=nifti or json")
        data = _encode(clean, ".png" if fmt == "png" else ".nii.gz")
        if output != "json":
            return data
        voxel = float(np.prod(labels.spacing))
        unit = "mm2" if labels.ndim == 2 else "mm3"
        arr = labels.array[0]
        volumes = {
            name: {"label": int(v), "voxels": int(n), "size": n * voxel, "unit": unit}
            for name, v in names.items()
            if v != 0
            for n in [int(np.count_nonzero(arr == v))]
        }
        body: dict[str, Any] = {
            "task": "segment",
            "shape": list(labels.shape),
            "spacing": list(labels.spacing),
            "labels": {k: int(v) for k, v in names.items()},
            "volumes": volumes,
            "mask": {
                "format": fmt,
                "media_type": MEDIA_TYPES[fmt],
                "data": base64.b64encode(data).decode("ascii"),
            },
        }
        if preview:
            body["preview"] = _preview(image, arr)
        return body


class _Classifier(ServedModel):
    kind = "classify"

    def __init__(self, run: Run) -> None:
        from medsight.tasks.classify.pipeline import load_model

        super().__init__(run)
        self.task, self.model = load_model(run, "auto")

    def predict(self, image: Image, output: str, preview: bool) -> dict[str, Any]:
        from medsight.data.classification import Sample
        from medsight.metrics.classification import predict_labels
        from medsight.tasks.classify.pipeline import predict_probabilities, stack_inputs

        if output != "json":
            raise DataError(f"format={output} is for segmentation models; a classifier answers JSON")
        plan = self.task.plan
        x = stack_inputs([Sample("upload", -1, array=image.array)], plan)
        probs = predict_probabilities(self.task, self.model, x)
        label = np.asarray(predict_labels(probs, plan.problem, plan.thresholds)[0])
        names = list(plan.class_names)
        if label.ndim == 0:
            predicted = [names[int(label)]]
        else:
            predicted = [n for n, v in zip(names, label, strict=True) if v]
        body: dict[str, Any] = {
            "task": "classify",
            "problem": plan.problem,
            "probabilities": {n: float(p) for n, p in zip(names, probs[0], strict=True)},
            "predicted": predicted,
        }
        if preview:
            body["preview"] = _preview(image, None)
        return body


MEDIA_TYPES = {"png": "image/png", "nifti": "application/gzip"}


def _without_meta(image: Image) -> Image:
    """The label map without the input's metadata (source path, tags): only geometry travels."""
    from medsight.io import Image as ImageType

    keep = {k: image.meta[k] for k in ("sform_code", "qform_code") if k in image.meta}
    return ImageType(image.array, image.spacing, image.origin, image.direction, keep)


def _encode(image: Image, suffix: str) -> bytes:
    from medsight.io import write_image

    with tempfile.TemporaryDirectory(prefix="medsight-serve-") as tmp:
        return write_image(image, Path(tmp) / f"mask{suffix}").read_bytes()


def _png(arr: np.ndarray) -> str:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _preview(image: Image, labels: np.ndarray | None) -> dict[str, Any]:
    """PNGs for display: the image (windowed, RGB kept) and the label map, for 3D on the slice
    along the last axis with the most foreground."""
    from medsight.report.plots import _display_image, middle_slice

    arr = np.asarray(image.array, dtype=np.float32)
    index = None
    if image.ndim == 3:
        index = middle_slice(labels) if labels is not None else arr.shape[-1] // 2
        arr = arr[..., index]
        labels = labels[..., index] if labels is not None else None
    shown = np.moveaxis(arr[:3], 0, -1) if arr.shape[0] == 3 else arr[0]
    grey = (np.clip(_display_image(shown), 0.0, 1.0) * 255).round().astype(np.uint8)
    out: dict[str, Any] = {"image": _png(grey), "mask": None, "slice": index}
    if labels is not None:
        out["mask"] = _png(np.clip(labels, 0, 255).astype(np.uint8))
    return out


def load_service_model(run_dir: str | Path) -> ServedModel:
    """The run's model, loaded once, wrapped for the service."""
    run = open_run(run_dir)
    if run.config.task == "segment":
        return _Segmenter(run)
    if run.config.task == "classify":
        return _Classifier(run)
    raise ConfigError(f"{run.path}: the service serves segment and classify runs, not {run.config.task!r}")
