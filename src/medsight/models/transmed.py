"""TransMed: a CNN + transformer classifier for multi-modal medical images.

Dai, Gao, Liu, "TransMed: Transformers Advance Multi-Modal Medical Image Classification",
Diagnostics 11(8):1384, 2021 (arXiv:2103.05940).

The paper's design, as implemented here:

* **Multi-modal image fusion.** A study of ``C`` modalities, each a volume of ``D`` slices, is
  turned into 2D 3-channel images: every 3 adjacent slices of one modality are stacked as the
  channels of one image, which gives ``C * D / 3`` images per study. Modalities are never mixed
  inside an image; the transformer is what relates them.
* **CNN branch.** Every image goes through the *same* (weight-shared) CNN, the stem and early
  stages of a ResNet, which extracts low-level features cheaply and supplies the inductive bias
  a transformer lacks on small medical datasets.
* **Transformer branch.** Each feature map is cut into ``P x P`` patches, each patch linearly
  projected to a token (a ``P``-strided convolution, as in ViT). The tokens of all images of
  the study form one sequence, preceded by a learned class token, plus a learned position
  embedding over the whole sequence. A stack of pre-norm transformer encoder blocks follows,
  then a layer norm and an MLP head on the class token.
* **Variants.** The paper has TransMed-T (ResNet-18 CNN, DeiT-Tiny-sized transformer) and
  TransMed-S (ResNet-34 CNN, DeiT-Small-sized transformer). ``variant="tiny"|"small"`` keeps
  that pairing (ResNet-18 vs ResNet-34 block layout, narrower vs wider transformer).

Departures from the paper, and why:

* **Size.** The paper's models (ImageNet-width ResNets, 192/384-wide transformers of 12 blocks,
  448 px inputs) are far too slow to train on a CPU. The defaults here are scaled down:
  ResNet widths multiplied by ``widen_factor`` (0.25 tiny, 0.5 small), 2 or 4 transformer
  blocks of width 64 or 128. Every size is a keyword argument, so the paper's widths can be
  requested (``widen_factor=1.0, hidden_size=192, num_layers=12, num_heads=3, mlp_dim=768``).
* **No ImageNet pre-training.** The paper initialises the CNN from ImageNet weights; medsight
  installs no torchvision and downloads nothing, so the CNN starts from scratch. Weights can be
  loaded from a local file with :func:`medsight.models.pretrained.load_pretrained`.
* **Small images.** For images of at most 64 px per side the ResNet stem is the CIFAR-style one
  (3x3 convolution, stride 1, no max-pool), otherwise a 7x7 stride-2 convolution and a max-pool
  as in the paper's ResNet; ``small_input`` overrides the choice.
* **2D inputs.** The paper handles volumes only. A 2D input ``(B, C, H, W)`` is treated as
  ``C`` single-slice views: each channel is repeated to 3 channels (what a 3-slice group would
  be for a single slice), so each channel or view becomes its own group of tokens.
* **Slice groups.** The number of slices ``D`` must be a multiple of ``slices_per_image`` (3 as
  in the paper); the groups do not overlap.

:class:`TransMedCNN` is the matching CNN-only baseline: the same images, the same CNN, the
feature maps mean-pooled over space and images, and a linear head (no transformer), so a
benchmark can measure what the transformer adds at the same budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from medsight.errors import ConfigError, ShapeError
from medsight.models.classification import SMALL_INPUT_MAX  # images up to this side: CIFAR-style stem


@dataclass(frozen=True)
class TransMedVariant:
    """Default sizes of one TransMed variant (every field can be overridden by keyword)."""

    resnet_layers: tuple[int, int, int, int]
    widen_factor: float
    cnn_stages: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_dim: int


VARIANTS: dict[str, TransMedVariant] = {
    # ResNet-18 block layout + a narrow, shallow transformer (the paper's TransMed-T, scaled down)
    "tiny": TransMedVariant((2, 2, 2, 2), 0.25, 2, 64, 2, 4, 128),
    # ResNet-34 block layout + a wider, deeper transformer (the paper's TransMed-S, scaled down)
    "small": TransMedVariant((3, 4, 6, 3), 0.5, 2, 128, 4, 4, 256),
}
RESNET_WIDTHS = (64, 128, 256, 512)


def _variant(variant: str) -> TransMedVariant:
    if variant not in VARIANTS:
        raise ConfigError(f"model 'transmed': variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    return VARIANTS[variant]


class SliceCNN(nn.Module):
    """The shared CNN branch: a MONAI ResNet's stem and its first ``stages`` stages, in 2D.

    Args:
        resnet_layers: blocks per ResNet stage (``(2, 2, 2, 2)`` is ResNet-18).
        widen_factor: multiplier of the ResNet widths 64, 128, 256, 512.
        stages: how many stages to keep (1 to 4).
        small_input: CIFAR-style stem (3x3 stride-1 convolution, no max-pool).
        in_channels: channels of each image (3 slices).
    """

    def __init__(
        self,
        resnet_layers: Sequence[int],
        widen_factor: float,
        stages: int,
        small_input: bool,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        from monai.networks.nets import ResNet

        if not 1 <= stages <= 4:
            raise ConfigError(f"model 'transmed': cnn_stages must be 1 to 4, got {stages}")
        if widen_factor <= 0 or int(RESNET_WIDTHS[0] * widen_factor) < 1:
            raise ConfigError(f"model 'transmed': widen_factor must be >= 1/64, got {widen_factor}")
        net = ResNet(
            block="basic",
            layers=list(resnet_layers),
            block_inplanes=list(RESNET_WIDTHS),
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=3 if small_input else 7,
            conv1_t_stride=1 if small_input else 2,
            no_max_pool=small_input,
            widen_factor=widen_factor,
            feed_forward=False,
        )
        parts = [net.conv1, net.bn1, net.act] + ([] if small_input else [net.maxpool])
        parts += [getattr(net, f"layer{i + 1}") for i in range(stages)]
        self.body = nn.Sequential(*parts)
        self.out_channels = int(RESNET_WIDTHS[stages - 1] * widen_factor)
        self.downsample = (1 if small_input else 4) * 2 ** (stages - 1)

    def feature_size(self, size: Sequence[int]) -> list[int]:
        """Spatial size of the feature map for an image of ``size`` (every stride-2 step rounds up)."""
        return [math.ceil(s / self.downsample) for s in size]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def slice_images(x: torch.Tensor, slices_per_image: int) -> torch.Tensor:
    """The multi-modal image fusion: ``(B, C, H, W, D)`` -> ``(B, C * D / k, k, H, W)``.

    Every ``k`` adjacent slices of one modality become the channels of one image, in modality
    order, then slice order. A 2D input ``(B, C, H, W)`` gives ``(B, C, k, H, W)``: each channel
    is one single-slice view, repeated ``k`` times.
    """
    if x.ndim == 4:
        return x.unsqueeze(2).expand(-1, -1, slices_per_image, -1, -1)
    b, c, h, w, d = x.shape
    x = x.reshape(b, c, h, w, d // slices_per_image, slices_per_image)
    return x.permute(0, 1, 4, 5, 2, 3).reshape(b, -1, slices_per_image, h, w)


class _SliceModel(nn.Module):
    """Shared input handling of :class:`TransMed` and :class:`TransMedCNN`."""

    def __init__(
        self,
        name: str,
        spatial_dims: int,
        in_channels: int,
        image_size: Sequence[int],
        variant: str,
        slices_per_image: int,
        small_input: bool | None,
        resnet_layers: Sequence[int] | None,
        widen_factor: float | None,
        cnn_stages: int | None,
    ) -> None:
        super().__init__()
        v = _variant(variant)
        size = [int(s) for s in image_size]
        if len(size) != spatial_dims:
            raise ConfigError(f"model {name!r}: patch_size must hold {spatial_dims} sizes, got {size}")
        if slices_per_image < 1:
            raise ConfigError(f"model {name!r}: slices_per_image must be >= 1, got {slices_per_image}")
        if spatial_dims == 3 and size[2] % slices_per_image:
            fixed = math.ceil(size[2] / slices_per_image) * slices_per_image
            raise ConfigError(
                f"model {name!r}: the slice axis (last of patch_size) must be a multiple of "
                f"slices_per_image={slices_per_image}, got {size[2]} (try {fixed})"
            )
        n_groups = size[2] // slices_per_image if spatial_dims == 3 else 1
        self.name = name
        self.input_shape = (in_channels, *size)
        self.slices_per_image = slices_per_image
        self.num_images = in_channels * n_groups
        small = max(size[:2]) <= SMALL_INPUT_MAX if small_input is None else bool(small_input)
        self.cnn = SliceCNN(
            resnet_layers or v.resnet_layers,
            v.widen_factor if widen_factor is None else widen_factor,
            v.cnn_stages if cnn_stages is None else cnn_stages,
            small,
            in_channels=slices_per_image,
        )
        self.feature_hw = self.cnn.feature_size(size[:2])

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """Validate ``x`` and return the CNN features of all its images, ``(B * N, F, h, w)``."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(f"model {self.name!r} input", ("B", *self.input_shape), tuple(x.shape))
        images = slice_images(x, self.slices_per_image)
        return self.cnn(images.reshape(-1, *images.shape[2:]))


