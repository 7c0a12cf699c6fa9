"""The training loop on toy tasks: budgets, logs, checkpoints, resume, determinism, early stopping."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from engine_toy import FlatMetricTask, LinearTask, RandomBatches, SelfFittingTask, val_batches
from torch import nn

from medsight.config import TrainConfig
from medsight.engine import Trainer, load_checkpoint
from medsight.engine.contract import StepContext, StepOutput
from medsight.errors import ConfigError, RunError

HERE = Path(__file__).parent


def make_config(**kw: Any) -> TrainConfig:
    base = {"iterations_per_epoch": 5, "lr": 0.05, "device": "cpu", "progress": False}
    return TrainConfig(**{**base, **kw})


def train(
    run_dir: Path,
    task_cls: type = LinearTask,
    val: Any = "default",
    resume: bool = True,
    callbacks: tuple = (),
    **kw: Any,
) -> tuple[Any, nn.Module, Trainer]:
    config = make_config(**kw)
    task = task_cls(config)
    trainer = Trainer(task, config, run_dir, callbacks=callbacks)
    model = task.build_model()
    result = trainer.fit(model, RandomBatches(), val_batches() if val == "default" else val, resume=resume)
    return result, model, trainer


def read_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_epoch_budget_learning_and_metrics_jsonl(tmp_path: Path) -> None:
    result, _, _ = train(tmp_path, epochs=6, val_every=2)
    assert (result.epochs, result.iterations, result.stopped_reason) == (6, 30, "epochs")
    lines = read_lines(tmp_path)
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in lines] == [5, 10, 15, 20, 25, 30]
    assert [("val_mse" in r) for r in lines] == [False, True, False, True, False, True]
    for r in lines:
        assert {"train_loss", "abs_err", "lr", "elapsed", "data_wait_fraction", "skipped_steps"} <= set(r)
        assert 0.0 <= r["data_wait_fraction"] <= 1.0 and math.isfinite(r["train_loss"])
    lrs = [r["lr"] for r in lines]
    assert lrs[0] < 0.05 and all(a > b for a, b in zip(lrs, lrs[1:], strict=False)) and lrs[-1] == 0.0
    vals = [r["val_mse"] for r in lines if "val_mse" in r]
    assert vals[-1] < vals[0]  # it learns
    assert result.best_metric == min(vals) and result.best_epoch == 6
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert best["loop"]["epoch"] == 6 and last["loop"]["step"] == 30 and last["task"] == "toy"


def test_max_iterations_and_time_budget(tmp_path: Path) -> None:
    result, _, _ = train(tmp_path / "it", max_iterations=13)
    assert (result.epochs, result.iterations, result.stopped_reason) == (3, 13, "max_iterations")
    assert read_lines(tmp_path / "it")[-1]["lr"] == 0.0  # the schedule ran to its end

    start = time.perf_counter()
    config = make_config(time_budget="1s")
    task = LinearTask(config)
    trainer = Trainer(task, config, tmp_path / "time")
    result = trainer.fit(task.build_model(), RandomBatches(delay=0.004), val_batches())
    assert result.stopped_reason == "time_budget" and result.epochs >= 2
    assert 0.5 <= result.wall_time <= time.perf_counter() - start
    lrs = [r["lr"] for r in read_lines(tmp_path / "time")]
    assert lrs[-1] < 0.6 * 0.05 and lrs[-1] < lrs[1]  # annealed by elapsed time alone


def test_data_wait_fraction_is_measured(tmp_path: Path) -> None:
    train(tmp_path, epochs=1, val=None, iterations_per_epoch=4)
    fast = read_lines(tmp_path)[0]["data_wait_fraction"]
    config = make_config(epochs=1, iterations_per_epoch=4)
    Trainer(LinearTask(config), config, tmp_path / "slow").fit(nn.Linear(8, 1), RandomBatches(delay=0.03))
    slow = read_lines(tmp_path / "slow")[0]["data_wait_fraction"]
    assert slow > 0.5 and slow > fast


def test_without_validation_best_is_the_final_model(tmp_path: Path) -> None:
    result, model, _ = train(tmp_path, epochs=2, val=None)
    assert result.best_metric is None
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert torch.equal(best["model"]["weight"], model.weight.detach())


def test_early_stopping_counts_validation_rounds(tmp_path: Path) -> None:
    result, _, _ = train(tmp_path / "a", FlatMetricTask, epochs=20, early_stopping_patience=2)
    assert (result.epochs, result.stopped_reason, result.best_epoch) == (3, "early_stopping", 1)
    result, _, _ = train(tmp_path / "b", FlatMetricTask, epochs=20, early_stopping_patience=2, val_every=2)
    assert (result.epochs, result.stopped_reason, result.best_epoch) == (6, "early_stopping", 2)


def test_same_seed_same_weights(tmp_path: Path) -> None:
    _, a, _ = train(tmp_path / "a", epochs=2, deterministic=True, seed=3)
    _, b, _ = train(tmp_path / "b", epochs=2, deterministic=True, seed=3)
    _, c, _ = train(tmp_path / "c", epochs=2, deterministic=True, seed=4)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)


class Killed(Exception):
    pass


class KillAfter:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        if logs["epoch"] == self.epoch:
            raise Killed


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    kw = {"epochs": 6, "seed": 1, "schedule": "cosine"}
    full, full_model, _ = train(tmp_path / "full", **kw)
    with pytest.raises(Killed):
        train(tmp_path / "cut", callbacks=(KillAfter(3),), **kw)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["loop"]["epoch"] == 3
    resumed, model, _ = train(tmp_path / "cut", **kw)
    assert resumed.resumed and (resumed.epochs, resumed.iterations) == (6, 30)
    assert torch.equal(model.weight, full_model.weight) and torch.equal(model.bias, full_model.bias)
    assert resumed.best_metric == full.best_metric
    keys = ("epoch", "step", "train_loss", "val_mse", "lr")
    assert [[r[k] for k in keys] for r in read_lines(tmp_path / "cut")] == [
        [r[k] for k in keys] for r in read_lines(tmp_path / "full")
    ]
    again, _, _ = train(tmp_path / "cut", **kw)  # a finished run resumes to nothing more
    assert (again.epochs, again.iterations, again.stopped_reason) == (6, 30, "epochs")
    fresh, _, _ = train(tmp_path / "cut", resume=False, **{**kw, "epochs": 2})
    assert not fresh.resumed and len(read_lines(tmp_path / "cut")) == 2


def test_resume_after_sigkill(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "engine_run_script.py"), str(tmp_path), "40", "0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    last = tmp_path / "checkpoints" / "last.pt"
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            if last.exists() and load_checkpoint(last)["loop"]["epoch"] >= 3:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    killed_at = load_checkpoint(last)["loop"]["epoch"]
    assert 3 <= killed_at < 40
    result, _, _ = train(tmp_path, epochs=40)
    assert result.resumed and (result.epochs, result.iterations) == (40, 200)
    assert [r["epoch"] for r in read_lines(tmp_path)] == list(range(1, 41))
    for name in ("last.pt", "best.pt"):
        assert load_checkpoint(tmp_path / "checkpoints" / name)["model"]["weight"].shape == (1, 8)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_extra_state_is_saved_and_checked(tmp_path: Path) -> None:
    config = make_config(epochs=1)
    task = LinearTask(config)
    Trainer(task, config, tmp_path, extra_state={"labels": ["bg", "fg"]}).fit(
        nn.Linear(8, 1), RandomBatches()
    )
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["extra_state"] == {"labels": ["bg", "fg"]}
    with pytest.raises(ConfigError, match="extra_state.plan"):
        Trainer(task, config, tmp_path, extra_state={"plan": object()})


def test_task_that_fits_itself(tmp_path: Path) -> None:
    result, model, _ = train(tmp_path, SelfFittingTask, epochs=3)
    assert model.count.item() == 3 * 5 * 16
    assert result.best_metric < 0.5  # the mean of y + 3 is near 3
    line = read_lines(tmp_path)[-1]
    assert line["lr"] is None and math.isfinite(line["train_loss"])
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"]["count"].item() == 240


class NoOptimizerTask(LinearTask):
    def configure_optimizers(self, model: nn.Module) -> None:
        return None


class SometimesNanTask(LinearTask):
    always = False

    def training_step(self, model: nn.Module, batch: Any, step: StepContext) -> StepOutput:
        out = super().training_step(model, batch, step)
        if self.always or step.step % 2 == 0:
            out.losses["main"] = out.losses["main"] * float("nan")
        return out


class AlwaysNanTask(SometimesNanTask):
    always = True


class WrongMonitorTask(LinearTask):
    monitor = "val_dice"


def test_errors_and_non_finite_steps(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="for no configured optimiser"):
        train(tmp_path / "a", NoOptimizerTask, epochs=1)
    result, model, _ = train(tmp_path / "b", SometimesNanTask, epochs=2, iterations_per_epoch=4)
    assert [r["skipped_steps"] for r in read_lines(tmp_path / "b")] == [2, 2]
    assert all(math.isfinite(r["train_loss"]) for r in read_lines(tmp_path / "b"))
    assert torch.isfinite(model.weight).all()
    with pytest.raises(RunError, match="non-finite"):
        train(tmp_path / "c", AlwaysNanTask, epochs=1)
    with pytest.raises(RunError, match="'val_dice' is not among the validation metrics"):
        train(tmp_path / "d", WrongMonitorTask, epochs=1)
    train(tmp_path / "e", epochs=1)
    with pytest.raises(RunError, match="resume=False"):
        train(tmp_path / "e", SelfFittingTask, epochs=2)
    with pytest.raises(ConfigError, match="val_every"):
        Trainer(LinearTask(make_config()), make_config(val_every=0), tmp_path)


def test_progress_bar_only_when_forced_or_on_a_tty(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = make_config(epochs=1)
    Trainer(LinearTask(config), config, tmp_path / "quiet").fit(nn.Linear(8, 1), RandomBatches())
    assert capsys.readouterr().err == ""
    Trainer(LinearTask(config), config, tmp_path / "bar", progress=True).fit(nn.Linear(8, 1), RandomBatches())
    assert "5/5" in capsys.readouterr().err


def test_optional_loggers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    config = make_config(epochs=2, log_tensorboard=True, log_mlflow=True)
    if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("mlflow") is None:
        with pytest.warns(UserWarning, match="not installed"):
            Trainer(LinearTask(config), config, tmp_path / "warn").fit(nn.Linear(8, 1), RandomBatches())

    scalars: list[tuple[str, float, int]] = []
    metrics: list[tuple[dict, int]] = []

    class FakeWriter:
        def __init__(self, log_dir: str) -> None:
            self.log_dir = log_dir

        def add_scalar(self, key: str, value: float, global_step: int) -> None:
            scalars.append((key, value, global_step))

        def flush(self) -> None: ...

        def close(self) -> None: ...

    fake_tb = types.ModuleType("torch.utils.tensorboard")
    fake_tb.SummaryWriter = FakeWriter  # type: ignore[attr-defined]
    fake_mlflow = types.ModuleType("mlflow")
    fake_mlflow.set_tracking_uri = lambda uri: None  # type: ignore[attr-defined]
    fake_mlflow.start_run = lambda run_name: run_name  # type: ignore[attr-defined]
    fake_mlflow.log_params = lambda params: None  # type: ignore[attr-defined]
    fake_mlflow.log_metrics = lambda m, step: metrics.append((m, step))  # type: ignore[attr-defined]
    fake_mlflow.end_run = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake_tb)
    monkeypatch.setitem(sys.modules, "mlflow", fake_mlflow)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    Trainer(LinearTask(config), config, tmp_path / "fake").fit(
        nn.Linear(8, 1), RandomBatches(), val_batches()
    )
    assert ("val_mse", pytest.approx(read_lines(tmp_path / "fake")[1]["val_mse"]), 10) in scalars
    assert [step for _, step in metrics] == [5, 10] and "train_loss" in metrics[0][0]


class TwoOptimizerTask(LinearTask):
    """Two networks, each with its own optimiser and loss; ``b``'s loss depends on ``a``'s output, as a
    generator's loss depends on the discriminator. ``b``'s loss is NaN on even steps."""

    name = "toy-two"

    def build_model(self) -> nn.Module:
        return nn.ModuleDict({"a": nn.Linear(8, 1), "b": nn.Linear(8, 1)})

    def configure_optimizers(self, model: nn.Module) -> list:
        from medsight.engine.contract import OptimizerSpec

        return [
            OptimizerSpec(torch.optim.SGD(model["a"].parameters(), lr=0.05), name="a"),
            OptimizerSpec(torch.optim.SGD(model["b"].parameters(), lr=0.05), name="b", clip_norm=1e-3),
        ]

    def training_step(self, model: nn.Module, batch: Any, step: StepContext) -> StepOutput:
        x, y = batch
        loss_a = nn.functional.mse_loss(model["a"](x), y)
        loss_b = nn.functional.mse_loss(model["b"](x) + model["a"](x), 2 * y)
        if step.step % 2 == 0:
            loss_b = loss_b * float("nan")
        return StepOutput({"a": loss_a, "b": loss_b})

    def validation_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"se": ((model["a"](x) - y) ** 2).sum(), "n": torch.tensor(float(y.numel()))}


def test_each_optimiser_steps_its_own_loss_with_its_own_clipping_and_skips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = make_config(epochs=4, iterations_per_epoch=10, lr=None)
    task = TwoOptimizerTask(config)
    trainer = Trainer(task, config, tmp_path)
    model = task.build_model()
    b_before = [p.detach().clone() for p in model["b"].parameters()]
    result = trainer.fit(model, RandomBatches(), val_batches())
    assert result.best_metric < 0.05  # "a" learnt its regression: its steps were never skipped
    b_after = [p.detach() for p in model["b"].parameters()]
    moved = float(torch.cat([(p - q).flatten() for p, q in zip(b_after, b_before, strict=True)]).norm())
    assert 0 < moved <= 20 * 0.05 * 1e-3 * (1 + 1e-4)  # "b" stepped on 20 of 40 steps, each clipped to 1e-3
    assert [r["skipped_steps"] for r in read_lines(tmp_path)] == [5, 5, 5, 5]
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert len(saved["optimizers"]) == 2


def test_grad_clip_is_configurable() -> None:
    from medsight.engine import build_optimizer

    assert build_optimizer(nn.Linear(2, 1), make_config(grad_clip=0.5))[0].clip_norm == 0.5
    assert build_optimizer(nn.Linear(2, 1), make_config(grad_clip=None))[0].clip_norm is None
    assert build_optimizer(nn.Linear(2, 1), make_config())[0].clip_norm == 12.0
