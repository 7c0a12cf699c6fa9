"""A task family is one folder: a copy of tasks/classify renamed ``classify2`` inside the copy only, plus
its line in ``tasks.FAMILIES``, works with every verb (train, evaluate, predict, export, predict --model,
explain, robustness, serve) with no edit anywhere else. Run on a copy of the package, by the CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import medsight

PACKAGE = Path(medsight.__file__).parent


def copy_with_classify2(dest: Path) -> Path:
    """``dest/medsight``: the package with tasks/classify2, renamed inside the copy; returns ``dest``."""
    shutil.copytree(PACKAGE, dest / "medsight", ignore=shutil.ignore_patterns("__pycache__"))
    tasks = dest / "medsight" / "tasks"
    shutil.copytree(tasks / "classify", tasks / "classify2")
    for path in (tasks / "classify2").rglob("*.py"):
        text = path.read_text().replace("medsight.tasks.classify.", "medsight.tasks.classify2.")
        text = text.replace("medsight.tasks.classify ", "medsight.tasks.classify2 ")
        path.write_text(text.replace('name = "classify"', 'name = "classify2"'))
    registry = tasks / "__init__.py"
    text = registry.read_text()
    assert '    "medsight.tasks.classify",\n' in text
    registry.write_text(
        text.replace(
            '    "medsight.tasks.classify",\n',
            '    "medsight.tasks.classify",\n    "medsight.tasks.classify2",\n',
        )
    )
    return dest


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    src = copy_with_classify2(tmp_path_factory.mktemp("src"))
    return {**os.environ, "PYTHONPATH": str(src)}


def cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "medsight.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, f"medsight {' '.join(args)}: {out.stderr}"
    return out.stdout


def python(env: dict[str, str], code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


EXAMPLE = """
import json, pathlib
from medsight.task_registry import get_task
family = get_task("classify2")
e = family.example(pathlib.Path({folder!r}))
module = __import__(type(family).__module__, fromlist=["x"]).__file__
print(json.dumps({{"dataset": str(e.dataset), "inputs": str(e.inputs), "quick": e.quick, "module": module}}))
"""


def test_classify2_works_with_every_verb(env: dict[str, str], tmp_path: Path) -> None:
    assert "classify2" in cli(env, "list", "tasks").split()
    example = json.loads(python(env, EXAMPLE.format(folder=str(tmp_path / "data"))))
    assert example["module"].startswith(env["PYTHONPATH"])  # the copy, not the installed package
    sets = [arg for item in example["quick"] for arg in ("--set", item)]
    out = cli(env, "train", "classify2", example["dataset"], "--out", str(tmp_path / "runs"), *sets)
    run = out.split("run: ")[1].splitlines()[0].strip()
    assert Path(run).name.startswith("classify2-")
    assert json.loads(cli(env, "evaluate", "--run", run, "--split", "test"))["accuracy"]["mean"] > 0.5

    inputs = example["inputs"]
    cli(env, "predict", "--run", run, "--input", inputs, "--output", str(tmp_path / "pred"))
    export = cli(env, "export", "--run", run, "--format", "onnx").strip()
    assert json.loads((Path(export) / "deploy.json").read_text())["runtime"].startswith(
        "medsight.tasks.classify2"
    )
    cli(env, "predict", "--model", export, "--input", inputs, "--output", str(tmp_path / "pred-onnx"))
    torch_csv = (tmp_path / "pred" / "predictions.csv").read_text().splitlines()
    onnx_csv = (tmp_path / "pred-onnx" / "predictions.csv").read_text().splitlines()
    assert [r.split(",")[-1] for r in torch_csv] == [r.split(",")[-1] for r in onnx_csv]  # same labels

    assert cli(env, "explain", "--run", run, "--input", inputs, "--output", str(tmp_path / "explained"))
    assert any((tmp_path / "explained").glob("*.png"))
    robust = cli(
        env,
        "robustness",
        "--run",
        run,
        "--attack",
        "fgsm",
        "--eps",
        "8/255",
        "--max-cases",
        "8",
        "--no-detectors",
        "--out",
        str(tmp_path / "robust"),
    )
    assert "clean accuracy" in robust
    assert json.loads((tmp_path / "robust" / "robustness.json").read_text())["task"] == "classify2"
    _serve_and_predict(env, run, next(Path(inputs).rglob("*.png")))


def _serve_and_predict(env: dict[str, str], run: str, image: Path) -> None:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "medsight.cli.main", "serve", "--run", run, "--port", str(port), "--no-auth"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while True:
            try:
                health = httpx.get(f"{url}/health", timeout=5).json()
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "medsight serve did not start"
                time.sleep(0.5)
        assert health["task"] == "classify2"
        with image.open("rb") as f:
            answer = httpx.post(f"{url}/predict", files={"file": (image.name, f, "image/png")}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert set(answer.json()["probabilities"]) == {"horizontal", "vertical"}
    finally:
        server.terminate()
        server.wait(timeout=30)
