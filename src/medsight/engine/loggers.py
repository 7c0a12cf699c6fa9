"""Epoch loggers: metrics.jsonl always, TensorBoard and MLflow when asked for and installed."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from medsight.config import TrainConfig
from medsight.utils import atomic_write_text


@runtime_checkable
class Logger(Protocol):
    """Receives one record per epoch (a flat dict with at least 'epoch' and 'step')."""

    def log(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in record.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and key not in ("epoch", "step"):
            out[key] = float(value)
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN / Infinity
    return value


class JsonlLogger:
    """Appends one JSON line per record to ``path`` (opened, written and flushed per line)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, record: dict[str, Any]) -> None:
        line = json.dumps({k: _json_safe(v) for k, v in record.items()})
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def truncate_after(self, epoch: int) -> None:
        """Drop lines of epochs after ``epoch`` (work a resumed run is about to redo)."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("epoch", 0) <= epoch:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        atomic_write_text(self.path, "".join(k + "\n" for k in kept))

    def close(self) -> None:
        return None


class TensorBoardLogger:
    """Writes every numeric field as a scalar at the record's step."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, record: dict[str, Any]) -> None:
        for key, value in _numbers(record).items():
            self.writer.add_scalar(key, value, global_step=int(record["step"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MlflowLogger:
    """Logs the config as params and every numeric field as a metric at the record's step.

    Uses MLflow's tracking URI when one is configured (MLFLOW_TRACKING_URI), else ``run_dir/mlruns``.
    """

    def __init__(self, run_dir: Path, params: dict[str, Any]) -> None:
        import mlflow

        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            mlflow.set_tracking_uri((Path(run_dir).resolve() / "mlruns").as_uri())
        self.run = mlflow.start_run(run_name=Path(run_dir).name)
        mlflow.log_params({k: str(v) for k, v in params.items()})

    def log(self, record: dict[str, Any]) -> None:
        metrics = {k: v for k, v in _numbers(record).items() if math.isfinite(v)}
        self.mlflow.log_metrics(metrics, step=int(record["step"]))

    def close(self) -> None:
        self.mlflow.end_run()


def build_loggers(config: TrainConfig, run_dir: Path) -> list[Logger]:
    """The JSONL logger plus the optional ones the config turns on (a warning when not installed)."""
    run_dir = Path(run_dir)
    loggers: list[Logger] = [JsonlLogger(run_dir / "metrics.jsonl")]
    optional = [
        (config.log_tensorboard, "tensorboard", lambda: TensorBoardLogger(run_dir / "tensorboard")),
        (config.log_mlflow, "mlflow", lambda: MlflowLogger(run_dir, config.model_dump(mode="json"))),
    ]
    for wanted, package, make in optional:
        if not wanted:
            continue
        try:
            loggers.append(make())
        except ImportError:
            warnings.warn(
                f"train.log_{package} is on but {package!r} is not installed (pip install {package}); "
                "logging to metrics.jsonl only",
                stacklevel=2,
            )
    return loggers
