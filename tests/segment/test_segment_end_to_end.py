"""Segmentation through the Python API and the CLI: train, predict, evaluate, report, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medsight import api
from medsight.data import load_dataset, make_phantom_dataset, read_label
from medsight.io import read_image
from medsight.runs import open_run
from testkit import SEGMENT_QUICK

QUICK = SEGMENT_QUICK
# enough training for the fundus phantom's vessels to be found (test Dice about 0.65-0.75 on 2 cores)
LEARN = [o for o in QUICK if not o.startswith(("train.max_iterations", "train.iterations_per_epoch"))] + [
    "train.max_iterations=60",
    "train.iterations_per_epoch=30",
]


@pytest.fixture(scope="module")
def fundus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom_dataset(
        tmp_path_factory.mktemp("data") / "fundus", kind="fundus2d", n_train=4, n_test=2, seed=3, size=64
    )


@pytest.fixture(scope="module")
def brain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom_dataset(
        tmp_path_factory.mktemp("data") / "brain", kind="brain3d", n_train=4, n_test=1, seed=3, size=32
    )


@pytest.fixture(scope="module")
def fundus_run(fundus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return api.train(fundus, overrides=LEARN, out=tmp_path_factory.mktemp("runs"), measure=False)


def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    pred, ref = pred.astype(bool), ref.astype(bool)
    return float(2 * (pred & ref).sum() / max(1, pred.sum() + ref.sum()))


def _group(summary: dict) -> str:
    """The (single) foreground class of a summary."""
    return next(k for k in summary if k not in ("info", "mean"))


def test_run_folder_has_every_artefact(fundus_run: Path) -> None:
    for name in (
        "config.yaml",
        "plan.json",
        "env.json",
        "splits.json",
        "metrics.jsonl",
        "report.html",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "eval/val/per_case.csv",
        "eval/val/summary.json",
    ):
        assert (fundus_run / name).is_file(), name
    plan = json.loads((fundus_run / "plan.json").read_text())
    assert plan["dim"] == 2 and plan["in_channels"] == 3
    assert "postprocess_lcc" in plan["reasons"]  # decided on validation
    summary = json.loads((fundus_run / "eval/val/summary.json").read_text())
    assert {"dice", "hd95", "nsd", "pixel_auc"} <= set(summary[_group(summary)])
    html = (fundus_run / "report.html").read_text()
    assert "data:image/png;base64" in html and "Metrics (val)" in html


def test_resume_of_a_finished_run_keeps_its_progress(fundus_run: Path) -> None:
    before = (fundus_run / "metrics.jsonl").read_text()
    assert api.resume(fundus_run) == fundus_run
    assert (fundus_run / "metrics.jsonl").read_text() == before  # the budget was spent: nothing redone
    assert (fundus_run / "report.html").is_file()


def test_predict_keeps_geometry_and_format(fundus_run: Path, fundus: Path, tmp_path: Path) -> None:
    spec = load_dataset(fundus)
    out = tmp_path / "masks"
    written = api.predict(fundus_run, spec.test[0].images[0], out / "one.png")
    assert written == [out / "one.png"]
    source = read_image(spec.test[0].images[0])
    mask = read_image(written[0])
    assert mask.shape == source.shape and mask.channels == 1
    assert set(np.unique(mask.array)) == {0, 1}  # background and vessels, not an empty mask
    folder_out = api.predict(fundus_run, fundus / "imagesTs", tmp_path / "all")
    assert len(folder_out) == len(spec.test)
    for case in spec.test:
        (written,) = [p for p in folder_out if p.name.startswith(case.case_id)]
        pred, ref = read_image(written).array[0], read_label(spec, case).array[0]
        assert 0.5 * ref.mean() < pred.mean() < 2.0 * ref.mean(), case.case_id  # vessels, not everything
        assert _dice(pred, ref) > 0.5, (case.case_id, _dice(pred, ref))


def test_evaluate_test_split_and_folders(fundus_run: Path, fundus: Path) -> None:
    summary = api.evaluate(fundus_run, split="test")
    group = _group(summary)
    assert summary[group]["dice"]["n"] == 2
    assert (fundus_run / "eval/test/per_case.csv").is_file()
    custom = api.evaluate(fundus_run, input=fundus / "imagesTs", reference=fundus / "labelsTs")
    # the same predictions, scored without the field-of-view masks the dataset provides
    assert custom[group]["dice"]["n"] == 2
    assert custom[group]["dice"]["mean"] == pytest.approx(summary[group]["dice"]["mean"], abs=0.05)


def test_3d_region_based_training_and_nifti_geometry(brain: Path, tmp_path: Path) -> None:
    run = api.train(brain, overrides=QUICK + ["plan.patch_size=[16,16,16]"], out=tmp_path, measure=False)
    plan = open_run(run).plan
    assert plan.regions and plan.out_channels == 3
    spec = load_dataset(brain)
    files = list(spec.test[0].images)
    source = read_image(files[0])
    written = api.predict(run, brain / "imagesTs", tmp_path / "pred")
    mask = read_image(written[0])
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-4)
    assert set(np.unique(mask.array)) <= set(plan.label_values)


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medsight.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_cli_train_predict_evaluate(fundus: Path, tmp_path: Path) -> None:
    sets = [x for item in QUICK for x in ("--set", item)]
    res = _cli("train", "segment", str(fundus), "--out", str(tmp_path), "--fold", "1", *sets)
    assert res.returncode == 0, res.stderr
    run = Path(res.stdout.split("run: ")[1].splitlines()[0])
    assert open_run(run).config.data.fold == 1
    res = _cli(
        "predict", "--run", str(run), "--input", str(fundus / "imagesTs"), "--output", str(tmp_path / "p")
    )
    assert res.returncode == 0, res.stderr
    assert sorted(p.suffix for p in (tmp_path / "p").iterdir()) == [".csv", ".png", ".png"]  # + ood.csv
    res = _cli("evaluate", "--run", str(run), "--split", "test")
    assert res.returncode == 0, res.stderr
    assert "dice" in res.stdout


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    res = _cli("fingerprint", str(tmp_path / "nowhere"))
    assert res.returncode == 2
    assert res.stderr.startswith("DataError:") and len(res.stderr.strip().splitlines()) == 1
    res = _cli("predict", "--run", str(tmp_path), "--input", str(tmp_path), "--output", str(tmp_path / "o"))
    assert res.returncode == 2 and "not a medsight run folder" in res.stderr
    res = _cli("train", "segment", str(tmp_path), "--set", "train.epocs=3")
    assert res.returncode == 2 and "train.epocs" in res.stderr


def test_cli_lists(tmp_path: Path) -> None:
    assert "dynunet" in _cli("list", "models").stdout
    assert "segment" in _cli("list", "tasks").stdout
    assert "drive" in _cli("list", "datasets").stdout


def test_torchrun_two_cpu_processes_train_one_run(fundus: Path, tmp_path: Path) -> None:
    sets = [x for item in [*QUICK, "train.device=cpu"] for x in ("--set", item)]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        "-m",
        "medsight.cli.main",
        "train",
        "segment",
        str(fundus),
        "--out",
        str(tmp_path),
        *sets,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1  # rank 0 created the run; rank 1 trained in the same folder
    assert (runs[0] / "report.html").is_file() and (runs[0] / "eval/val/summary.json").is_file()
    lines = (runs[0] / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # only rank 0 logs: 4 iterations in epochs of 2


def test_3d_region_based_learning_on_the_brain_phantom(tmp_path: Path) -> None:
    """Learning happens in 3D: whole-tumour Dice well above chance after a short training (40 steps gave
    0.81 here)."""
    data = make_phantom_dataset(tmp_path / "brain", kind="brain3d", n_train=6, n_test=1, seed=1, size=32)
    overrides = [
        "train.max_iterations=40",
        "train.iterations_per_epoch=40",
        "train.progress=false",
        "data.num_folds=3",
    ]
    run = api.train(data, overrides=overrides, out=tmp_path / "runs", measure=False)
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["val_dice_whole_tumour"] > 0.6, last