class TransMed(_SliceModel):
    """TransMed classifier (see the module docstring); returns logits ``(B, num_classes)``.

    Args:
        spatial_dims: 3 for ``(B, C, H, W, D)`` volumes (``D`` is the slice axis), 2 for
            ``(B, C, H, W)`` multi-channel images (each channel one view).
        in_channels: ``C``, modalities or views.
        num_classes: logits per sample.
        image_size: ``(H, W, D)`` or ``(H, W)``; the token count, hence the position
            embedding, depends on it.
        variant: ``"tiny"`` or ``"small"``: default sizes below.
        slices_per_image: adjacent slices per 2D image (3 in the paper).
        small_input: CIFAR-style CNN stem; default when ``H`` and ``W`` are at most 64.
        resnet_layers, widen_factor, cnn_stages: CNN layout (default from the variant).
        feature_patch: patch edge on the CNN feature map; default: the largest that divides it
            and leaves at least 4 patches per side (1 for maps smaller than 4).
        hidden_size, num_layers, num_heads, mlp_dim: transformer sizes (default from the variant).
        dropout: dropout of the embeddings and transformer blocks.

    Example:
        >>> net = TransMed(3, in_channels=4, num_classes=2, image_size=(32, 32, 12))
        >>> net(torch.zeros(2, 4, 32, 32, 12)).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        image_size: Sequence[int],
        *,
        variant: str = "tiny",
        slices_per_image: int = 3,
        small_input: bool | None = None,
        resnet_layers: Sequence[int] | None = None,
        widen_factor: float | None = None,
        cnn_stages: int | None = None,
        feature_patch: int | None = None,
        hidden_size: int | None = None,
        num_layers: int | None = None,
        num_heads: int | None = None,
        mlp_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            "transmed", spatial_dims, in_channels, image_size, variant, slices_per_image,
            small_input, resnet_layers, widen_factor, cnn_stages,
        )  # fmt: skip
        from monai.networks.blocks import TransformerBlock

        v = _variant(variant)
        hidden = hidden_size or v.hidden_size
        heads = num_heads or v.num_heads
        if hidden % heads:
            raise ConfigError(
                f"model 'transmed': hidden_size must be a multiple of num_heads, got {hidden} and {heads}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model 'transmed': dropout must be in [0, 1), got {dropout}")
        p = _feature_patch(self.feature_hw, feature_patch)
        self.tokens_per_image = (self.feature_hw[0] // p) * (self.feature_hw[1] // p)
        n_tokens = 1 + self.num_images * self.tokens_per_image
        self.patch_embed = nn.Conv2d(self.cnn.out_channels, hidden, kernel_size=p, stride=p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, hidden))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden, mlp_dim or v.mlp_dim, heads, dropout_rate=dropout, qkv_bias=True)
            for _ in range(num_layers or v.num_layers)
        )
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, num_classes)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The transformer's input sequence ``(B, 1 + N * T, hidden)``, position embedding added."""
        feats = self._features(x)
        tok = self.patch_embed(feats).flatten(2).transpose(1, 2)  # (B * N, T, hidden)
        tok = tok.reshape(x.shape[0], -1, tok.shape[-1])
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, tok], dim=1) + self.pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.tokens(x))
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h)[:, 0])


