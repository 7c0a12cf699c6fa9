"""What a registered model declares: its family, its input contract and its output kind.

Torch-free, so planners and the CLI can read a model's contract without building it.

Example:
    >>> info = ModelInfo(family="segmentation", output="logit_map", multiple=16, min_size=32)
    >>> info.input_size(3)
    [32, 32, 32]
    >>> ModelInfo(family="classification", multiple=(1, 1, 3), min_size=(8, 8, 3)).input_size(3, at_least=8)
    [8, 8, 9]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Family = Literal[
    "segmentation", "classification", "detection", "enhancement", "registration", "generative", "energy"
]
OutputKind = Literal[
    "logits", "logit_map", "deep_supervision", "anchors", "any_map"
]  # shapes: see medsight.models
PerAxis = int | tuple[int, int, int]  # one value for every axis, or one per axis (3D order; 2D: first two)


@dataclass(frozen=True)
class ModelInfo:
    """A model's family, input contract and output kind, registered with its builder.

    Attributes:
        family: what the model does ("segmentation", "classification"; later "detection", ...).
        output: what ``forward`` returns (see :data:`OutputKind` and :mod:`medsight.models`).
        dims: the spatial dimensionalities it supports.
        needs_patch_size: the layout depends on the input size, so ``build_model`` needs ``patch_size``.
        multiple: every input side must be a multiple of this (with the default options; 1 when the
            layout adapts to the size, as DynUNet's does through ``dynunet_topology``).
        min_size: the smallest input side it trains on (with the default options).
        width_option: the builder option that scales the network's width, which planners size against
            a measured step time (e.g. ``"base_filters"``); None when it has none.
        tiny: options that make a small instance, for smoke tests and quick checks.
    """

    family: Family
    output: OutputKind = "logits"
    dims: tuple[int, ...] = (2, 3)
    needs_patch_size: bool = False
    multiple: PerAxis = 1
    min_size: PerAxis = 1
    width_option: str | None = None
    tiny: Mapping[str, Any] = field(default_factory=dict)

    @property
    def deep_supervision(self) -> bool:
        """Whether the model can be built with deep-supervision heads."""
        return self.output == "deep_supervision"

    def multiples(self, dims: int) -> list[int]:
        """What each input side must be a multiple of, for ``dims`` spatial axes."""
        return _per_axis(self.multiple, dims)

    def input_size(self, dims: int, at_least: int = 1) -> list[int]:
        """The smallest valid input size with every side at least ``at_least``."""
        sides = zip(_per_axis(self.min_size, dims), self.multiples(dims), strict=True)
        return [math.ceil(max(lo, at_least) / m) * m for lo, m in sides]


def _per_axis(value: PerAxis, dims: int) -> list[int]:
    return [value] * dims if isinstance(value, int) else list(value[:dims])


@dataclass(frozen=True)
class RegisteredModel:
    """A builder and its :class:`ModelInfo`, as stored in :data:`medsight.models.MODELS`.

    Build through :func:`medsight.models.build_model`, which validates the arguments first.
    """

    build: Callable[..., Any]
    info: ModelInfo
