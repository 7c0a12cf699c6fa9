"""The service's web page in headless Chromium: upload an image, see the mask overlaid (or the
probabilities), and a clear message for a wrong token. Skips when /usr/bin/chromium is absent."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.deploy.service import create_app, running_server

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "browser-token"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason=f"{CHROMIUM} not found: install the Debian chromium package to run"
)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


def _decode(b64: str) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(base64.b64decode(b64))))


def _upload(page, url: str, file: Path, token: str) -> None:  # noqa: ANN001
    page.goto(url + "/")
    page.fill("#token", token)
    page.set_input_files("#file", str(file))
    page.click("#send")
    page.wait_for_selector(
        "#overlay[data-state=done], #overlay[data-state=error]", state="attached", timeout=60_000
    )


def test_page_overlays_the_mask_on_the_image(browser, segment_run: Path, fundus: Path) -> None:  # noqa: ANN001
    app = create_app(segment_run, TOKEN)
    images = sorted((fundus / "imagesTs").glob("*.png"))
    with running_server(app) as url:
        # the expected answer, straight from the API: pick an image with some predicted vessel
        answers = {}
        for image in images:
            r = httpx.post(
                f"{url}/predict?preview=true",
                files={"file": (image.name, image.read_bytes())},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=60,
            )
            answers[image] = r.json()["preview"]
        image, preview = max(answers.items(), key=lambda kv: int((_decode(kv[1]["mask"]) > 0).sum()))
        mask, shown = _decode(preview["mask"]), _decode(preview["image"]).astype(int)
        assert (mask > 0).any(), "the tiny model predicted no vessel at all"

        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        _upload(page, url, image, TOKEN)
        assert page.get_attribute("#overlay", "data-state") == "done", page.inner_text("#status")
        assert page.inner_text("#status") == "mask overlaid"
        assert int(page.get_attribute("#overlay", "data-overlaid")) == int((mask > 0).sum())
        pixels = np.array(
            page.evaluate(
                "() => { const c = document.getElementById('overlay');"
                " return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }"
            )
        ).reshape(*mask.shape, 4)[..., :3]
        tinted = np.abs(pixels - shown).sum(axis=-1) > 3
        assert tinted[mask > 0].all() and not tinted[mask == 0].any()  # the overlay is exactly the mask
        assert "vessel" in page.inner_text("#table")
        assert "segment model" in page.inner_text("#model")

        _upload(page, url, image, "wrong")
        assert page.get_attribute("#overlay", "data-state") == "error"
        assert page.inner_text("#status") == "401: missing or wrong bearer token"
        assert not errors
        page.close()


def test_page_shows_classifier_probabilities(browser, classify_run: Path, tmp_path: Path) -> None:  # noqa: ANN001
    bar = np.zeros((28, 28), np.uint8)
    bar[4:18, 12:15] = 220
    PILImage.fromarray(bar).save(tmp_path / "bar.png")
    with running_server(create_app(classify_run, TOKEN)) as url:
        page = browser.new_page()
        _upload(page, url, tmp_path / "bar.png", TOKEN)
        assert page.get_attribute("#overlay", "data-state") == "done"
        assert page.inner_text("#status").startswith("predicted: class_")
        table = page.inner_text("#table")
        assert "class_0" in table and "class_1" in table and "(predicted)" in table
        page.close()
