"""A REST service around a run folder: ``POST /predict`` an image, get the mask or the probabilities.

Example::

    from medsight.deploy.service import create_app, serve
    app = create_app("runs/segment-drive-...", token="s3cret")   # a FastAPI app (ASGI)
    serve(app, host="127.0.0.1", port=8000)                       # or any ASGI server

Endpoints: ``POST /predict`` (multipart field ``file``: a NIfTI, PNG/JPG/TIFF, NRRD/MHA, a DICOM file
or a .zip of a DICOM series; ``Authorization: Bearer <token>``), ``GET /health``, ``GET /`` (a web page
that uploads an image and overlays the mask), ``GET /openapi.json`` and ``/docs``.

The model is loaded once. Inference runs in a bounded pool of worker threads (one by default):
concurrent requests wait in its queue, in arrival order, and none is dropped; a request that is still
waiting or running after ``timeout_s`` is answered 503 (never started: retry later) or 504 (too slow).
Uploads over ``max_upload_bytes`` are refused with 413 while they stream in, before they are parsed.
Bad uploads (empty, corrupt, not an image, wrong dimensionality or channel count, NaN) get a 4xx with
a message; logs hold status codes and timings only, never file names, tags or pixel data.

FastAPI resolves the endpoint annotations at run time, so this module imports fastapi at the top: import
it only where the service is wanted (the CLI does so inside ``medsight serve``).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import logging
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from medsight.errors import ConfigError, DataError, MedsightError
from medsight.runs import Run, open_run

if TYPE_CHECKING:
    from medsight.io import Image

log = logging.getLogger(__name__)

TOKEN_ENV = "MEDSIGHT_API_TOKEN"
MAX_UPLOAD_BYTES = 256 * 1024**2
TIMEOUT_S = 120.0
MAX_QUEUE = 64  # requests waiting for a worker beyond this are refused with 503
UNZIP_FACTOR = 8  # a DICOM zip may expand to this many times the upload limit
PREDICT_PATH = "/predict"
CHUNK = 1024 * 1024
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


class ServiceError(Exception):
    """An HTTP error with a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# ------------------------------------------------------------------------------------------------ schemas


class ErrorBody(BaseModel):
    detail: str = Field(description="what was wrong")


class Mask(BaseModel):
    format: Literal["png", "nifti"]
    media_type: str
    data: str = Field(description="the mask file, base64")


class Preview(BaseModel):
    image: str = Field(description="PNG of the image (3D: one slice), base64")
    mask: str | None = Field(description="PNG of the label map on that slice, base64")
    slice: int | None = Field(description="3D: index of the slice along the last axis")


class Volume(BaseModel):
    label: int
    voxels: int
    size: float = Field(description="area (2D) or volume (3D) in the unit given")
    unit: Literal["mm2", "mm3"]


class SegmentBody(BaseModel):
    task: Literal["segment"]
    shape: list[int]
    spacing: list[float]
    labels: dict[str, int]
    volumes: dict[str, Volume]
    mask: Mask
    preview: Preview | None = None


class ClassifyBody(BaseModel):
    task: Literal["classify"]
    problem: str
    probabilities: dict[str, float]
    predicted: list[str]
    preview: Preview | None = None


class HealthBody(BaseModel):
    status: Literal["ok"]
    task: Literal["segment", "classify"]
    run: str
    model: dict[str, Any]
    queue: int = Field(description="requests waiting or running")
    served: int = Field(description="predictions answered since the start")
    auth: bool
    max_upload_bytes: int
    timeout_s: float


# ------------------------------------------------------------------------------------------------ models


class _Model:
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


class _Segmenter(_Model):
    kind = "segment"

    def __init__(self, run: Run) -> None:
        from medsight.tasks.segment.pipeline import load_model
        from medsight.tasks.segment.predictor import Predictor

        super().__init__(run)
        self.predictor = Predictor(*load_model(run, "auto"))

    def predict(self, image: Image, output: str, preview: bool) -> dict[str, Any] | bytes:
        labels = self.predictor.predict_image(image, "upload")
        plan = self.run.plan
        names = (
            dict(zip(plan.class_names, plan.label_values, strict=False))
            if not plan.regions
            else {f"label_{v}": v for v in plan.label_values}
        )
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
                "media_type": _MEDIA[fmt],
                "data": base64.b64encode(data).decode("ascii"),
            },
        }
        if preview:
            body["preview"] = _preview(image, arr)
        return body


