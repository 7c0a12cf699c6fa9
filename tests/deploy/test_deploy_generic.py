"""deploy/ is a library over the adapters a task family provides: it never names a task, and a new
family's served model, export and runtime work through the registry and the contract alone."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
from pydantic import BaseModel

import medsight.deploy
from medsight.deploy.serving import LabelMapModel, PredictBody, ServedModel
from medsight.errors import ConfigError

DEPLOY = Path(medsight.deploy.__file__).parent
FAMILIES = ("segment", "classify")
_NAMES = "|".join(FAMILIES)
TASK_NAMES = [
    re.compile(rf"\btasks\.({_NAMES})\b"),  # importing a family
    re.compile(rf"[\"']({_NAMES})[\"']"),  # comparing with a family's name
    re.compile(r"\b(Segment|Classif)\w*(Task|Plan|Family|Body|Predictor)\b|\b(Segmenter|Classifier)\b"),
    re.compile(rf"\bplanning\.({_NAMES})\b"),
]


@pytest.mark.parametrize("path", sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".py", ".js", ".html")))
def test_no_deploy_module_names_a_task(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = [m.group(0) for pattern in TASK_NAMES for m in pattern.finditer(text)]
    assert not found, f"{path.relative_to(DEPLOY)} names a task: {found}"


def test_each_family_points_at_its_own_runtime() -> None:
    """The runtime path comes from the folder's package, so a copied folder points at itself."""
    import importlib

    for name in FAMILIES:
        deploy = importlib.import_module(f"medsight.tasks.{name}.deploy")
        assert deploy.RUNTIME == f"{deploy.__package__}.runtime" == f"medsight.tasks.{name}.runtime"
        runtime = importlib.import_module(deploy.RUNTIME).Runtime
        assert hasattr(runtime, "predict_path") and issubclass(runtime.plan_type, BaseModel)


# ------------------------------------------------------------------ a family deploy/ has never seen
class Box(BaseModel):
    label: str
    score: float
    box: list[float]


class BoxesBody(PredictBody):
    boxes: list[Box]


class BoxFinder(ServedModel):
    """A served model of an imaginary detection family."""

    response_model: ClassVar[type[PredictBody]] = BoxesBody

    def predict(self, image: Any, output: str, preview: bool) -> dict[str, Any]:
        boxes = [{"label": "lesion", "score": 0.9, "box": [1.0, 2.0, 5.0, 6.0]}]
        return self.answer(image, {"boxes": boxes}, with_preview=preview)


def _toy_run(task: str = "detect") -> Any:
    plan = SimpleNamespace(dim=2, in_channels=1, class_names=["background", "lesion"])
    return SimpleNamespace(
        path=Path("runs/toy"), config=SimpleNamespace(task=task), plan=plan, checkpoint=Path("best.pt")
    )


def test_service_documents_and_answers_a_new_familys_response(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from fastapi.testclient import TestClient
    from PIL import Image as PILImage

    from medsight.deploy import service

    monkeypatch.setattr(service, "load_service_model", lambda run_dir: BoxFinder(_toy_run()))
    png = io.BytesIO()
    PILImage.fromarray(np.zeros((16, 16), np.uint8)).save(png, format="PNG")
    with TestClient(service.create_app("runs/toy", auth=False)) as client:
        assert client.get("/health").json()["task"] == "detect"
        schema = client.get("/openapi.json").json()
        ok = schema["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"]["$ref"].endswith("/BoxesBody") and "Box" in schema["components"]["schemas"]
        body = client.post("/predict?preview=true", files={"file": ("a.png", png.getvalue())}).json()
    assert body["task"] == "detect" and body["boxes"][0]["label"] == "lesion"
    assert body["preview"]["image"] and body["preview"]["mask"] is None


def test_pacs_refuses_a_model_without_label_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    import medsight.task_registry
    from medsight.deploy.pacs import label_map_model

    family = SimpleNamespace(served_model=BoxFinder)
    monkeypatch.setattr(medsight.task_registry, "get_task", lambda name: family)
    with pytest.raises(ConfigError, match=r"runs/toy: pacs stores a DICOM SEG.*detect run.*BoxFinder"):
        label_map_model(_toy_run())


def test_a_segmenters_served_model_answers_label_maps(segment_run: Path, fundus: Path) -> None:
    from medsight.deploy.pacs import label_map_model
    from medsight.io import read_image
    from medsight.runs import open_run

    model = label_map_model(open_run(segment_run))
    assert isinstance(model, LabelMapModel) and model.kind == "segment"
    assert model.segments() == {"vessel": 1}
    image = read_image(sorted((fundus / "imagesTs").iterdir())[0])
    labels = model.label_map(image)
    assert labels.shape == image.shape and set(np.unique(labels.array)) <= {0, 1}
