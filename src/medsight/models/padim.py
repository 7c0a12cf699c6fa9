"""PaDiM (Defard et al. 2021): a Gaussian per feature-map position of a CNN encoder's features, fitted
on normal images; the anomaly map is the Mahalanobis distance of each position's feature vector.

The encoder is a MONAI ResNet (``medsight.models`` ``resnet18``, e.g. one ``medsight pretrain`` wrote):
the outputs of ``layer1``, ``layer2`` and ``layer3`` are brought to ``layer2``'s grid (average-pooled or
upsampled), concatenated and reduced to a fixed random subset of ``n_features`` channels (PaDiM's random
dimensionality reduction). :meth:`PaDiM.fit_step` accumulates the sums of one pass over the normal
training images (``max_samples``); the means and regularised inverse covariances (``+ EPS * I``) are
refreshed after every step.

Example:
    >>> from medsight.models import build_model
    >>> enc = build_model("resnet18", spatial_dims=2, in_channels=1, out_channels=2, patch_size=[32, 32],
    ...                   widen_factor=0.25)
    >>> padim = PaDiM(enc, n_features=8, max_samples=16)
    >>> padim.fit_step(torch.rand(16, 1, 32, 32))["samples"]
    16.0
    >>> padim(torch.rand(2, 1, 32, 32)).shape
    torch.Size([2, 1, 16, 16])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 0.01  # PaDiM's covariance regulariser


def resnet_features(encoder: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of ``layer1``, ``layer2`` and ``layer3`` of a MONAI ResNet."""
    x = encoder.act(encoder.bn1(encoder.conv1(x)))
    if not encoder.no_max_pool:
        x = encoder.maxpool(x)
    f1 = encoder.layer1(x)
    f2 = encoder.layer2(f1)
    return [f1, f2, encoder.layer3(f2)]


def feature_map(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The three layers' features on layer2's grid, concatenated: ``(B, C1 + C2 + C3, *grid)``."""
    f1, f2, f3 = resnet_features(encoder, x)
    pool = F.avg_pool2d if f2.dim() == 4 else F.avg_pool3d
    mode = "bilinear" if f2.dim() == 4 else "trilinear"
    # each layer halves the grid (rounding up): pool 2x down, upsample 2x and crop (static for export)
    f1 = pool(f1, kernel_size=2, stride=2, ceil_mode=True)
    f3 = F.interpolate(f3, scale_factor=2.0, mode=mode, align_corners=False)
    crop = (slice(None), slice(None), *(slice(0, int(s)) for s in f2.shape[2:]))
    return torch.cat([f1[crop], f2, f3[crop]], dim=1)


class PaDiM(nn.Module):
    """Per-position Gaussians of ``encoder`` features; ``forward`` -> Mahalanobis map ``(B, 1, *grid)``."""

    def __init__(
        self, encoder: nn.Module, n_features: int = 100, max_samples: int = 10**9, seed: int = 0
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.max_samples = max_samples
        channels = sum(
            int(layer[-1].conv2.out_channels) for layer in (encoder.layer1, encoder.layer2, encoder.layer3)
        )
        keep = min(n_features, channels)
        order = torch.randperm(channels, generator=torch.Generator().manual_seed(seed))[:keep]
        self.register_buffer("index", order.sort().values)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("sum", torch.zeros(0, dtype=torch.float64))  # (P, d) once the grid is known
        self.register_buffer("outer", torch.zeros(0, dtype=torch.float64))  # (P, d, d)
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("inv_cov", torch.zeros(0))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        for name in ("sum", "outer", "mean", "inv_cov"):  # fitted buffers take the saved shapes
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The selected features of every position of ``feature_map``'s grid: ``(B, P, d)``."""
        f = feature_map(self.encoder, x).index_select(1, self.index)
        return f.flatten(2).transpose(1, 2)

    @torch.no_grad()
    def fit_step(self, x: torch.Tensor) -> dict[str, float]:
        """Add a batch of normal images to the sums (up to ``max_samples``), then refresh the Gaussians."""
        room = int(self.max_samples - self.count.item())
        if room > 0:
            self.encoder.eval()
            f = self.features(x[:room]).double()
            if self.sum.numel() == 0:
                p, d = f.shape[1:]
                self.sum = torch.zeros(p, d, dtype=torch.float64, device=f.device)
                self.outer = torch.zeros(p, d, d, dtype=torch.float64, device=f.device)
            self.sum += f.sum(0)
            self.outer += torch.einsum("bpi,bpj->pij", f, f)
            self.count += f.shape[0]
            self._refresh()
        return {"samples": float(self.count)}

    def _refresh(self) -> None:
        n = float(self.count)
        mean = self.sum / n
        cov = (self.outer - n * torch.einsum("pi,pj->pij", mean, mean)) / max(n - 1.0, 1.0)
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        self.mean = mean.float()
        self.inv_cov = torch.linalg.inv(cov + EPS * eye).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The Mahalanobis distance of every position's features, ``(B, 1, *grid)``."""
        f = feature_map(self.encoder, x)
        grid = f.shape[2:]
        delta = f.index_select(1, self.index).flatten(2).transpose(1, 2) - self.mean
        squared = torch.einsum("bpi,pij,bpj->bp", delta, self.inv_cov, delta)
        return squared.clamp_min(0).sqrt().reshape(x.shape[0], 1, *grid)