class _Classifier(_Model):
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


_MEDIA = {"png": "image/png", "nifti": "application/gzip"}


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


def load_service_model(run_dir: str | Path) -> _Model:
    """The run's model, loaded once, wrapped for the service."""
    run = open_run(run_dir)
    if run.config.task == "segment":
        return _Segmenter(run)
    if run.config.task == "classify":
        return _Classifier(run)
    raise ConfigError(f"{run.path}: the service serves segment and classify runs, not {run.config.task!r}")


# ------------------------------------------------------------------------------------------------ queue


class InferenceQueue:
    """A bounded pool of worker threads: jobs run in arrival order, at most ``workers`` at a time.

    The threads start with the first job (or :meth:`start`) and stop when the last server that
    started them stops (:meth:`shutdown`); the same app can be served again afterwards.
    """

    def __init__(self, workers: int = 1, max_queue: int = MAX_QUEUE) -> None:
        if workers < 1:
            raise ConfigError(f"workers: expected >= 1, got {workers}")
        self.workers, self.max_queue = workers, max_queue
        self.pending = 0
        self.served = 0  # requests answered 200 (counted by the app)
        self._pool: ThreadPoolExecutor | None = None
        self._users = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """A server starts using the queue."""
        with self._lock:
            self._users += 1

    def shutdown(self) -> None:
        """A server stops; the last one stops the threads (queued jobs are cancelled)."""
        with self._lock:
            self._users = max(0, self._users - 1)
            pool, self._pool = (self._pool, None) if self._users == 0 else (None, self._pool)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, job: Callable[[], Any]) -> Future:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="medsight-infer")
            return self._pool.submit(job)

    async def run(self, job: Callable[[], Any], timeout_s: float) -> Any:
        """Run ``job`` on a worker; ServiceError 503 when the queue is full or the job never started
        within ``timeout_s``, 504 when it started but did not finish in time."""
        with self._lock:
            if self.pending >= self.max_queue:
                raise ServiceError(503, f"the server is busy ({self.pending} requests waiting); retry later")
            self.pending += 1
        try:
            future = self._submit(job)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except TimeoutError:
            if future.cancelled() or future.cancel():
                raise ServiceError(
                    503,
                    f"the request waited {timeout_s:g} s behind other requests without starting; retry later",
                ) from None
            raise ServiceError(504, f"processing took longer than the limit of {timeout_s:g} s") from None

    def _done(self, _: Future | None) -> None:
        with self._lock:
            self.pending -= 1


# ------------------------------------------------------------------------------------------------ uploads


def upload_suffix(filename: str | None) -> str:
    """The image suffix of an uploaded file name (``.nii.gz``, ``.png``, ``.zip`` ...), or ``""``
    when it has none (the content is then sniffed).

    Raises:
        ServiceError: 415 for a suffix that is no supported image format.
    """
    from medsight.io.readers import detect_format, split_suffix, supported_formats

    name = Path(filename or "").name
    suffix = split_suffix(name)[1].lower() if name else ""
    if not suffix or len(suffix) > 12:
        return ""
    try:
        detect_format(Path("upload" + suffix))
    except DataError:
        raise ServiceError(
            415, f"unsupported file type {suffix!r}; send one of: {supported_formats()} (as a .zip)"
        ) from None
    return suffix


def read_upload(path: Path, max_unzipped_bytes: int) -> Image:
    """Read the uploaded file with medsight.io; a zip is a DICOM series (expanded size limited).

    Raises:
        DataError: unreadable, empty or unsupported content, with the reason.
    """
    from medsight.io import read_image
    from medsight.io.dicom import dicom_folder, is_zip

    if path.stat().st_size == 0:
        raise DataError("the upload is empty (0 bytes)")
    try:
        if is_zip(path):
            with dicom_folder(path, max_bytes=max_unzipped_bytes) as folder:
                return read_image(folder)
        return read_image(path)
    except MedsightError:
        raise
    except Exception as exc:  # a reader library choking on a corrupt file
        raise DataError(f"could not read the upload as an image ({type(exc).__name__}: {exc})") from exc


