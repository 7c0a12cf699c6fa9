"""Classification through the Python API and the CLI: train, evaluate --split test, predict, explain."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from classify_testutils import class_folders, medmnist_like

from medsight import api
from medsight.runs import open_run
from testkit import CLASSIFY_QUICK

QUICK = CLASSIFY_QUICK


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return medmnist_like(tmp_path_factory.mktemp("data") / "squares.npz", n=(96, 32, 32))


@pytest.fixture(scope="module")
def run(squares: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return api.train(
        squares, task="classify", overrides=QUICK, out=tmp_path_factory.mktemp("runs"), measure=False
    )


def test_training_learns_and_writes_every_artefact(run: Path) -> None:
    for name in ("plan.json", "metrics.jsonl", "checkpoints/best.pt", "eval/val/per_case.csv", "report.html"):
        assert (run / name).is_file(), name
    for plot in ("roc.png", "confusion.png", "reliability.png"):
        assert (run / "eval/val" / plot).is_file(), plot
    assert any((run / "eval/val/explanations").glob("right-*.png"))  # Grad-CAM of right cases
    summary = json.loads((run / "eval/val/summary.json").read_text())
    assert summary["all"]["accuracy"]["mean"] >= 0.9
    assert (
        summary["all"]["auc"]["ci_low"] <= summary["all"]["auc"]["mean"] <= summary["all"]["auc"]["ci_high"]
    )
    plan = open_run(run).plan
    assert plan.problem == "binary" and plan.thresholds is not None and "thresholds" in plan.reasons
    html = (run / "report.html").read_text()
    assert "Metrics (val)" in html and "data:image/png;base64" in html
    assert "Explanations of right and wrong cases (val)" in html and "Best and worst cases" not in html


def test_evaluate_test_split_and_cli(run: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "medsight.cli.main", "evaluate", "--run", str(run), "--split", "test"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["accuracy"]["mean"] >= 0.9
    rows = list(csv.DictReader((run / "eval/test/per_case.csv").open()))
    assert len(rows) == 32 and {"reference", "predicted", "correct"} <= set(rows[0])


def test_predict_folder_writes_one_row_per_image_with_class_columns(run: Path, tmp_path: Path) -> None:
    folder = class_folders(tmp_path / "pics", n=6, size=28)
    [path] = api.predict(run, folder, tmp_path / "out")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 6
    names = open_run(run).plan.class_names
    assert list(rows[0]) == ["input", *names, "predicted"]
    for r in rows:
        assert abs(sum(float(r[n]) for n in names) - 1) < 1e-4
        assert r["predicted"] in names
    # the folders name the truth: the model was trained on the same kind of image
    vertical = [r for r in rows if "/vertical/" in r["input"]]
    assert sum(r["predicted"] == names[1] for r in vertical) >= len(vertical) - 1


def test_explain_cli_writes_pngs(run: Path, tmp_path: Path) -> None:
    folder = class_folders(tmp_path / "pics", n=2, size=28)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "medsight.cli.main",
            "explain",
            "--run",
            str(run),
            "--input",
            str(folder),
            "--output",
            str(tmp_path / "maps"),
            "--method",
            "occlusion",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    written = [Path(line) for line in out.stdout.split()]
    assert len(written) == 2 and all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_class_folder_training_makes_patient_folds(tmp_path: Path) -> None:
    folder = class_folders(tmp_path / "pics", n=20, size=28)
    quick = [*QUICK[:-3], "train.max_iterations=4", "plan.batch_size=4", "data.num_folds=2"]
    run = api.train(folder, task="classify", overrides=quick, out=tmp_path / "runs", measure=False)
    folds = json.loads((run / "splits.json").read_text())
    assert len(folds) == 2 and len(folds[0]["val"]) == 10


def test_pretrained_weights_from_a_local_file_start_the_run(run: Path, tmp_path: Path) -> None:
    weights = run / "checkpoints" / "best.pt"
    quick = [*QUICK, "train.max_iterations=1", "train.lr=1e-7", f"plan.pretrained={weights}"]
    again = api.train(
        open_run(run).config.data.dataset, task="classify", overrides=quick, out=tmp_path, measure=False
    )
    summary = json.loads((again / "eval/val/summary.json").read_text())
    assert summary["all"]["accuracy"]["mean"] >= 0.9  # one tiny step: the accuracy is the pretrained model's


def test_3d_volumes_train_and_predict(tmp_path: Path) -> None:
    """(N, D, H, W) volumes as MedMNIST 3D stores them: a vertical or horizontal rod in a cube."""
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        vols = rng.integers(0, 40, size=(n, 16, 16, 16)).astype(np.uint8)
        labels = np.arange(n) % 2
        for i, y in enumerate(labels):
            a, b = rng.integers(3, 11, size=2)
            if y:
                vols[i, 2:14, a : a + 2, b : b + 2] = 220
            else:
                vols[i, a : a + 2, b : b + 2, 2:14] = 220
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = vols, labels[:, None]
    np.savez(tmp_path / "rods.npz", **arrays)
    quick = [*QUICK[:3], "train.max_iterations=30", "plan.batch_size=8", "plan.tta=false",
             "plan.network_kwargs={small_input: true, widen_factor: 0.25}"]  # fmt: skip
    run = api.train(
        tmp_path / "rods.npz", task="classify", overrides=quick, out=tmp_path / "runs", measure=False
    )
    plan = open_run(run).plan
    assert plan.dim == 3 and plan.input_size == [16, 16, 16]
    summary = api.evaluate(run, split="test")
    assert summary["all"]["auc"]["mean"] >= 0.75


@pytest.mark.realdata
def test_datasets_fetch_cli_reuses_a_local_copy_without_network(data_root: Path) -> None:
    root = data_root / "medmnist"
    cmd = [sys.executable, "-m", "medsight.cli.main", "datasets", "fetch", "medmnist", "breastmnist"]
    ok = subprocess.run(
        [*cmd, "--root", str(root), "--no-verify"], capture_output=True, text=True, check=True
    )
    assert Path(ok.stdout.strip()) == root / "breastmnist.npz"
    refused = subprocess.run([*cmd, "--root", str(root)], capture_output=True, text=True)
    assert refused.returncode == 2 and "MD5 mismatch" in refused.stderr  # the shared copy is re-saved
