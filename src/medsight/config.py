"""Run configuration: pydantic models, YAML load/dump and ``--set key=value`` overrides.

Everything a run needs travels in a :class:`RunConfig`; nothing is read from globals. The resolved
config (every default written out) is saved as ``config.yaml`` in the run folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medsight.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where the data is and how it is split."""

    dataset: str = ""
    fold: int | Literal["all"] = Field(
        default=0, description="Validation fold, or 'all' to train on every case."
    )
    num_folds: int = 5
    val_fraction: float | None = Field(
        default=None,
        description="Use a single random split with this validation fraction instead of k folds.",
    )
    cache_dir: str | None = None
    normal_class: str | None = Field(
        default=None,
        description="The class whose cases count as normal, for families that learn from normal cases only.",
    )
    num_workers: int | None = Field(default=None, description="None: chosen from the number of cores.")
    synthetic: str | None = Field(
        default=None,
        description="A run folder whose family makes labelled samples (a class-conditional generator): "
        "they join the training split only.",
    )
    synthetic_ratio: float = Field(
        default=1.0, ge=0, description="Synthetic training samples per real training sample (data.synthetic)."
    )


class AdversarialConfig(_Strict):
    """Adversarial training (a defence): PGD adversarial training (Madry et al. 2018) trains on PGD
    examples; TRADES (Zhang et al. 2019) adds ``beta`` x KL(clean || adversarial) to the clean loss.
    ``eps`` and ``step_size`` are in the attack space (intensities scaled to [0, 1]; "10HU" for CT)."""

    method: Literal["pgd", "trades"] = "pgd"
    eps: str = "2/255"
    steps: int = Field(default=7, ge=1)
    step_size: str | None = Field(default=None, description="None: 2.5 * eps / steps.")
    beta: float = Field(default=6.0, ge=0, description="TRADES: weight of the robustness term.")
    warmup: float = Field(
        default=0.1, ge=0, le=1, description="Fraction of the iterations over which eps ramps up from 0."
    )

    @field_validator("eps", "step_size")
    @classmethod
    def _check_eps(cls, v: str | None) -> str | None:
        if v is not None:
            from medsight.intensity_units import parse_eps

            parse_eps(v)
        return v


class TrainConfig(_Strict):
    """The training budget, optimiser and schedule."""

    epochs: int | None = None
    iterations_per_epoch: int = 50
    max_iterations: int | None = None
    time_budget: str | None = Field(default=None, description="Wall-clock budget such as '20m', '1h', '90s'.")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float | None = Field(default=None, description="None: 3e-3 for AdamW, 1e-2 for SGD.")
    weight_decay: float = 3e-5
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    grad_clip: float | None = Field(
        default=12.0, gt=0, description="Max gradient norm of each optimiser (nnU-Net's 12); null: none."
    )
    val_every: int = 1
    early_stopping_patience: int | None = None
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: bool = True
    log_tensorboard: bool = False
    log_mlflow: bool = False
    progress: bool = True
    adversarial: AdversarialConfig | None = Field(
        default=None, description="Adversarial training, e.g. {method: pgd, eps: 2/255}; None: off."
    )

    @field_validator("time_budget")
    @classmethod
    def _check_budget(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @property
    def time_budget_seconds(self) -> float | None:
        return None if self.time_budget is None else parse_duration(self.time_budget)

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 3e-3 if self.optimizer == "adamw" else 1e-2


class RunConfig(_Strict):
    """The whole configuration of one ``medsight train`` run."""

    task: str = Field(default_factory=lambda: _default_task(), description="The task family.")
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    plan: dict[str, Any] = Field(default_factory=dict, description="Overrides of planned fields.")
    out: str = "runs"
    name: str | None = None

    @field_validator("task")
    @classmethod
    def _check_task(cls, v: str) -> str:
        from medsight.errors import RegistryError
        from medsight.task_registry import get_task

        try:
            get_task(v)
        except RegistryError as exc:
            raise ConfigError(f"task: {exc}") from None
        return v.lower()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _default_task() -> str:
    from medsight.task_registry import default_task

    return default_task()


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """'20m' -> 1200.0, '1.5h' -> 5400.0, '90s' or '90' -> 90.0."""
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(f"train.time_budget: expected a duration like '20m', '1h' or '90s', got {text!r}")
    value, unit = float(match.group(1)), (match.group(2) or "s").lower()
    return value * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}[unit]


def parse_override(item: str) -> tuple[list[str], Any]:
    """'train.epochs=50' -> (['train', 'epochs'], 50); the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=50")
    key, raw = item.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"--set {item!r}: the key is empty")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a nested dict (a new dict is returned)."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for k in keys[:-1]:
            if node.get(k) is None:  # an optional section left unset (None) becomes a new one
                node[k] = {}
            node = node[k]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {k!r} is not a section")
        node[keys[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, **base: Any) -> RunConfig:
    """Build a RunConfig from an optional YAML file, keyword defaults and ``--set`` overrides."""
    data: dict[str, Any] = {}
    for key, value in base.items():
        if value is not None:
            data[key] = value
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f"{p}: config file not found") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level, found {type(loaded).__name__}")
        data = _merge(data, loaded)
    data = apply_overrides(data, overrides or [])
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, path)) from exc


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _format_validation(exc: ValidationError, path: str | Path | None) -> str:
    where = f"{path}: " if path else ""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        got = err.get("input")
        parts.append(f"{loc}: {err['msg']} (got {got!r})")
    return where + "; ".join(parts)
