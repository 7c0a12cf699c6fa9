"""A trained anomaly run through the verbs test_every_task does not reach with the default model: the
self-fitting models exported to ONNX (scores equal to PyTorch's), predict's map geometry, the served
model, the attack adapter and the errors for bad options."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from medsight import api
from medsight.errors import ConfigError
from medsight.io import read_image
from medsight.runs import open_run
from medsight.task_registry import get_task

QUICK = [
    "train.max_iterations=6",
    "train.iterations_per_epoch=6",
    "train.progress=false",
    "plan.batch_size=8",
]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return get_task("anomaly").example(tmp_path_factory.mktemp("anomaly") / "data")


RUNS = {
    "rbm": ["plan.model=rbm", "plan.code_size=16"],
    "padim": ["plan.model=padim", "plan.network_kwargs={widen_factor: 0.25}", "plan.padim_features=16"],
}


@pytest.fixture(scope="module")
def runs(example, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("runs")
    return {
        name: api.train(example.dataset, task="anomaly", overrides=[*QUICK, *extra], out=out, measure=False)
        for name, extra in RUNS.items()
    }


def _scores(path: Path) -> dict[str, float]:
    with path.open() as f:
        return {r["input"]: float(r["score"]) for r in csv.DictReader(f)}


@pytest.mark.parametrize("model", list(RUNS))
def test_self_fitting_model_exports_and_predicts_in_the_input_geometry(
    model: str, runs: dict[str, Path], example, tmp_path: Path
) -> None:
    run = runs[model]
    assert open_run(run).plan.threshold is not None
    api.predict(run, example.inputs, tmp_path / "torch")
    export = api.export(run)
    api.predict(model=export, input=example.inputs, output=tmp_path / "onnx")
    torch_scores, onnx_scores = (
        _scores(tmp_path / "torch" / "scores.csv"),
        _scores(tmp_path / "onnx" / "scores.csv"),
    )
    assert torch_scores.keys() == onnx_scores.keys() and len(torch_scores) == 12
    for key, value in torch_scores.items():
        assert onnx_scores[key] == pytest.approx(value, rel=1e-3, abs=1e-3)
    first = sorted(example.inputs.rglob("*.png"))[0]
    heat = read_image(tmp_path / "torch" / "maps" / f"test_anomalous_{first.stem}.nii.gz")
    assert heat.shape == read_image(first).shape and heat.array.dtype == np.float32


def test_served_model_and_attack_adapter(runs: dict[str, Path], example) -> None:  # type: ignore[no-untyped-def]
    run = runs["rbm"]
    family, loaded = get_task("anomaly"), open_run(run)
    served = family.served_model(loaded)
    image = read_image(sorted(example.inputs.rglob("*.png"))[0])
    answer = served.predict(image, "json", preview=False)
    assert answer["score_kind"] == "free_energy" and isinstance(answer["anomalous"], bool)
    assert isinstance(served.predict(image, "nifti", preview=False), bytes)
    adapter = family.attack_adapter(loaded, "test", max_cases=6)
    batch = adapter.batches[0]
    x = batch.x.clone().requires_grad_(True)
    loss = adapter.loss(adapter.forward(x), batch.y)
    loss.sum().backward()
    assert loss.shape == (len(batch.y),) and x.grad is not None and torch.isfinite(x.grad).all()
    assert "auroc" in adapter.score([adapter.forward(batch.x).detach()], [batch])


def test_bad_options_name_what_exists(example, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"data.normal_class: 'healthy' is not a class .*'anomalous', 'normal'"
    ):
        api.train(
            example.dataset, task="anomaly", overrides=[*QUICK, "data.normal_class=healthy"], out=tmp_path
        )
    with pytest.raises(ConfigError, match=r"unknown anomaly model 'padin' \(did you mean 'padim'"):
        api.train(example.dataset, task="anomaly", overrides=[*QUICK, "plan.model=padin"], out=tmp_path)