def _scrub(message: str, folder: Path) -> str:
    """Error messages name the upload, not the server's temporary paths."""
    return message.replace(str(folder) + os.sep, "").replace(str(folder), "upload")


class _BodyLimit:
    """ASGI middleware for ``POST /predict``: refuses unauthenticated requests (401) and bodies over
    ``max_bytes`` (413) before anything is parsed; the limit holds while the body streams in."""

    def __init__(self, app: Any, max_bytes: int, authorized: Callable[[str | None], bool]) -> None:
        self.app, self.max_bytes, self.authorized = app, max_bytes, authorized

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] != PREDICT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not self.authorized(headers.get("authorization")):
            await _send_json(send, 401, "missing or wrong bearer token", {"www-authenticate": "Bearer"})
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _send_json(send, 413, self._too_large())
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # FastAPI passes HTTPExceptions from body parsing on
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> str:
        return f"the upload is larger than the limit of {self.max_bytes / 1024**2:.4g} MiB"


async def _send_json(send: Callable, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------------------------ the app


@dataclass
class _Settings:
    token: str | None
    max_upload_bytes: int
    timeout_s: float


def resolve_token(token: str | None, auth: bool = True) -> str | None:
    """The API token: ``token``, else $MEDSIGHT_API_TOKEN; None only when ``auth`` is False.

    Raises:
        ConfigError: auth wanted and no (or an empty) token given.
    """
    if not auth:
        return None
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    if not token or not token.strip():
        raise ConfigError(
            f"token: the service needs an API token (--token or ${TOKEN_ENV}); "
            "pass --no-auth to serve without authentication"
        )
    return token.strip()


def create_app(
    run_dir: str | Path,
    token: str | None = None,
    *,
    auth: bool = True,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    timeout_s: float = TIMEOUT_S,
    workers: int = 1,
    max_queue: int = MAX_QUEUE,
) -> FastAPI:
    """The FastAPI app serving the run in ``run_dir`` (model loaded now, once).

    Args:
        run_dir: a run folder written by ``medsight train`` (segment or classify).
        token: the bearer token clients must send (default: $MEDSIGHT_API_TOKEN).
        auth: False serves without authentication (the token is then ignored).
        max_upload_bytes: larger uploads are refused with 413.
        timeout_s: queueing plus processing time limit per request (503 / 504 beyond it).
        workers: inference threads (requests beyond them wait in the queue).
        max_queue: waiting requests beyond this are refused with 503.

    Raises:
        ConfigError: no token and ``auth`` true; bad limits. RunError: not a run folder.
    """
    settings = _Settings(resolve_token(token, auth), int(max_upload_bytes), float(timeout_s))
    if settings.max_upload_bytes < 1 or settings.timeout_s <= 0:
        raise ConfigError(
            f"max_upload_bytes and timeout_s must be positive, got {max_upload_bytes} and {timeout_s}"
        )
    model = load_service_model(run_dir)
    queue = InferenceQueue(workers, max_queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        queue.start()
        yield
        queue.shutdown()

    app = FastAPI(
        lifespan=lifespan,
        title="medsight",
        version=_version(),
        summary=f"{model.kind} model {model.run.path.name}",
        description="Upload an image to `/predict`; the web page at `/` shows the result.",
    )
    app.state.model, app.state.queue = model, queue
    bearer = HTTPBearer(auto_error=False, description="the token the server was started with")

    def authorized(header: str | None) -> bool:
        if settings.token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), settings.token.encode()
        )

    def require_token(credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        header = f"Bearer {credentials.credentials}" if credentials else None
        if not authorized(header):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
            for e in exc.errors()
        ]
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    errors = {
        c: {"model": ErrorBody, "description": d}
        for c, d in {
            400: "empty upload",
            401: "missing or wrong token",
            413: "upload too large",
            415: "not a supported file type",
            422: "unreadable image, or one the model cannot take",
            503: "busy: waited too long in the queue, or the queue is full",
            504: "processing took too long",
        }.items()
    }
    ok_content = {
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "application/gzip": {"schema": {"type": "string", "format": "binary"}},
    }

    @app.post(
        PREDICT_PATH,
        response_model=SegmentBody | ClassifyBody,
        responses={200: {"content": ok_content}, **errors},
        summary="Segment or classify one image",
    )
    async def predict(
        file: Annotated[
            UploadFile, File(description="NIfTI, PNG/JPG/TIFF, NRRD/MHA, DICOM file or DICOM .zip")
        ],
        output: Annotated[
            Literal["json", "png", "nifti"],
            Query(alias="format", description="json (default), or the mask file itself: png (2D) or nifti"),
        ] = "json",
        preview: Annotated[bool, Query(description="add display PNGs of the image and mask")] = False,
        _: None = Security(require_token),
    ) -> Any:
        started = time.perf_counter()
        try:
            result = await _predict_upload(file, output, preview, model, queue, settings)
        except ServiceError as exc:
            log.info("predict: %d after %.3f s", exc.status, time.perf_counter() - started)
            raise HTTPException(exc.status, exc.message) from None
        queue.served += 1
        log.info("predict: 200 in %.3f s", time.perf_counter() - started)
        if isinstance(result, bytes):
            suffix = ".png" if output == "png" else ".nii.gz"
            return Response(
                result,
                media_type=_MEDIA[output],
                headers={"Content-Disposition": f'attachment; filename="mask{suffix}"'},
            )
        return JSONResponse(result)

    @app.get("/health", response_model=HealthBody, summary="Liveness and the model served")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "task": model.kind,
            "run": model.run.path.name,
            "model": model.info(),
            "queue": queue.pending,
            "served": queue.served,
            "auth": settings.token is not None,
            "max_upload_bytes": settings.max_upload_bytes,
            "timeout_s": settings.timeout_s,
        }

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(_static("index.html"), headers={"Content-Security-Policy": _CSP})

    @app.get("/app.js", include_in_schema=False)
    async def script() -> Response:
        return Response(_static("app.js"), media_type="text/javascript")

    app.add_middleware(_BodyLimit, max_bytes=settings.max_upload_bytes, authorized=authorized)
    return app


