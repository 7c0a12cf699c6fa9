"""Model builders in one registry: ``build_model("dynunet", spatial_dims=3, ...)``.

Every builder returns a plain ``nn.Module`` that imports nothing from the engine or the tasks, and is
registered with a :class:`ModelInfo`: its family, its input contract and its output kind, so tests,
planners and the CLI read what a model needs from the registry instead of knowing it by name.
Builders import MONAI inside themselves, so ``import medsight.models`` stays light.

Output kinds (:data:`OutputKind`):

* ``"logits"``: a tensor ``(B, K)`` per image (classifiers), in train and eval mode alike;
* ``"logit_map"``: a tensor ``(B, C, *spatial)`` per voxel (segmentation), in train and eval mode;
* ``"deep_supervision"``: a ``"logit_map"`` in eval mode, or when built without deep supervision;
  in train mode with ``deep_supervision=True``, a tensor ``(B, N_heads, C, *spatial)`` whose head 0
  is the full-resolution final output and the others are the deeper heads resized to the same size
  (MONAI DynUNet's behaviour); :func:`medsight.engine.inference.predict_with_deep_supervision_head`
  picks head 0 from such an output (or from a list of heads);
* ``"anchors"``: a tensor ``(B, A, K + 2 * dims)`` per anchor (detectors): K class logits, then the
  box-regression codes; A depends on the input size;
* ``"any_map"``: a tensor ``(B, C, *spatial)`` whose spatial size the network sets (a generator's
  picture from a latent map, a PatchGAN's patch logits).

Example:
    >>> from medsight.models import build_model, model_names
    >>> net = build_model("unet", spatial_dims=2, in_channels=1, out_channels=3, base_filters=8)
    >>> "resnet18" in model_names("classification")
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from medsight.models.info import Family, ModelInfo, OutputKind, RegisteredModel
from medsight.registry import Registry

ModelBuilder = Callable[..., nn.Module]

MODELS: Registry[RegisteredModel] = Registry("model")


def register_model(name: str, info: ModelInfo) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering a builder under ``name`` with its :class:`ModelInfo`.

    Example:
        >>> @register_model("tiny_net", ModelInfo(family="classification"))  # doctest: +SKIP
        ... def build_tiny_net(*, spatial_dims, in_channels, out_channels, patch_size, deep_supervision): ...
    """

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        MODELS.add(name, RegisteredModel(builder, info))
        return builder

    return decorator


def model_info(name: str) -> ModelInfo:
    """The registered :class:`ModelInfo` of model ``name`` (case-insensitive).

    Raises:
        RegistryError: unknown name.
    """
    return MODELS.get(name).info


def model_names(family: Family | None = None) -> list[str]:
    """Registered model names, sorted; only those of ``family`` when given."""
    return [n for n in MODELS.names() if family is None or MODELS.get(n).info.family == family]


def build_model(
    name: str,
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | tuple[int, ...] | None = None,
    deep_supervision: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name``.

    Args:
        name: registry name (see ``MODELS.names()``), case-insensitive.
        spatial_dims: 2 or 3 (what the model's ``ModelInfo.dims`` allows).
        in_channels: input channels (modalities).
        out_channels: output channels (classes, background included for softmax heads).
        patch_size: training patch size (the input image size for classifiers); required by models
            whose layout depends on it (``ModelInfo.needs_patch_size``: ``dynunet``, ``unetr``, ``vit``,
            ...) and validated by those that constrain it (``swinunetr``).
        deep_supervision: add deep-supervision heads (models whose output is ``"deep_supervision"``).
        **kwargs: model-specific options (e.g. ``base_filters``, ``spacing``, ``feature_size``).

    Raises:
        RegistryError: unknown name.
        ConfigError: an option is missing, unknown or inconsistent for this model.
    """
    from medsight.errors import ConfigError

    entry = MODELS.get(name)
    if spatial_dims not in entry.info.dims:
        raise ConfigError(
            f"model {name!r}: spatial_dims must be one of {list(entry.info.dims)}, got {spatial_dims!r}"
        )
    if deep_supervision and not entry.info.deep_supervision:
        raise ConfigError(
            f"model {name!r}: deep_supervision=True needs a model with deep-supervision heads; this one's "
            f"output is {entry.info.output!r}"
        )
    for field, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"model {name!r}: {field} must be a positive int, got {value!r}")
    if patch_size is not None:
        patch_size = [int(p) for p in patch_size]
        if len(patch_size) != spatial_dims or min(patch_size) < 1:
            raise ConfigError(
                f"model {name!r}: patch_size must hold {spatial_dims} positive sizes, got {patch_size!r}"
            )
    return entry.build(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        patch_size=patch_size,
        deep_supervision=deep_supervision,
        **kwargs,
    )


from medsight.models import anomaly as _anomaly  # noqa: E402,F401  (autoencoders, RBM, DBN, DBM)
from medsight.models import classification as _classification  # noqa: E402,F401  (registers classifiers)
from medsight.models import detection as _detection  # noqa: E402,F401  (registers detectors)
from medsight.models import enhancement as _enhancement  # noqa: E402,F401  (registers enhancers)
from medsight.models import registration as _registration  # noqa: E402,F401  (VoxelMorph U-Net)
from medsight.models import segmentation as _segmentation  # noqa: E402,F401  (registers the builders)
from medsight.models import synthesis as _synthesis  # noqa: E402,F401  (GAN generators, discriminators)
from medsight.models.segmentation import DynUNetTopology, dynunet_topology  # noqa: E402

__all__ = [
    "MODELS",
    "DynUNetTopology",
    "Family",
    "ModelInfo",
    "OutputKind",
    "RegisteredModel",
    "build_model",
    "dynunet_topology",
    "model_info",
    "model_names",
    "register_model",
]
