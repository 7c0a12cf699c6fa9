"""A task family is one folder: a copy of tasks/classify renamed ``classify2`` inside the copy only, plus
its line in ``tasks.FAMILIES``, works with every verb (train, evaluate, predict, export, predict --model,
explain, robustness, serve) with no edit anywhere else. Run on a copy of the package, by the CLI (its
commands in one process, ``serve`` in its own)."""

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


VERBS = """
import json, sys
from typer.testing import CliRunner
from medsight.cli.main import app
found, outputs = {}, []
for args in json.loads(sys.argv[1]):
    for name, value in found.items():
        args = [a.replace("{" + name + "}", value) for a in args]
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        sys.exit(f"medsight {' '.join(args)}: {result.output}\\n{result.exception!r}")
    if args[0] == "train":
        found["run"] = result.stdout.split("run: ")[1].splitlines()[0].strip()
    if args[0] == "export":
        found["export"] = result.stdout.strip()
    outputs.append(result.stdout)
print(json.dumps({"outputs": outputs, **found}))
"""


def verbs(env: dict[str, str], commands: list[list[str]]) -> dict:
    """Run ``medsight`` commands in one process on the copy (a MONAI import per command cost 6-8 s);
    ``{run}`` and ``{export}`` in an argument stand for what ``train`` and ``export`` made."""
    out = subprocess.run(
        [sys.executable, "-c", VERBS, json.dumps(commands)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_classify2_works_with_every_verb(env: dict[str, str], tmp_path: Path) -> None:
    example = json.loads(python(env, EXAMPLE.format(folder=str(tmp_path / "data"))))
    assert example["module"].startswith(env["PYTHONPATH"])  # the copy, not the installed package
    sets = [arg for item in example["quick"] for arg in ("--set", item)]
    inputs, robust = example["inputs"], tmp_path / "robust"
    done = verbs(
        env,
        [
            ["list", "tasks"],
            ["train", "classify2", example["dataset"], "--out", str(tmp_path / "runs"), *sets],
            ["evaluate", "--run", "{run}", "--split", "test"],
            ["predict", "--run", "{run}", "--input", inputs, "--output", str(tmp_path / "pred")],
            ["export", "--run", "{run}", "--format", "onnx"],
            ["predict", "--model", "{export}", "--input", inputs, "--output", str(tmp_path / "pred-onnx")],
            ["explain", "--run", "{run}", "--input", inputs, "--output", str(tmp_path / "explained")],
            ["robustness", "--run", "{run}", "--attack", "fgsm", "--eps", "8/255", "--max-cases", "8"]
            + ["--no-detectors", "--out", str(robust)],
        ],
    )
    listed, _, evaluated, _, _, _, explained, robustness = done["outputs"]
    assert "classify2" in listed.split()
    assert Path(done["run"]).name.startswith("classify2-")
    assert json.loads(evaluated)["accuracy"]["mean"] > 0.5
    assert json.loads((Path(done["export"]) / "deploy.json").read_text())["runtime"].startswith(
        "medsight.tasks.classify2"
    )
    torch_csv = (tmp_path / "pred" / "predictions.csv").read_text().splitlines()
    onnx_csv = (tmp_path / "pred-onnx" / "predictions.csv").read_text().splitlines()
    assert [r.split(",")[-1] for r in torch_csv] == [r.split(",")[-1] for r in onnx_csv]  # same labels
    assert explained and any((tmp_path / "explained").glob("*.png"))
    assert "clean accuracy" in robustness
    assert json.loads((robust / "robustness.json").read_text())["task"] == "classify2"
    _serve_and_predict(env, done["run"], next(Path(inputs).rglob("*.png")))


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
