"""The evaluation encoder of a synthesis run: what FID / KID / precision / recall are computed on.

No hub weights: a convolutional autoencoder (the registered ``conv_ae``, MONAI ``AutoEncoder``) is
trained on the run's real training pictures (the target contrast for translation) for
``plan.encoder_steps`` steps of MSE reconstruction, before the generator, with a seed of its own. The
features of a picture are its bottleneck code average-pooled to FEATURE_GRID x FEATURE_GRID and
flattened (``code_channels * FEATURE_GRID**2`` = 128 numbers). Saved as ``RUN/encoder.pt``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_GRID = 4
CODE_CHANNELS = 8
BASE_FILTERS = 16
BATCH = 64
LR = 1e-3
MULTIPLE = 8  # the autoencoder's three stride-2 levels


class FeatureEncoder(nn.Module):
    """The autoencoder's encoder half: pictures -> pooled bottleneck features ``(B, 128)``."""

    def __init__(self, autoencoder: nn.Module) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.autoencoder.code(fit_size(x))
        grid = [FEATURE_GRID] * (x.ndim - 2)
        pool = F.adaptive_avg_pool2d if x.ndim == 4 else F.adaptive_avg_pool3d
        return pool(code, grid).flatten(1)


def fit_size(x: torch.Tensor) -> torch.Tensor:
    """Pictures resized (linearly) up to sides that are multiples of the autoencoder's 8."""
    size = [-(-s // MULTIPLE) * MULTIPLE for s in x.shape[2:]]
    if size == list(x.shape[2:]):
        return x
    return F.interpolate(x, size=size, mode="bilinear" if x.ndim == 4 else "trilinear", align_corners=False)


def build_encoder(channels: int, dims: int) -> FeatureEncoder:
    from medsight.models import build_model

    ae = build_model(
        "conv_ae",
        spatial_dims=dims,
        in_channels=channels,
        out_channels=channels,
        base_filters=BASE_FILTERS,
        code_channels=CODE_CHANNELS,
    )
    return FeatureEncoder(ae)


def train_encoder(x: torch.Tensor, steps: int, seed: int) -> FeatureEncoder:
    """Fit the autoencoder to the pictures ``x`` (``(N, C, *size)`` in [0, 1]); return it in eval mode."""
    gen = torch.Generator().manual_seed(seed + 7919)
    torch.manual_seed(seed + 7919)
    enc = build_encoder(x.shape[1], x.ndim - 2)
    opt = torch.optim.Adam(enc.parameters(), lr=LR)
    enc.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (min(BATCH, len(x)),), generator=gen)
        batch = fit_size(x[idx])
        loss = F.mse_loss(enc.autoencoder(batch), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return enc.eval()


def save_encoder(enc: FeatureEncoder, path: Path) -> None:
    from medsight.utils import atomic_write

    atomic_write(path, lambda tmp: torch.save(enc.state_dict(), tmp))


def load_encoder(path: Path, channels: int, dims: int) -> FeatureEncoder:
    from medsight.errors import RunError

    if not path.is_file():
        raise RunError(f"{path}: the run's evaluation encoder is missing (it is written by training)")
    enc = build_encoder(channels, dims)
    enc.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return enc.eval()


@torch.inference_mode()
def features(enc: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Encoder features of ``x`` in batches, on the encoder's device, as float32 on the CPU."""
    device = next(enc.parameters()).device
    return torch.cat([enc(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)])
