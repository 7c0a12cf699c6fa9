"""A REST service around a run folder: ``POST /predict`` an image, get the model's answer (a mask, the
probabilities ... whatever the run's task family answers, see :mod:`medsight.deploy.serving`).

Example::

    from medsight.deploy.service import create_app, serve
    app = create_app("runs/RUN", token="s3cret")                  # a FastAPI app (ASGI)
    serve(app, host="127.0.0.1", port=8000)                       # or any ASGI server

Endpoints: ``POST /predict`` (multipart field ``file``: a NIfTI, PNG/JPG/TIFF, NRRD/MHA, a DICOM file
or a .zip of a DICOM series; ``Authorization: Bearer <token>``), ``GET /health``, ``GET /`` (a web page
that uploads an image and shows the answer, a mask overlaid), ``GET /openapi.json`` and ``/docs``.

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

import hmac
import logging
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, File, HTTPException, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from medsight.deploy.service_queue import MAX_QUEUE, InferenceQueue, ServiceError
from medsight.deploy.serving import FILE_SUFFIXES, MEDIA_TYPES, ServedModel, load_service_model
from medsight.errors import ConfigError, DataError, MedsightError

if TYPE_CHECKING:
    from medsight.deploy.ood import InputCheck
    from medsight.io import Image

log = logging.getLogger(__name__)

TOKEN_ENV = "MEDSIGHT_API_TOKEN"
MAX_UPLOAD_BYTES = 256 * 1024**2
TIMEOUT_S = 120.0
UNZIP_FACTOR = 8  # a DICOM zip may expand to this many times the upload limit
PREDICT_PATH = "/predict"
CHUNK = 1024 * 1024
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


class ErrorBody(BaseModel):
    detail: str = Field(description="what was wrong")


class HealthBody(BaseModel):
    status: Literal["ok"]
    task: str = Field(description="the task family of the model served")
    run: str
    model: dict[str, Any]
    queue: int = Field(description="requests waiting or running")
    served: int = Field(description="predictions answered since the start")
    auth: bool
    max_upload_bytes: int
    timeout_s: float


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
    profile: InputCheck | None = None  # the run's training images, to flag unusual uploads


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
        run_dir: a run folder written by ``medsight train`` (of any task family that serves).
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
    from medsight.deploy.ood import InputCheck

    model = load_service_model(run_dir)
    settings.profile = InputCheck.load(model.run.path, model.run)
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
    ok_content = {media: {"schema": {"type": "string", "format": "binary"}} for media in MEDIA_TYPES.values()}

    @app.post(
        PREDICT_PATH,
        response_model=model.response_model,
        responses={200: {"content": ok_content}, **errors},
        summary=f"Predict one image ({model.kind} model)",
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
            return Response(
                result,
                media_type=MEDIA_TYPES[output],
                headers={"Content-Disposition": f'attachment; filename="mask{FILE_SUFFIXES[output]}"'},
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
    file: Any, output: str, preview: bool, model: ServedModel, queue: InferenceQueue, settings: _Settings
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
            answer = model.predict(image, output, preview)
            if isinstance(answer, dict) and settings.profile is not None:
                answer["ood"] = settings.profile.check(image).to_dict()
            return answer

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
