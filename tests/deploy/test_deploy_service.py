"""The REST service: auth, limits, bad uploads, results, OpenAPI fuzzing and a loopback load test."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from deploy_testutils import cube_dataset, dicom_series_zip
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from medsight.deploy.service import InferenceQueue, ServiceError, create_app, running_server
from medsight.errors import ConfigError
from medsight.io import read_image
from testkit import SEGMENT_QUICK

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 300_000


@pytest.fixture(scope="module")
def image_png(fundus: Path) -> bytes:
    return sorted((fundus / "imagesTs").glob("*.png"))[0].read_bytes()


@pytest.fixture(scope="module")
def seg_app(segment_run: Path):  # noqa: ANN201
    return create_app(segment_run, TOKEN, max_upload_bytes=LIMIT)


@pytest.fixture(scope="module")
def client(seg_app) -> TestClient:  # noqa: ANN001
    with TestClient(seg_app, raise_server_exceptions=False) as c:
        yield c


def _post(client: TestClient, name: str, data: bytes, query: str = "", **kw) -> httpx.Response:  # noqa: ANN003
    return client.post(f"/predict{query}", files={"file": (name, data)}, **{"headers": AUTH, **kw})


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _nifti(array: np.ndarray) -> bytes:
    import gzip

    import nibabel as nib

    return gzip.compress(nib.Nifti1Image(array, np.eye(4)).to_bytes())


# ------------------------------------------------------------------------------------------ basics


def test_health_names_the_run_and_model(client: TestClient, segment_run: Path) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["task"] == "segment" and body["run"] == segment_run.name
    assert body["model"]["dim"] == 2 and body["model"]["in_channels"] == 3
    assert body["model"]["classes"] == ["background", "vessel"]
    assert body["auth"] is True and body["max_upload_bytes"] == LIMIT
    assert str(segment_run.parent) not in json.dumps(body)  # no server paths


def test_openapi_describes_upload_and_bearer_auth(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/predict"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert post["security"] == [{"HTTPBearer": []}]
    assert {"200", "401", "413", "415", "422", "503", "504"} <= set(post["responses"])
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
)
def test_prediction_needs_the_token(client: TestClient, image_png: bytes, headers: dict) -> None:
    r = client.post("/predict", files={"file": ("a.png", image_png)}, headers=headers)
    assert r.status_code == 401 and r.json()["detail"] == "missing or wrong bearer token"
    assert r.headers["www-authenticate"] == "Bearer"


def test_token_from_environment_and_refusal_without_one(
    segment_run: Path, image_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDSIGHT_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="needs an API token"):
        create_app(segment_run)
    monkeypatch.setenv("MEDSIGHT_API_TOKEN", "from-env")
    with TestClient(create_app(segment_run)) as c:
        files = {"file": ("a.png", image_png)}
        env_auth = {"Authorization": "Bearer from-env"}
        assert c.post("/predict", files=files, headers=env_auth).status_code == 200
        assert c.post("/predict", files=files, headers=AUTH).status_code == 401
    monkeypatch.delenv("MEDSIGHT_API_TOKEN")
    with TestClient(create_app(segment_run, auth=False)) as c:
        assert c.post("/predict", files={"file": ("a.png", image_png)}).status_code == 200
        assert c.get("/health").json()["auth"] is False


# ------------------------------------------------------------------------------------------ results


def test_segmentation_json_has_mask_labels_and_areas(client: TestClient, image_png: bytes) -> None:
    r = _post(client, "case.png", image_png)
    assert r.status_code == 200
    body = r.json()
    assert body["shape"] == [48, 48] and body["labels"] == {"background": 0, "vessel": 1}
    mask = np.asarray(PILImage.open(io.BytesIO(base64.b64decode(body["mask"]["data"]))))
    assert body["mask"]["format"] == "png" and mask.shape == (48, 48)
    assert set(np.unique(mask)) <= {0, 1}
    vessel = body["volumes"]["vessel"]
    assert vessel["voxels"] == int((mask == 1).sum()) and vessel["unit"] == "mm2"
    assert "preview" not in body
    # the upload against the training images: their statistics, and the network's features of them
    assert set(body["ood"]) == {"score", "flagged", "reason", "feature_score"}
    assert body["ood"]["feature_score"] > 0 and isinstance(body["ood"]["flagged"], bool)


def test_mask_as_a_file_png_or_nifti(client: TestClient, image_png: bytes, tmp_path: Path) -> None:
    as_json = _post(client, "case.png", image_png).json()
    png = _post(client, "case.png", image_png, "?format=png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == base64.b64decode(as_json["mask"]["data"])
    nii = _post(client, "case.png", image_png, "?format=nifti")
    assert nii.status_code == 200 and nii.headers["content-type"] == "application/gzip"
    (tmp_path / "mask.nii.gz").write_bytes(nii.content)
    mask = read_image(tmp_path / "mask.nii.gz")
    np.testing.assert_array_equal(mask.array[0], np.asarray(PILImage.open(io.BytesIO(png.content))))


def test_preview_holds_image_and_mask_pngs(client: TestClient, image_png: bytes) -> None:
    body = _post(client, "case.png", image_png, "?preview=true").json()
    image = np.asarray(PILImage.open(io.BytesIO(base64.b64decode(body["preview"]["image"]))))
    mask = np.asarray(PILImage.open(io.BytesIO(base64.b64decode(body["preview"]["mask"]))))
    assert image.shape == (48, 48, 3) and mask.shape == (48, 48) and body["preview"]["slice"] is None


def test_classifier_answers_probabilities(classify_run: Path) -> None:
    with TestClient(create_app(classify_run, TOKEN)) as c:
        grey = np.zeros((28, 28), np.uint8)
        grey[4:18, 10:13] = 220  # a vertical bar
        r = c.post("/predict?preview=true", files={"file": ("bar.png", _png(grey))}, headers=AUTH)
        assert r.status_code == 200
        body = r.json()
        assert body["task"] == "classify" and set(body["probabilities"]) == {"class_0", "class_1"}
        assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert body["predicted"][0] in body["probabilities"] and body["preview"]["mask"] is None
        rgb = _post(c, "rgb.png", _png(np.zeros((28, 28, 3), np.uint8)))
        assert rgb.status_code == 422 and "3 channel(s); this model takes 1" in rgb.json()["detail"]
        assert _post(c, "bar.png", _png(grey), "?format=png").status_code == 422


@pytest.fixture(scope="module")
def cube_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3D one-channel segmenter (CT-like cubes)."""
    from medsight import api

    data = cube_dataset(tmp_path_factory.mktemp("data") / "cubes")
    overrides = [*SEGMENT_QUICK, "plan.patch_size=[16,16,16]"]
    return api.train(data, overrides=overrides, out=tmp_path_factory.mktemp("runs"), measure=False)


