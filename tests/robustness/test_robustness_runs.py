"""Robustness of trained runs through the Python API and the CLI: `medsight robustness`, `medsight attack`,
adversarial training as a train option; the run is never changed by an attack."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medsight import api
from medsight.config import load_config
from medsight.engine.contract import StepContext
from medsight.io import read_image
from medsight.planning import planning_budget
from medsight.robustness.evaluate import evaluate_robustness
from testkit import CLASSIFY_QUICK, SEGMENT_QUICK

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "classify"))
from classify_testutils import class_folders, medmnist_like  # noqa: E402

QUICK = CLASSIFY_QUICK


@pytest.fixture(scope="module")
def bars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return medmnist_like(tmp_path_factory.mktemp("data") / "bars.npz", n=(96, 48, 32))


@pytest.fixture(scope="module")
def run(bars: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return api.train(
        bars, task="classify", overrides=QUICK, out=tmp_path_factory.mktemp("runs"), measure=False
    )


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "robustness" not in p.parts
    }


def test_robustness_report_of_a_classifier_leaves_the_run_unchanged(run: Path, tmp_path: Path) -> None:
    before = _digest(run)
    report = evaluate_robustness(
        run, attacks=["fgsm", "pgd"], eps=["2/255", "48/255"], steps=10, out=tmp_path / "rob"
    )
    assert _digest(run) == before  # checkpoints, plan, data, report untouched
    assert report["metric"] == "accuracy" and report["cases"] == 32
    clean = report["clean"]["accuracy"]
    assert clean >= 0.9
    by_key = {(r["attack"], r["eps"]): r for r in report["results"]}
    assert set(by_key) == {("fgsm", "2/255"), ("fgsm", "48/255"), ("pgd", "2/255"), ("pgd", "48/255")}
    strong = by_key[("pgd", "48/255")]
    assert strong["metrics"]["accuracy"] < clean - 0.3  # a large budget breaks the model
    assert strong["metrics"]["accuracy"] <= by_key[("fgsm", "48/255")]["metrics"]["accuracy"] + 0.05
    assert strong["perturbation"]["linf_mean"] <= 48 / 255 + 1e-6
    assert set(strong["detectors"]) >= {"mahalanobis", "lid", "feature-squeezing"}
    weak = by_key[("pgd", "2/255")]["detectors"]
    assert strong["detectors"]["mahalanobis"] > 0.9 and strong["detectors"]["lid"] > 0.9  # 48/255 shows
    assert strong["detectors"]["mahalanobis"] > weak["mahalanobis"]  # a larger budget is easier to detect
    saved = json.loads((tmp_path / "rob/robustness.json").read_text())
    assert saved["results"][0]["attack"] == "fgsm"
    html = (tmp_path / "rob/report.html").read_text()
    assert "accuracy under attack" in html and "Detectors of adversarial inputs" in html
    assert "Example perturbations" in html and html.count("data:image/png;base64") >= 3


def test_robustness_cli_defaults_into_the_run_folder_and_shows_in_its_report(run: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "medsight.cli.main",
            "robustness",
            "--run",
            str(run),
            "--attack",
            "fgsm",
            "--eps",
            "8/255",
            "--no-detectors",
            "--max-cases",
            "8",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "clean accuracy" in out.stdout and "fgsm" in out.stdout
    report = json.loads((run / "robustness/robustness.json").read_text())
    assert report["cases"] == 8 and "detectors" not in report["results"][0]
    api.evaluate(run, split="test")  # rebuilds the run's report, which now has a robustness section
    assert "accuracy under attack" in (run / "report.html").read_text()


def test_natural_shift_report_without_attacks_by_the_cli(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "shifts"
    args = ["robustness", "--run", str(run), "--attack", "none", "--shifts", "gamma,noise", "--out", str(out)]
    printed = subprocess.run(
        [sys.executable, "-m", "medsight.cli.main", *args], capture_output=True, text=True, check=True
    ).stdout
    assert "gamma severity 3" in printed
    report = json.loads((out / "robustness.json").read_text())
    assert report["results"] == [] and report["settings"]["shifts"] == ["gamma", "noise"]
    assert [(r["shift"], r["severity"]) for r in report["shifts"]] == [
        (s, k) for s in ("gamma", "noise") for k in (1, 2, 3)
    ]
    clean = report["clean"]["accuracy"]
    assert all(0 <= r["metrics"]["accuracy"] <= 1 for r in report["shifts"]) and clean > 0.5
    html = (out / "report.html").read_text()
    assert "under natural shifts" in html and "under attack" not in html
    assert (out / "metric_vs_shift.png").is_file() and not (out / "metric_vs_eps.png").exists()
    with pytest.raises(subprocess.CalledProcessError):  # an unknown shift: a one-line error, exit 2
        subprocess.run(
            [sys.executable, "-m", "medsight.cli.main", "robustness", "--run", str(run), "--shifts", "sepia"],
            capture_output=True,
            check=True,
        )


def test_defences_and_randomised_smoothing_in_the_report(run: Path, tmp_path: Path) -> None:
    common = {"attacks": ["pgd"], "eps": ["48/255"], "steps": 5, "max_cases": 16, "detectors": False}
    bare = evaluate_robustness(run, out=tmp_path / "bare", **common)
    report = evaluate_robustness(
        run,
        out=tmp_path / "defended",
        defences=["median:kernel=3"],
        smoothing_sigma="64/255",
        smoothing_n=50,
        **common,
    )
    assert report["settings"]["defences"] == ["median:kernel=3"]
    assert report["clean"]["accuracy"] >= 0.8  # the bars survive a 3x3 median
    assert report["results"][0]["metrics"]["accuracy"] != bare["results"][0]["metrics"]["accuracy"]
    smoothing = report["smoothing"]
    assert smoothing["sigma"] == pytest.approx(64 / 255) and smoothing["n"] == 50
    certified = smoothing["certified_accuracy"]
    assert list(certified) == ["0.0", "0.25", "0.5", "1.0"]
    assert certified["0.0"] >= certified["0.25"] >= certified["1.0"] and certified["0.0"] > 0.5
    assert "Randomised smoothing" in (tmp_path / "defended/report.html").read_text()
    from medsight.errors import ConfigError

    with pytest.raises(ConfigError, match="median:kernel=2|kernel"):
        evaluate_robustness(run, out=tmp_path / "bad", defences=["median:kernel=2"], **common)


def test_bad_attack_and_eps_are_clear_errors(run: Path, tmp_path: Path) -> None:
    from medsight.errors import ConfigError, RegistryError

    with pytest.raises(RegistryError, match="unknown attack 'pgdd'.*did you mean"):
        evaluate_robustness(run, attacks=["pgdd"], out=tmp_path)
    with pytest.raises(ConfigError, match="Hounsfield units need a CT model"):
        evaluate_robustness(run, attacks=["fgsm"], eps=["10HU"], out=tmp_path)
    cli = subprocess.run(
        [sys.executable, "-m", "medsight.cli.main", "robustness", "--run", str(run), "--eps", "two"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 2 and "eps" in cli.stderr and "Traceback" not in cli.stderr


def test_attack_cli_writes_adversarial_pictures_within_eps(run: Path, tmp_path: Path) -> None:
    pics = class_folders(tmp_path / "pics", n=6, size=28)
    originals = {p: p.read_bytes() for p in pics.rglob("*.png")}
    out = tmp_path / "adv"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "medsight.cli.main",
            "attack",
            "--run",
            str(run),
            "--input",
            str(pics),
            "--output",
            str(out),
            "--attack",
            "pgd",
            "--eps",
            "3/255",
            "--steps",
            "5",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(p.read_bytes() == data for p, data in originals.items())  # inputs untouched
    rows = list(csv.DictReader((out / "attack.csv").open()))
    assert len(rows) == 6
    changed = 0
    for row in rows:
        clean, adv = read_image(row["input"]).array, read_image(row["output"]).array
        assert adv.dtype == np.uint8 and adv.shape == clean.shape
        diff = np.abs(adv.astype(int) - clean.astype(int))
        assert diff.max() <= 3  # grey levels: 3/255 of the 8-bit range
        changed += int(diff.max() > 0)
        assert row["clean"] and row["adversarial"]
    assert changed == 6


def test_attack_refuses_to_write_over_its_inputs(run: Path, tmp_path: Path) -> None:
    from medsight.errors import ConfigError
    from medsight.robustness.files import attack_path

    pics = class_folders(tmp_path / "pics", n=2, size=28) / "vertical"
    with pytest.raises(ConfigError, match="never replace the inputs"):
        attack_path(run, pics, pics)


# ------------------------------------------------------------------------------------ segmentation
@pytest.fixture(scope="module")
def fundus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A phantom fundus dataset (with fields of view) and a segmenter trained on it, without TTA so that
    `medsight evaluate` scores the very network `medsight robustness` attacks."""
    from medsight.data import make_phantom_dataset

    root = tmp_path_factory.mktemp("seg")
    data = make_phantom_dataset(root / "fundus", kind="fundus2d", n_train=4, n_test=2, seed=3, size=64)
    run = api.train(data, overrides=[*SEGMENT_QUICK, "plan.tta=false"], out=root / "runs", measure=False)
    return data, run