class TransMedCNN(_SliceModel):
    """CNN-only baseline of :class:`TransMed`: same images and CNN, mean-pooled, linear head.

    Takes the CNN arguments of :class:`TransMed` (``variant``, ``slices_per_image``,
    ``small_input``, ``resnet_layers``, ``widen_factor``, ``cnn_stages``) and ``dropout``
    (before the head).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        image_size: Sequence[int],
        *,
        variant: str = "tiny",
        slices_per_image: int = 3,
        small_input: bool | None = None,
        resnet_layers: Sequence[int] | None = None,
        widen_factor: float | None = None,
        cnn_stages: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            "transmed_cnn", spatial_dims, in_channels, image_size, variant, slices_per_image,
            small_input, resnet_layers, widen_factor, cnn_stages,
        )  # fmt: skip
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model 'transmed_cnn': dropout must be in [0, 1), got {dropout}")
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.cnn.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self._features(x).mean(dim=(2, 3))  # (B * N, F)
        pooled = pooled.reshape(x.shape[0], self.num_images, -1).mean(dim=1)
        return self.head(self.drop(pooled))


def _feature_patch(feature_hw: Sequence[int], requested: int | None) -> int:
    """The patch edge on the feature map: the requested one validated, or the default rule."""
    h, w = feature_hw
    if requested is not None:
        if requested < 1 or h % requested or w % requested:
            raise ConfigError(
                f"model 'transmed': feature_patch must divide the CNN feature map {h}x{w}, got {requested}"
            )
        return requested
    fits = [p for p in range(1, min(h, w) + 1) if h % p == 0 and w % p == 0 and min(h, w) // p >= 4]
    return max(fits, default=1)