def test_dicom_zip_gets_a_3d_nifti_mask_and_logs_no_identifiers(
    cube_run: Path, client: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume = np.zeros((16, 16, 6), np.int16)
    volume[4:10, 5:11, 1:4] = 100
    archive = dicom_series_zip(tmp_path / "Doe_Jane.zip", volume, patient="Doe^Jane")
    with caplog.at_level(logging.DEBUG), TestClient(create_app(cube_run, TOKEN)) as c:
        r = _post(c, "Doe_Jane.zip", archive.read_bytes(), "?preview=true")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["shape"] == [16, 16, 6] and body["spacing"] == [1.0, 1.0, 2.0]
        assert body["mask"]["format"] == "nifti" and body["volumes"]["cube"]["unit"] == "mm3"
        (tmp_path / "mask.nii.gz").write_bytes(base64.b64decode(body["mask"]["data"]))
        mask = read_image(tmp_path / "mask.nii.gz")
        assert mask.shape == (16, 16, 6) and mask.spacing == (1.0, 1.0, 2.0)
        assert body["volumes"]["cube"]["size"] == pytest.approx(2.0 * int((mask.array == 1).sum()))
        assert 0 <= body["preview"]["slice"] < 6
        png = _post(c, "scan.zip", archive.read_bytes(), "?format=png")
        assert png.status_code == 422 and "format=png is only for 2D" in png.json()["detail"]
    assert "predict: 200" in caplog.text
    for secret in ("Doe", "Jane", "12345"):
        assert secret not in caplog.text and secret not in r.text
    two_d = _post(client, "Doe_Jane.zip", archive.read_bytes())  # the 2D fundus model
    assert two_d.status_code == 422 and "3D" in two_d.json()["detail"]


# ------------------------------------------------------------------------------------------ bad uploads


@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        ("empty.png", b"", 400, "empty"),
        ("notes.txt", b"hello", 415, "unsupported file type '.txt'"),
        ("fake.png", b"this is not a picture", 422, "cannot read picture"),
        ("scan.nii.gz", b"\x1f\x8b garbage", 422, "upload.nii.gz"),
        ("series.zip", b"PK\x03\x04 not really a zip", 422, "zip"),
        ("nosuffix", b"plain text", 422, "unknown image format"),
    ],
)
def test_bad_uploads_get_a_4xx_with_a_message(
    client: TestClient, name: str, data: bytes, status: int, message: str
) -> None:
    r = _post(client, name, data)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert "medsight-upload-" not in r.json()["detail"]  # no server temporary paths


