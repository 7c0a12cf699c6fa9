"""What every task's plan shares: :class:`PlanBase` (save, load, overrides), :class:`ChannelNorm` and
:class:`PhotoScale`.

Each task family subclasses PlanBase in its own folder (``medsight.tasks.<name>.planning``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


class PhotoScale(BaseModel):
    """How photographs without a physical spacing are brought to the training scale
    (:mod:`medsight.transforms.photo_scale`): each image is resampled so the size ``method`` measures
    (its field-of-view diameter, or its longer side) equals ``reference_px``, the training median."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["fov-diameter", "image-size"]
    reference_px: float = Field(gt=0)


class PlanBase(BaseModel):
    """The fields every task's plan shares, and what every plan can do: save, load, and take
    ``--set plan.<field>=...`` overrides. Each task family subclasses it with its own fields.

    Attributes:
        task: the task family the plan is for.
        dataset: the dataset's name.
        dim: 2 or 3 spatial dimensions.
        in_channels: input channels (modalities) the network takes.
        class_names: the output classes (or region names), in output-channel order.
        normalization: the intensity normalisation of each input channel.
        network: the registered model name (``medsight.models.MODELS``).
        network_kwargs: the options the network is built with.
        batch_size: samples per training step.
        augment: the strength of random augmentation while training: 1 the planned default, 0 none, 2
            twice the ranges (``true`` / ``false`` mean 1 / 0).
        tta: test-time augmentation at inference.
        reasons: why planning chose each field (``"set by the user"`` for overrides).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    task: str
    dataset: str = ""
    dim: Literal[2, 3]
    in_channels: int
    class_names: list[str]
    normalization: list[ChannelNorm]
    network: str
    network_kwargs: dict[str, Any] = Field(default_factory=dict)
    batch_size: int
    augment: float = Field(default=1.0, ge=0, le=3)
    tta: bool = True
    reasons: dict[str, str] = Field(default_factory=dict)

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_strength(cls, value: Any) -> Any:
        return float(value) if isinstance(value, bool) else value

    @property
    def out_channels(self) -> int:
        """Network output channels: one per class."""
        return len(self.class_names)

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

    @classmethod
    def check_override_names(cls, overrides: Mapping[str, Any]) -> None:
        """Raise ConfigError naming the first override that is not a field of this plan."""
        unknown = [k for k in overrides if k not in cls.model_fields]
        if unknown:
            from medsight.errors import did_you_mean

            k = unknown[0]
            raise ConfigError(f"plan.{k}: no such plan field{did_you_mean(k, list(cls.model_fields))}")

    def with_overrides(self, overrides: Mapping[str, Any]) -> Self:
        """Apply user overrides (from ``plan:`` in the config or ``--set plan.x=...``)."""
        if not overrides:
            return self
        self.check_override_names(overrides)
        data = self.model_dump()
        data.update(overrides)
        data["reasons"] = {**data["reasons"], **{k: "set by the user" for k in overrides}}
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(
                f"plan.{'.'.join(map(str, err['loc']))}: {err['msg']} (got {err.get('input')!r})"
            ) from exc
