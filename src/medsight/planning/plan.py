"""The Plan: everything planning chose for a run, with the reason for each choice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medsight.errors import ConfigError


class ChannelNorm(BaseModel):
    """Intensity normalisation of one input channel.

    ``scheme``: "ct" clips to [clip_low, clip_high] then z-scores with the dataset's mean/std;
    "zscore" z-scores each image (inside its non-zero mask when ``use_mask``); "rgb" scales 0..255 to
    0..1 then z-scores with the dataset's mean/std; "none" leaves values as they are.
    """

    model_config = ConfigDict(extra="forbid")
    scheme: Literal["ct", "zscore", "rgb", "none"]
    clip_low: float | None = None
    clip_high: float | None = None
    mean: float | None = None
    std: float | None = None
    use_mask: bool = False


class PlanBase(BaseModel):
    """What every task's plan can do: save, load, and take ``--set plan.<field>=...`` overrides."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def save(self, path: str | Path) -> None:
        from medsight.utils import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.model_dump(mode="json"), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Self:
        p = Path(path)
        try:
            return cls.model_validate_json(p.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"{p}: plan.json not found") from exc
        except ValidationError as exc:
            raise ConfigError(
                f"{p}: invalid plan ({exc.errors()[0]['loc']}: {exc.errors()[0]['msg']})"
            ) from exc

    def with_overrides(self, overrides: dict[str, Any]) -> Self:
        """Apply user overrides (from ``plan:`` in the config or ``--set plan.x=...``)."""
        if not overrides:
            return self
        data = self.model_dump()
        unknown = [k for k in overrides if k not in data]
        if unknown:
            from medsight.errors import did_you_mean

            k = unknown[0]
            raise ConfigError(f"plan.{k}: no such plan field{did_you_mean(k, list(data))}")
        data.update(overrides)
        data["reasons"] = {**data["reasons"], **{k: "set by the user" for k in overrides}}
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(
                f"plan.{'.'.join(map(str, err['loc']))}: {err['msg']} (got {err.get('input')!r})"
            ) from exc


class Plan(PlanBase):
    """What a task will train with. Saved as plan.json; ``--set plan.<field>=...`` overrides a field."""

    task: str = "segment"
    dataset: str = ""
    dim: Literal[2, 3]
    in_channels: int
    class_names: list[str]  # output classes (background first) or region names when region-based
    label_values: list[int]  # the integer values of the reference label maps, background first
    regions: dict[str, list[int]] | None = None
    target_spacing: list[float]
    normalization: list[ChannelNorm]
    patch_size: list[int]
    batch_size: int
    network: str = "dynunet"
    network_kwargs: dict[str, Any] = Field(default_factory=dict)
    deep_supervision: bool = True
    loss: Literal["dice_ce", "dice_focal"] = "dice_ce"
    foreground_oversample: float = 0.33
    augment: bool = True
    sliding_window_overlap: float = 0.5
    tta: bool = True
    postprocess_lcc: bool = False
    reasons: dict[str, str] = Field(default_factory=dict)
    fingerprint_summary: dict[str, Any] = Field(default_factory=dict)

    @property
    def out_channels(self) -> int:
        """Network output channels: one per region (sigmoid) or one per class (softmax)."""
        return len(self.regions) if self.regions else len(self.class_names)

    def label_names(self) -> dict[str, int]:
        """Name -> value of the label maps predictions are written as (background included): the class
        names, or ``label_<value>`` when the plan trains overlapping regions (their names are not values)."""
        if self.regions:
            return {f"label_{v}": v for v in self.label_values}
        return dict(zip(self.class_names, self.label_values, strict=True))
