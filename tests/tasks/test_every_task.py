"""Every registered task family, through the Python API and the CLI: train on its example data, predict,
evaluate, export to ONNX and predict again without torch. A new family in TASKS is tested here with no
edit: what it needs is its ``Task.example``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medsight import api
from medsight.cli.main import app
from medsight.planning.plan import PlanBase
from medsight.task_registry import get_task, task_names
from medsight.tasks.contract import Task


def cli(*args: str) -> str:
    """``medsight ARGS`` in this process (the entry point's own process is tested by the segment family's
    CLI tests; here a subprocess per verb cost a MONAI import, 6-8 s, 28 times)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"medsight {' '.join(args)}: {result.output}\n{result.exception!r}"
    return result.stdout


IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")
NOISE = 1e-4  # relative: a float from the CLI's process and the API's may differ in its last bits


def outputs(folder: Path) -> dict[str, int]:
    """Relative path -> size of every file a prediction wrote (the same names for both back-ends)."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def numbers(value: object) -> list[float]:
    """Every number in a parsed JSON value, but timings."""
    if isinstance(value, dict):
        return [x for k, v in value.items() if k != "seconds" for x in numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in numbers(v)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def contents(path: Path) -> list[float] | None:
    """The numbers a file holds where floating point may move its bytes (an image's voxels, a transform's
    parameters, a JSON's values); None for every other file, which must keep its size."""
    import SimpleITK as sitk

    name = path.name
    if name.endswith(IMAGE_SUFFIXES):
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(float).ravel().tolist()
    if name.endswith(".tfm"):
        transform = sitk.ReadTransform(str(path))
        return [*transform.GetParameters(), *transform.GetFixedParameters()]
    if name.endswith(".json"):
        return numbers(json.loads(path.read_text(encoding="utf-8")))
    return None


def assert_same_outputs(a: Path, b: Path) -> None:
    """The same files, holding the same numbers to float precision (a registration from the CLI's
    process and the API's differed in the last bits, which moved a transform file's size by three bytes);
    every other file the same size."""
    import numpy as np

    sizes_a, sizes_b = outputs(a), outputs(b)
    assert sizes_a.keys() == sizes_b.keys()
    for name, size in sizes_a.items():
        x, y = contents(a / name), contents(b / name)
        if x is None:
            assert size == sizes_b[name], name
        else:
            x, y = np.asarray(x), np.asarray(y)
            scale = max(float(np.abs(x).max(initial=0.0)), 1.0)
            assert x.shape == y.shape and np.abs(x - y).max(initial=0.0) <= NOISE * scale, name


@pytest.mark.parametrize("name", task_names())
def test_family_implements_the_contract(name: str) -> None:
    family = get_task(name)
    assert isinstance(family, Task) and family.name == name  # every method of the contract is there
    assert issubclass(family.plan_type, PlanBase)


@pytest.mark.parametrize("name", task_names())
def test_every_verb_through_api_and_cli(name: str, tmp_path: Path) -> None:
    family = get_task(name)
    example = family.example(tmp_path / "data")
    run = api.train(example.dataset, task=name, overrides=example.quick, out=tmp_path / "runs", measure=False)
    assert (run / "report.html").is_file() and (run / "checkpoints" / "best.pt").is_file()

    written = api.predict(run, example.inputs, tmp_path / "pred-api")
    assert written and all(p.is_file() for p in written)
    cli("predict", "--run", str(run), "--input", str(example.inputs), "--output", str(tmp_path / "pred-cli"))
    assert_same_outputs(tmp_path / "pred-cli", tmp_path / "pred-api")

    summary = json.loads(cli("evaluate", "--run", str(run), "--split", "val"))
    assert summary, "evaluate printed no metrics"
    assert (run / "eval" / "val" / "per_case.csv").is_file() and (
        run / "eval" / "val" / "summary.json"
    ).is_file()

    export = Path(cli("export", "--run", str(run), "--format", "onnx").strip())
    assert (export / "model.onnx").is_file() and (export / "deploy.json").is_file()
    cli(
        "predict",
        "--model",
        str(export),
        "--input",
        str(example.inputs),
        "--output",
        str(tmp_path / "pred-onnx"),
    )
    assert set(outputs(tmp_path / "pred-onnx")) == {
        p for p in outputs(tmp_path / "pred-api") if not p.endswith(".dcm")
    }


def test_run_config_task_is_checked_against_the_registry() -> None:
    from medsight.config import load_config
    from medsight.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown task 'clasify' \(did you mean 'classify'\?\)"):
        load_config(None, task="clasify")
    assert load_config(None).task in task_names()  # the default is a registered family
