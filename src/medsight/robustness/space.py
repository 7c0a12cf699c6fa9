"""The attack space: network inputs <-> intensities scaled to [0, 1], differentiable both ways.

A plan's normalisation (``ChannelNorm`` per channel) is an affine map of the raw intensities:

- ``rgb``: x = (raw / 255 - mean) / std, unit = raw / 255;
- ``ct``: x = (clip(raw) - mean) / std, unit = (raw - clip_low) / (clip_high - clip_low);
- ``zscore``: x = (raw - mean(raw)) / std(raw) per image, unit = the image's min..max; the z-score is
  recomputed from the (attacked) unit image, so an attack changes the statistics it is normalised by;
- ``none``: unit = the image's min..max.

Example::

    space = InputSpace(plan.normalization)
    u, state = space.to_unit(x)                   # x: a normalised batch (B, C, *spatial)
    logits = model(space.from_unit(u_adv, state))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from medsight.errors import ConfigError
from medsight.intensity_units import parse_eps

if TYPE_CHECKING:
    from torch import nn

    from medsight.planning.plan import ChannelNorm


@dataclass
class UnitState:
    """Per-sample, per-channel quantities of one batch needed to map unit images back: ``low``/``high``
    (B, C) of the image-range channels and, for masked z-scores, the clean image's foreground mask."""

    low: torch.Tensor
    high: torch.Tensor
    mask: torch.Tensor | None = None


class InputSpace:
    """Maps a plan's normalised network inputs to the unit attack space and back."""

    def __init__(self, norms: list[ChannelNorm]) -> None:
        self.norms = list(norms)
        for c, norm in enumerate(self.norms):
            if norm.scheme == "ct" and (norm.clip_low is None or norm.clip_high is None):
                raise ConfigError(f"normalization[{c}]: a 'ct' channel needs clip_low and clip_high")

    @property
    def stateless(self) -> bool:
        """True when mapping a unit image back needs no per-image state (rgb, ct, unmasked zscore)."""
        return all(n.scheme in ("rgb", "ct") or (n.scheme == "zscore" and not n.use_mask) for n in self.norms)

    # ------------------------------------------------------------------ epsilon
    @property
    def hu_per_unit(self) -> float | None:
        """Hounsfield units per unit step when every channel is CT-normalised, else None."""
        widths = {n.clip_high - n.clip_low for n in self.norms if n.scheme == "ct"}
        if len(widths) != 1 or any(n.scheme != "ct" for n in self.norms):
            return None
        return float(widths.pop())

    def eps(self, value: str | float) -> float:
        """An epsilon in unit-space units: ``0.01``, ``"2/255"``, or ``"10HU"`` for CT models."""
        amount, hu = parse_eps(value)
        if not hu:
            return amount
        if self.hu_per_unit is None:
            raise ConfigError(
                f"eps {value!r}: Hounsfield units need a CT model (every channel 'ct'-normalised); this "
                f"model's channels are normalised as {[n.scheme for n in self.norms]}"
            )
        return amount / self.hu_per_unit

    # ------------------------------------------------------------------ mapping
    def to_unit(self, x: torch.Tensor) -> tuple[torch.Tensor, UnitState]:
        """Normalised batch (B, C, *spatial) -> (unit batch in [0, 1], the state to map it back)."""
        self._check(x)
        flat = x.detach().float().flatten(2)
        low, high = flat.amin(dim=2), flat.amax(dim=2)
        units, mask = [], None
        for c, norm in enumerate(self.norms):
            xc = x[:, c].float()
            if norm.scheme in ("rgb", "ct"):
                units.append(self._fixed_unit(xc, norm))
            else:
                span = (high[:, c] - low[:, c]).clamp_min(1e-8)
                units.append((xc - _expand(low[:, c], xc)) / _expand(span, xc))
            if norm.scheme == "zscore" and norm.use_mask:
                mask = x != 0 if mask is None else mask
        return torch.stack(units, dim=1).clamp(0, 1), UnitState(low, high, mask)

    def from_unit(self, u: torch.Tensor, state: UnitState) -> torch.Tensor:
        """Unit batch -> the network's normalised input (differentiable in ``u``)."""
        self._check(u)
        channels = []
        for c, norm in enumerate(self.norms):
            uc = u[:, c]
            if norm.scheme == "rgb":
                channels.append((uc - norm.mean) / norm.std)
            elif norm.scheme == "ct":
                raw = norm.clip_low + uc * (norm.clip_high - norm.clip_low)
                channels.append((raw - norm.mean) / norm.std)
            elif norm.scheme == "zscore":
                mask = state.mask[:, c] if norm.use_mask and state.mask is not None else None
                channels.append(_zscore(uc, mask))
            else:
                span = _expand(state.high[:, c] - state.low[:, c], uc)
                channels.append(_expand(state.low[:, c], uc) + uc * span)
        return torch.stack(channels, dim=1)

    def raw_span(self, raw: np.ndarray) -> np.ndarray:
        """Stored-intensity units per unit step of each channel of a raw ``(C, *spatial)`` image: 255 for
        8-bit pictures, the clip window for CT, the image's own range otherwise."""
        spans = []
        for c, norm in enumerate(self.norms):
            if norm.scheme == "rgb":
                spans.append(255.0)
            elif norm.scheme == "ct":
                spans.append(float(norm.clip_high - norm.clip_low))
            else:
                spans.append(float(np.max(raw[c]) - np.min(raw[c])))
        return np.asarray(spans, dtype=np.float32)

    def forward_fn(
        self, model: nn.Module | Callable[[torch.Tensor], torch.Tensor], state: UnitState
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``u -> model(from_unit(u))``: the function every attack differentiates."""
        return lambda u: model(self.from_unit(u, state))

    def _fixed_unit(self, xc: torch.Tensor, norm: ChannelNorm) -> torch.Tensor:
        if norm.scheme == "rgb":
            return xc * norm.std + norm.mean
        raw = xc * norm.std + norm.mean
        return (raw - norm.clip_low) / (norm.clip_high - norm.clip_low)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() < 3 or x.shape[1] != len(self.norms):
            raise ConfigError(
                f"input of shape {tuple(x.shape)}: expected (batch, {len(self.norms)} channels, *spatial)"
            )


def concat_states(states: list[UnitState]) -> UnitState:
    """The states of several batches as the state of their concatenation."""
    masks = [s.mask for s in states]
    return UnitState(
        torch.cat([s.low for s in states]),
        torch.cat([s.high for s in states]),
        None if any(m is None for m in masks) else torch.cat(masks),
    )


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def _zscore(u: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    dims = tuple(range(1, u.dim()))
    if mask is None:
        mean = u.mean(dim=dims, keepdim=True)
        std = u.std(dim=dims, keepdim=True, unbiased=False).clamp_min(1e-8)
        return (u - mean) / std
    m = mask.to(u.dtype)
    n = m.sum(dim=dims, keepdim=True).clamp_min(1)
    mean = (u * m).sum(dim=dims, keepdim=True) / n
    var = (((u - mean) * m) ** 2).sum(dim=dims, keepdim=True) / n
    return (u - mean) / var.sqrt().clamp_min(1e-8) * m
