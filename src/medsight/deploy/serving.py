"""What the REST service serves: a run's model loaded once behind :class:`ServedModel`.

A task family returns its served model from ``Task.served_model(run)``; the service
(:mod:`medsight.deploy.service`) loads it through the registry (:func:`load_service_model`), checks
each upload with the generic :meth:`ServedModel.check` (dimensionality, channels, NaN), asks
:meth:`ServedModel.predict` for the JSON answer (or a file), and documents the answer in OpenAPI with
the model's ``response_model`` (a subclass of :class:`PredictBody`). The web page draws what an answer
holds: ``preview.mask`` overlaid on ``preview.image``, ``probabilities`` as a list, ``volumes`` as a
table, so a new family's answer shows without editing it.

A served model whose answer is a label map also satisfies :class:`LabelMapModel`, which is what DICOM
SEG output (``medsight pacs``) needs.

Example::

    model = load_service_model("runs/RUN")
    model.check(image)
    body = model.predict(image, "json", preview=False)
"""

from __future__ import annotations

import base64
import io
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, Field

from medsight.errors import DataError

if TYPE_CHECKING:
    from medsight.io import Image
    from medsight.runs import Run

MEDIA_TYPES = {"png": "image/png", "nifti": "application/gzip"}  # the files /predict may answer
FILE_SUFFIXES = {"png": ".png", "nifti": ".nii.gz"}


class Preview(BaseModel):
    image: str = Field(description="PNG of the image (3D: one slice), base64")
    mask: str | None = Field(description="PNG of the label map on that slice, base64")
    slice: int | None = Field(description="3D: index of the slice along the last axis")


class Mask(BaseModel):
    format: Literal["png", "nifti"]
    media_type: str
    data: str = Field(description="the mask file, base64")


class OutOfDistribution(BaseModel):
    score: float = Field(description="the largest robust z of the image's descriptors against training")
    flagged: bool = Field(description="unlike the training images (about 1% of similar images are)")
    reason: str = Field(description="the descriptor furthest from the training images")
    feature_score: float | None = Field(
        default=None,
        description="the network's features against training (Mahalanobis), where a run has them",
    )


class PredictBody(BaseModel):
    """What every JSON answer of ``POST /predict`` holds; a family's response model adds its fields."""

    task: str = Field(description="the task family of the model")
    preview: Preview | None = None
    ood: OutOfDistribution | None = Field(
        default=None, description="the image against the training images (runs trained with a profile)"
    )


class ServedModel(ABC):
    """A run's model loaded once: ``check(image)``, then ``predict(image, output, preview)``.

    Subclasses (one per task family, in ``tasks/<name>/serving.py``) load the model in ``__init__``
    and set ``response_model``, the pydantic model of their JSON answer (OpenAPI documents it).

    Attributes:
        run: the run served. kind: its task family's name (``run.config.task``).
    """

    response_model: ClassVar[type[PredictBody]] = PredictBody

    def __init__(self, run: Run) -> None:
        self.run = run
        self.kind: str = run.config.task

    def info(self) -> dict[str, Any]:
        """What ``/health`` tells about the model."""
        plan = self.run.plan
        return {
            "network": getattr(plan, "network", None),
            "dim": plan.dim,
            "in_channels": plan.in_channels,
            "classes": list(plan.class_names),
            "checkpoint": self.run.checkpoint.name,
        }

    def check(self, image: Image) -> None:
        """Refuse images the model cannot take, with the reason.

        Raises:
            DataError: wrong dimensionality or channel count, or NaN / infinite values.
        """
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

    @abstractmethod
    def predict(self, image: Image, output: str, preview: bool) -> dict[str, Any] | bytes:
        """The answer for one checked image: a JSON-able dict of ``response_model`` when ``output`` is
        ``"json"``, else the file of that format (a key of MEDIA_TYPES), or DataError when the model
        answers no such file. ``preview``: add a :class:`Preview` (see :func:`preview`)."""

    def answer(
        self, image: Image, fields: dict[str, Any], *, with_preview: bool, labels: np.ndarray | None = None
    ) -> dict[str, Any]:
        """A JSON answer: ``task``, the family's ``fields`` and, ``with_preview``, the :func:`preview`
        of ``image`` with ``labels`` (a label map, or None) drawn over it."""
        body: dict[str, Any] = {"task": self.kind, **fields}
        if with_preview:
            body["preview"] = preview(image, labels)
        return body


@runtime_checkable
class LabelMapModel(Protocol):
    """A served model whose answer is a label map in the input's geometry (DICOM SEG output needs it)."""

    def label_map(self, image: Image, case_id: str = "case") -> Image:
        """The label map of ``image``, same geometry."""
        ...

    def segments(self) -> dict[str, int]:
        """The foreground labels of the map: name -> label value (DICOM SEG segments)."""
        ...


def load_service_model(run_dir: str | Path) -> ServedModel:
    """The run's model, loaded once, from its task family (``get_task(task).served_model(run)``)."""
    from medsight.runs import open_run
    from medsight.task_registry import get_task

    run = open_run(run_dir)
    return get_task(run.config.task).served_model(run)


# ------------------------------------------------------------------------------ files and previews


def without_meta(image: Image) -> Image:
    """``image`` without the input's metadata (source path, tags): only geometry travels."""
    from medsight.io import Image as ImageType

    keep = {k: image.meta[k] for k in ("sform_code", "qform_code") if k in image.meta}
    return ImageType(image.array, image.spacing, image.origin, image.direction, keep)


def encode_image(image: Image, format: str) -> bytes:
    """The bytes of ``image`` written as ``format`` (``png`` or ``nifti``), its metadata dropped."""
    from medsight.io import write_image

    with tempfile.TemporaryDirectory(prefix="medsight-serve-") as tmp:
        return write_image(without_meta(image), Path(tmp) / f"mask{FILE_SUFFIXES[format]}").read_bytes()


def file_body(data: bytes, format: str) -> dict[str, Any]:
    """A file inside a JSON answer (a :class:`Mask`)."""
    return {
        "format": format,
        "media_type": MEDIA_TYPES[format],
        "data": base64.b64encode(data).decode("ascii"),
    }


def _png(arr: np.ndarray) -> str:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def preview(image: Image, labels: np.ndarray | None) -> dict[str, Any]:
    """PNGs for display: the image (windowed, RGB kept) and the label map (None: no mask), for 3D on
    the slice along the last axis with the most foreground."""
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
