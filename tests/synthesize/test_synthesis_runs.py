"""Synthesis runs end to end on tiny data: a class-conditional GAN (generate: named files, a CSV,
repeatable by seed, one class, and the labelled samples that augment a classifier) and pix2pix
(translation in the input's geometry); bad input names the option and what exists."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medsight import api
from medsight.errors import ConfigError, DataError
from medsight.tasks.synthesize import generate, labelled_samples
from medsight.tasks.synthesize.example import make_paired_example, make_pictures_example

QUICK = [
    "train.max_iterations=4",
    "train.iterations_per_epoch=2",
    "train.progress=false",
    "plan.batch_size=8",
    "plan.encoder_steps=4",
    "plan.network_kwargs={base_filters: 4}",
    "plan.discriminator_kwargs={base_filters: 4, num_classes: 2}",
]
PAIRED = [
    "train.max_iterations=4",
    "train.iterations_per_epoch=2",
    "train.progress=false",
    "plan.batch_size=4",
    "plan.encoder_steps=4",
    "plan.network_kwargs={base_filters: 4, depth: 2}",
    "plan.discriminator_kwargs={base_filters: 4, layers: 2}",
]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pictures_example(tmp_path_factory.mktemp("syn") / "pictures")


@pytest.fixture(scope="module")
def cgan_run(pictures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    return api.train(
        pictures, task="synthesize", overrides=[*QUICK, "plan.model=cgan"], out=out, measure=False
    )


def test_generate_writes_named_pictures_and_a_csv_repeatably(cgan_run: Path, tmp_path: Path) -> None:
    files = generate(cgan_run, 6, tmp_path / "a", seed=3)
    rows = list(csv.DictReader(files[0].open()))
    assert [r["class"] for r in rows] == ["disc", "ring"] * 3 and rows[0]["file"] == "disc_00000.png"
    assert all((tmp_path / "a" / r["file"]).is_file() for r in rows)
    again = generate(cgan_run, 6, tmp_path / "b", seed=3)
    other = generate(cgan_run, 6, tmp_path / "c", seed=4)
    assert [p.read_bytes() for p in files[1:]] == [p.read_bytes() for p in again[1:]]
    assert [p.read_bytes() for p in files[1:]] != [p.read_bytes() for p in other[1:]]
    result = CliRunner().invoke(
        _app(),
        [
            "generate",
            "--run",
            str(cgan_run),
            "--n",
            "2",
            "--output",
            str(tmp_path / "d"),
            "--class",
            "ring",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "ring_00000.png",
        "ring_00001.png",
        "samples.csv",
    ]
    export = api.export(cgan_run)  # the generator: latent map in, picture out
    assert (export / "model.onnx").is_file()


def _app():  # noqa: ANN202
    from medsight.cli.main import app

    return app


def test_generate_refuses_bad_requests(cgan_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--n: expected a number of samples >= 1, got 0"):
        generate(cgan_run, 0, tmp_path / "x")
    with pytest.raises(ConfigError, match=r"--class: 'malignant' is not a class .*'disc', 'ring'"):
        generate(cgan_run, 2, tmp_path / "x", class_name="malignant")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.png").write_bytes(b"x")
    with pytest.raises(DataError, match="not an empty folder"):
        generate(cgan_run, 2, tmp_path / "full")
    assert (tmp_path / "full" / "keep.png").read_bytes() == b"x"


def test_evaluation_reports_fid_memorisation_and_tstr(cgan_run: Path) -> None:
    summary = api.evaluate(cgan_run, split="test")["all"]
    for key in ("fid", "kid", "precision", "recall", "memorised_share", "tstr_auc", "trtr_auc"):
        assert np.isfinite(summary[key]["mean"]), key
    assert summary["trtr_auc"]["mean"] > 0.8  # discs and rings are easy on the encoder's features
    assert list((cgan_run / "eval" / "test" / "figures").glob("samples-*.png"))
    assert "Generated pictures and translations" in (cgan_run / "report.html").read_text()


def test_labelled_samples_come_in_the_data_units(cgan_run: Path) -> None:
    cases = labelled_samples(cgan_run, {"ring": 3, "disc": 1}, seed=0)
    assert sorted(int(c.classes) for c in cases) == [0, 1, 1, 1]
    arr = cases[0].read()
    assert arr.shape == (1, 16, 16) and arr.max() > 1.0 and np.allclose(arr, np.round(arr))  # 8-bit units
    with pytest.raises(ConfigError, match="not among the run's"):
        labelled_samples(cgan_run, {"tumour": 2})


def test_bad_plans_name_the_option_and_what_exists(pictures: Path, tmp_path: Path) -> None:
    paired = make_paired_example(tmp_path / "paired")
    with pytest.raises(DataError, match="pix2pix needs paired cases"):
        api.train(
            pictures, task="synthesize", overrides=[*QUICK, "plan.model=pix2pix"], out=tmp_path, measure=False
        )
    with pytest.raises(
        ConfigError, match=r"plan.source: the data has no channel 'pd'; its channels are t1, t2"
    ):
        api.train(
            paired,
            task="synthesize",
            overrides=["plan.source=pd", "plan.target=t2"],
            out=tmp_path,
            measure=False,
        )
    with pytest.raises(ConfigError, match="unknown synthesis model 'gan'"):
        api.train(pictures, task="synthesize", overrides=["plan.model=gan"], out=tmp_path, measure=False)


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_translation_keeps_the_input_geometry(model: str, tmp_path: Path) -> None:
    from medsight.io import read_image

    paired = make_paired_example(tmp_path / "paired")
    run = api.train(
        paired,
        task="synthesize",
        overrides=[*PAIRED, f"plan.model={model}", "plan.source=t1", "plan.target=t2"],
        out=tmp_path / "runs",
        measure=False,
    )
    summary = api.evaluate(run, split="test")["all"]
    assert {"psnr", "ssim", "mae", "hm_psnr", "hm_ssim", "hm_mae"} <= set(summary)
    source = paired / "subj02" / "subj02_t1.nii.gz"
    written = api.predict(run, source, tmp_path / "t2")
    out, src = read_image(written[1]), read_image(source)
    assert (
        out.shape == src.shape
        and np.allclose(out.spacing, src.spacing)
        and np.allclose(out.origin, src.origin)
    )
    assert float(out.array.min()) >= 0 and float(out.array.max()) <= 1
    with pytest.raises(ConfigError, match="translates images"):
        generate(run, 2, tmp_path / "g")


def test_synthetic_samples_reach_the_classifier_training_split_only(
    cgan_run: Path, pictures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medsight.tasks.classify import pipeline

    seen: dict[str, list[str]] = {}
    fit = pipeline.stack_inputs

    def spy(samples: list, plan: object):  # noqa: ANN202
        seen.setdefault("calls", []).append(",".join(s.case_id for s in samples))
        return fit(samples, plan)

    monkeypatch.setattr(pipeline, "stack_inputs", spy)
    quick = [
        "train.max_iterations=2",
        "train.iterations_per_epoch=1",
        "train.progress=false",
        "plan.batch_size=8",
        f"data.synthetic={cgan_run}",
        "data.synthetic_ratio=0.5",
        "plan.network_kwargs={widen_factor: 0.25}",
    ]
    run = api.train(pictures, task="classify", overrides=quick, out=tmp_path, measure=False)
    train_ids, val_ids = seen["calls"][0].split(","), seen["calls"][1].split(",")
    synthetic = [i for i in train_ids if i.startswith("synthetic_")]
    assert len(synthetic) == 24 and len(train_ids) == 48 + 24  # half as many as the 48 real ones
    assert {i.split("_")[1] for i in synthetic} == {"disc", "ring"}
    assert not [i for i in val_ids if i.startswith("synthetic_")]
    assert all(not c.startswith("synthetic_") for call in seen["calls"][2:] for c in call.split(","))
    assert (run / "report.html").is_file()
