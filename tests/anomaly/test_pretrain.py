"""``medsight pretrain``: every method writes an encoder.pt whose tensors load into the network the
classify family builds for the same data (and the CLI verb runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medsight.config import TrainConfig
from medsight.data.phantom_bars import make_bar_dataset
from medsight.errors import ConfigError
from medsight.models.pretrained import load_pretrained
from medsight.tasks.anomaly import pretrain
from medsight.tasks.anomaly.planning import plan_anomaly
from medsight.tasks.classify.planning import plan_classification
from medsight.tasks.classify.task import ClassifyTask

QUICK = [
    "train.max_iterations=2",
    "train.iterations_per_epoch=2",
    "train.progress=false",
    "plan.batch_size=8",
    "plan.network_kwargs={small_input: true, widen_factor: 0.25}",
]


@pytest.fixture(scope="module")
def bars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bar_dataset(tmp_path_factory.mktemp("bars") / "data", n_train=16, n_val=4, n_test=4)


@pytest.fixture(scope="module")
def cli_ae_run(bars: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``medsight pretrain BARS --method ae`` through the CLI; the run folder it printed."""
    from typer.testing import CliRunner

    from medsight.cli.main import app

    torch.manual_seed(0)
    args = ["pretrain", str(bars), "--method", "ae", "--out", str(tmp_path_factory.mktemp("cli"))]
    for item in QUICK:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return Path(result.output.split("run: ")[1].splitlines()[0].strip())


@pytest.mark.parametrize("method", ["ae", "mae", "vae", "simclr", "dbn"])
def test_pretrained_encoder_loads_into_the_classify_network(
    method: str, bars: Path, cli_ae_run: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    run = cli_ae_run if method == "ae" else pretrain(bars, method, overrides=QUICK, out=tmp_path)
    info = json.loads((run / "encoder.json").read_text())
    assert info["method"] == method and info["images"] == 16
    from medsight.data.classification import load_classification

    data = load_classification(bars)
    overrides = {"batch_size": 8, "network_kwargs": info["network_kwargs"], "network": info["network"]}
    plan = plan_classification(data, measure=False, overrides=overrides)
    model = ClassifyTask(plan, TrainConfig()).build_model()  # what `medsight train classify` builds
    saved = torch.load(run / "encoder.pt", weights_only=True)
    report = load_pretrained(model, run / "encoder.pt")
    assert report["loaded"] == len(saved) > 0 and not report["mismatched"]
    assert all(k.startswith(("fc.", "5.")) for k in report["missing"] if "num_batches" not in k)
    key = next(iter(saved))
    torch.testing.assert_close(model.state_dict()[key], saved[key])


def test_padim_uses_a_pretrained_encoder_with_its_normalisation(cli_ae_run: Path) -> None:
    from tests.anomaly.anomaly_testutils import tiny_data

    encoder = str(cli_ae_run / "encoder.pt")
    plan = plan_anomaly(tiny_data(), overrides={"model": "padim", "pretrained": encoder})
    assert plan.normalization[0].scheme == "rgb" and plan.normalization[0].std != 1.0  # the classify z-score
    assert plan.network_kwargs == {"small_input": True, "widen_factor": 0.25} and plan.input_size == [28, 28]


def test_unknown_method_is_refused(bars: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"--method: unknown pretraining method 'simclear' \(did you mean 'simclr'"
    ):
        pretrain(bars, "simclear", out=tmp_path)