def test_segmenter_robustness_matches_evaluate_and_is_seeded(
    fundus: tuple[Path, Path], tmp_path: Path
) -> None:
    _, run = fundus
    common = {"split": "test", "steps": 5, "seed": 3}
    report = evaluate_robustness(
        run, attacks=["fgsm", "pgd"], eps=["2/255", "64/255"], out=tmp_path / "rob", **common
    )
    assert report["metric"] == "dice" and report["task"] == "segment" and report["cases"] == 2
    assert "detectors" not in report["results"][0]  # the segment adapter does not support them
    clean = report["clean"]["dice"]
    evaluated = api.evaluate(run, split="test")["vessel"]["dice"]["mean"]  # inside the fields of view
    assert clean == pytest.approx(evaluated, abs=0.02)  # one Dice, one region of interest, no TTA
    assert clean > 0.1  # the network found vessels: there is something to break
    by_key = {(r["attack"], r["eps"]): r["metrics"]["dice"] for r in report["results"]}
    assert by_key[("pgd", "64/255")] < 0.5 * clean
    assert by_key[("pgd", "64/255")] <= by_key[("pgd", "2/255")] + 0.02
    assert by_key[("pgd", "64/255")] <= by_key[("fgsm", "64/255")] + 0.02
    again = evaluate_robustness(run, attacks=["pgd"], eps=["64/255"], out=tmp_path / "again", **common)
    first = next(r for r in report["results"] if (r["attack"], r["eps"]) == ("pgd", "64/255"))
    assert again["clean"] == report["clean"]
    assert (again["results"][0]["metrics"], again["results"][0]["perturbation"]) == (
        first["metrics"],
        first["perturbation"],
    )  # the seed fixes the random starts