def test_corrupt_wrong_dimension_and_wrong_channels(client: TestClient, image_png: bytes) -> None:
    truncated = _post(client, "cut.png", image_png[: len(image_png) // 2])
    assert truncated.status_code == 422 and "truncated" in truncated.json()["detail"]
    volume = _post(client, "vol.nii.gz", _nifti(np.zeros((8, 8, 8), np.float32)))
    assert volume.status_code == 422 and "3D" in volume.json()["detail"] and "2D" in volume.json()["detail"]
    grey = _post(client, "grey.png", _png(np.zeros((32, 32), np.uint8)))
    assert grey.status_code == 422 and "1 channel(s); this model takes 3" in grey.json()["detail"]
    nan = np.full((16, 16, 1, 1, 3), np.nan, np.float32)  # a 2D 3-channel NIfTI (vector intent)
    r = _post(client, "nan.nii.gz", _nifti(nan))
    assert r.status_code == 422 and "NaN" in r.json()["detail"]


def test_missing_file_field_is_a_422_with_a_message(client: TestClient) -> None:
    r = client.post("/predict", data={"other": "x"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"].startswith("file:")


def test_uploads_over_the_limit_are_refused_while_streaming(client: TestClient) -> None:
    big = b"\0" * (LIMIT + 1)
    declared = _post(client, "big.png", big)
    assert declared.status_code == 413 and "limit" in declared.json()["detail"]

    boundary = "xyz"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'

    def chunks():  # noqa: ANN202  (no Content-Length: the limit must hold while streaming)
        yield head.encode()
        for _ in range(10):
            yield b"\0" * (LIMIT // 4)
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(
        "/predict",
        content=chunks(),
        headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413


# ------------------------------------------------------------------------------------------ queue


def test_queue_answers_503_for_a_waiting_request_and_504_for_a_slow_one() -> None:
    queue = InferenceQueue(workers=1)
    order: list[str] = []

    def slow() -> str:
        time.sleep(0.6)
        order.append("slow")
        return "slow"

    async def main() -> list:  # noqa: ANN202
        first = asyncio.create_task(queue.run(slow, 0.2))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(queue.run(lambda: order.append("never"), 0.2))
        third = asyncio.create_task(queue.run(lambda: "third", 5))
        return await asyncio.gather(first, second, third, return_exceptions=True)

    first, second, third = asyncio.run(main())
    assert isinstance(first, ServiceError) and first.status == 504 and "limit of 0.2 s" in first.message
    assert isinstance(second, ServiceError) and second.status == 503 and "retry" in second.message
    assert third == "third"  # queued behind and answered, not lost
    assert order == ["slow"] and queue.pending == 0
    queue.shutdown()


def test_requests_beyond_the_time_limit_get_503_or_504(segment_run: Path, image_png: bytes) -> None:
    with TestClient(create_app(segment_run, TOKEN, timeout_s=0.001)) as c:
        r = _post(c, "a.png", image_png)
        assert r.status_code in (503, 504) and "0.001 s" in r.json()["detail"]


# ------------------------------------------------------------------------------------------ fuzzing


@pytest.mark.parametrize("with_token", [True, False])
def test_openapi_fuzzing_finds_no_500_and_conforming_responses(
    seg_app, image_png: bytes, with_token: bool
) -> None:  # noqa: ANN001
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    headers = AUTH if with_token else None
    schema = schemathesis.openapi.from_asgi("/openapi.json", seg_app)
    statuses: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        seen = statuses.setdefault(operation.label, set())

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def fuzz(case) -> None:  # noqa: ANN001
            response = case.call_and_validate(headers=headers, checks=checks)
            seen.add(response.status_code)  # noqa: B023  (fuzz runs right below, in this iteration)

        fuzz()
    predict = schema["/predict"]["POST"]
    for query in ({}, {"format": "png"}, {"format": "nifti", "preview": "true"}):  # real images too
        case = predict.Case(body={"file": image_png}, media_type="multipart/form-data", query=query)
        response = case.call_and_validate(headers=headers, checks=checks)
        statuses["POST /predict"].add(response.status_code)
    assert statuses["GET /health"] == {200}
    if with_token:  # real images answered, random bytes refused with a 4xx
        assert 200 in statuses["POST /predict"] and statuses["POST /predict"] <= {200, 400, 415, 422}
    else:
        assert statuses["POST /predict"] == {401}


# ------------------------------------------------------------------------------------------ load


def test_loopback_load_answers_every_request(seg_app, image_png: bytes) -> None:  # noqa: ANN001
    """8 clients for ~5 s against a real uvicorn server: every request answered 200, none lost."""
    clients, seconds = 8, 5.0
    sent = [0] * clients
    answered: list[list[int]] = [[] for _ in range(clients)]
    errors: list[str] = []
    with running_server(seg_app) as url:
        served_before = httpx.get(f"{url}/health").json()["served"]
        deadline = time.monotonic() + seconds

        def work(i: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                while time.monotonic() < deadline:
                    sent[i] += 1
                    try:
                        r = http.post("/predict", files={"file": ("a.png", image_png)}, headers=AUTH)
                        answered[i].append(r.status_code)
                    except httpx.HTTPError as exc:
                        errors.append(repr(exc))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        health = httpx.get(f"{url}/health").json()
    codes = [c for per in answered for c in per]
    assert not errors and len(codes) == sum(sent) >= clients
    assert set(codes) == {200}
    assert health["served"] - served_before == len(codes) and health["queue"] == 0
