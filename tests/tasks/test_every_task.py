"""Every registered task family, through the Python API and the CLI: train on its example data, predict,
evaluate, export to ONNX and predict again without torch. A new family in TASKS is tested here with no
edit: what it needs is its ``Task.example``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medsight import api
from medsight.planning.plan import PlanBase
from medsight.task_registry import get_task, task_names
from medsight.tasks.contract import Task


def cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "medsight.cli.main", *args], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")


def outputs(folder: Path) -> dict[str, int]:
    """Relative path -> size of every file a prediction wrote (the same names for both back-ends)."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_outputs(a: Path, b: Path) -> None:
    """The same files; images with the same voxels to float precision (a registration field from the
    CLI's process and the API's differed in the last bits, 7e-9 mm, which moved its compressed size by two
    bytes), every other file the same size."""
    import SimpleITK as sitk

    sizes_a, sizes_b = outputs(a), outputs(b)
    assert sizes_a.keys() == sizes_b.keys()
    for name, size in sizes_a.items():
        if name.endswith(IMAGE_SUFFIXES):
            x, y = (sitk.GetArrayFromImage(sitk.ReadImage(str(f / name))) for f in (a, b))
            scale = max(float(abs(x).max()), 1.0)
            assert x.shape == y.shape and abs(x.astype(float) - y).max() <= 1e-4 * scale, name
        else:
            assert size == sizes_b[name], name


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