def test_segmenter_under_a_rescale_scores_moved_labels(fundus: tuple[Path, Path], tmp_path: Path) -> None:
    _, run = fundus
    report = evaluate_robustness(run, attacks=[], shifts=["scale"], split="test", out=tmp_path / "s")
    dice = [r["metrics"]["dice"] for r in report["shifts"]]
    clean = report["clean"]["dice"]
    assert clean > 0.1 and all(0 <= d <= 1 for d in dice)
    assert dice[0] > 0.3 * clean  # a 1.25x zoom, labels zoomed with it: far from zero overlap


def test_segmenter_attack_writes_a_perturbed_picture(fundus: tuple[Path, Path], tmp_path: Path) -> None:
    from medsight.robustness.files import attack_path

    data, run = fundus
    image = next((data / "imagesTs").iterdir())
    written = attack_path(run, image, tmp_path / "adv", attack="fgsm", eps="4/255")
    adv, clean = read_image(written[0]).array, read_image(image).array
    assert adv.shape == clean.shape and 0 < np.abs(adv.astype(int) - clean.astype(int)).max() <= 4
    rows = list(csv.DictReader((tmp_path / "adv/attack.csv").open()))
    assert [r["input"] for r in rows] == [str(image)]
    assert rows[0]["clean"].endswith("foreground voxels") and rows[0]["adversarial"].endswith(
        "foreground voxels"
    )