async def _predict_upload(
    file: Any, output: str, preview: bool, model: _Model, queue: InferenceQueue, settings: _Settings
) -> dict[str, Any] | bytes:
    """Save the upload to a temporary file, then read and predict it on a worker."""
    suffix = upload_suffix(file.filename)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medsight-upload-")))
        path = folder / f"upload{suffix}"
        size = 0
        with path.open("wb") as f:
            while chunk := await file.read(CHUNK):
                size += len(chunk)
                if size > settings.max_upload_bytes:
                    raise ServiceError(413, f"the upload is larger than {settings.max_upload_bytes} bytes")
                f.write(chunk)
        if size == 0:
            raise ServiceError(400, "the upload is empty (0 bytes)")

        def job() -> dict[str, Any] | bytes:
            image = read_upload(path, settings.max_upload_bytes * UNZIP_FACTOR)
            model.check(image)
            return model.predict(image, output, preview)

        try:
            return await queue.run(job, settings.timeout_s)
        except MedsightError as exc:
            raise ServiceError(422, _scrub(str(exc), folder)) from None
        except MemoryError:
            raise ServiceError(503, "the server ran out of memory on this image") from None
        except ServiceError:
            raise
        except Exception as exc:  # the model failing on an odd input: the client's image, not a crash
            log.exception("predict: inference failed (%s)", type(exc).__name__)
            raise ServiceError(
                422,
                f"the model could not process this image ({type(exc).__name__}: {_scrub(str(exc), folder)})",
            ) from None


def _static(name: str) -> str:
    return resources.files("medsight.deploy").joinpath("static", name).read_text(encoding="utf-8")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("medsight")
    except Exception:  # not installed (source checkout)
        return "0"


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn until interrupted (one process: the model is loaded once)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)


@contextmanager
def running_server(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields its base URL (``port=0``: a free
    port) and stops the server on exit. For tests, benchmarks and notebooks."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"the server did not start on {host}:{sock.getsockname()[1]}")
            time.sleep(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