# ------------------------------------------------------------------------------------ adversarial training
def test_adversarial_training_config_and_planning_budget() -> None:
    cfg = load_config(None, ["train.adversarial.method=trades", "train.time_budget=10m"], task="classify")
    assert cfg.train.adversarial.method == "trades" and cfg.train.adversarial.eps == "2/255"
    assert planning_budget(cfg) == pytest.approx(600 / (1 + 7 + 1))  # attack steps + TRADES' clean pass
    assert planning_budget(load_config(None, ["train.time_budget=10m"])) == 600
    from medsight.errors import ConfigError

    with pytest.raises(ConfigError, match="eps"):
        load_config(None, ["train.adversarial.eps=big"])


def _cpu_step(progress: float) -> StepContext:
    """The engine's context of a training step on the CPU, ``progress`` through the budget."""
    return StepContext(
        0, 0, torch.device("cpu"), [], lambda: torch.autocast("cpu", enabled=False), progress=progress
    )


@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_adversarial_training_step_trains_on_harder_inputs(run: Path, method: str) -> None:
    from medsight.config import AdversarialConfig, TrainConfig
    from medsight.runs import open_run
    from medsight.tasks.classify.pipeline import label_tensor, load_model, samples_of_split, stack_inputs
    from medsight.tasks.classify.task import ClassifyTask

    r = open_run(run)
    _, model = load_model(r, device="cpu")
    samples = samples_of_split(r, "test")[:16]
    batch = {"image": stack_inputs(samples, r.plan).float(), "label": label_tensor(samples, False)}
    ctx = _cpu_step(progress=1.0)
    plain = ClassifyTask(r.plan, TrainConfig()).training_step(model, batch, ctx).losses["main"]
    config = TrainConfig(adversarial=AdversarialConfig(method=method, eps="32/255", steps=5))
    torch.manual_seed(0)
    robust = ClassifyTask(r.plan, config).training_step(model, batch, ctx).losses["main"]
    assert robust > plain + 0.02  # the attack makes the batch harder (PGD) or adds a KL term (TRADES)
    warm = _cpu_step(progress=0.0)
    warmed_up = ClassifyTask(r.plan, config).training_step(model, batch, warm).losses["main"].detach()
    assert float(warmed_up) == pytest.approx(float(plain.detach()))  # eps is 0 before the warm-up


def test_segmenter_trains_adversarially(tmp_path: Path) -> None:
    from medsight.data import make_phantom_dataset
    from medsight.runs import open_run

    data = make_phantom_dataset(tmp_path / "fundus", kind="fundus2d", n_train=4, n_test=1, seed=3, size=64)
    adversarial = "train.adversarial={method: trades, eps: 4/255, steps: 2, warmup: 0}"
    run = api.train(data, overrides=[*SEGMENT_QUICK, adversarial], out=tmp_path / "runs", measure=False)
    r = open_run(run)
    assert r.config.train.adversarial.method == "trades"
    losses = [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert losses and all(np.isfinite(losses))
    from medsight.config import TrainConfig
    from medsight.tasks.segment.attack import attack_adapter
    from medsight.tasks.segment.task import SegmentTask

    adapter = attack_adapter(r, "test")  # a whole case on the network's grid, as a training batch
    batch = {"image": adapter.batches[0].x, "label": adapter.batches[0].y}
    ctx = _cpu_step(progress=1.0)
    plain = SegmentTask(r.plan, TrainConfig()).training_step(adapter.model, batch, ctx).losses["main"]
    torch.manual_seed(0)
    robust = SegmentTask(r.plan, r.config.train).training_step(adapter.model, batch, ctx).losses["main"]
    assert robust > plain + 1e-3  # TRADES adds its KL term to the segmentation loss
