"""Tiny models and data of the robustness tests: a conv classifier and a conv segmenter on 1x16x16 images
(the attack tests), and a tiny classifier of noisy squares cached across test files (defences, detectors).

Both take *normalised* inputs (an ``rgb`` ChannelNorm), so every attack goes through ``InputSpace``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from medsight.planning.plan import ChannelNorm
from medsight.robustness import InputSpace
from medsight.robustness.space import UnitState

NORM = ChannelNorm(scheme="rgb", mean=0.5, std=0.25)


@dataclass
class Trained:
    """A trained model in eval mode, its input space and held-out unit-space inputs ``u`` with targets."""

    model: nn.Module
    space: InputSpace
    state: UnitState
    u: torch.Tensor
    y: torch.Tensor

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(self.space.from_unit(u, self.state))

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.model.state_dict().items()}


def per_sample_ce(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per sample (averaged over pixels for label maps)."""
    return F.cross_entropy(output, y, reduction="none").reshape(len(y), -1).mean(dim=1)


def class_images(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise with a brighter bar on the left (class 1) or on the right (class 0)."""
    y = torch.randint(0, 2, (n,), generator=g)
    u = 0.35 + 0.3 * torch.rand(n, 1, 16, 16, generator=g)
    u[y == 1, :, 4:12, 2:7] += 0.2
    u[y == 0, :, 4:12, 9:14] += 0.2
    return u.clamp(0, 1), y


def seg_images(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise with a brighter 6x6 square at a random place; the label map marks the square."""
    y = torch.zeros(n, 16, 16, dtype=torch.long)
    for i, (r, c) in enumerate(torch.randint(2, 9, (n, 2), generator=g).tolist()):
        y[i, r : r + 6, c : c + 6] = 1
    u = 0.3 + 0.2 * torch.rand(n, 1, 16, 16, generator=g) + 0.25 * y[:, None]
    return u.clamp(0, 1), y


def _normalised(u: torch.Tensor) -> torch.Tensor:
    """What the data pipeline feeds the network for 8-bit-like intensities ``u`` in [0, 1]."""
    return (u - NORM.mean) / NORM.std


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        per_sample_ce(model(x), y).mean().backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


Maker = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def train_tiny(model: nn.Module, make: Maker, n_train: int, n_test: int, steps: int) -> Trained:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    u, y = make(n_train, g)
    model = _train(model, _normalised(u), y, steps)
    u, y = make(n_test, g)
    space = InputSpace([NORM])
    unit, state = space.to_unit(_normalised(u))  # as a caller does, from the network's inputs
    return Trained(model, space, state, unit, y)


def synthetic_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy grey images in [0, 1] with a 6x6 square somewhere: brighter than the background in class 1,
    darker in class 0."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.4 + 0.02 * torch.randn((n, 1, 16, 16), generator=g)
    for i in range(n):
        row, col = (int(v) for v in torch.randint(1, 9, (2,), generator=g))
        x[i, 0, row : row + 6, col : col + 6] += 0.1 if y[i] == 1 else -0.1
    return x.clamp(0, 1), y


def tiny_net(hidden: bool = True) -> nn.Module:
    """Two conv layers, global pooling and a linear head (after a hidden linear layer when ``hidden``).
    Layers are built in order, so a seed gives the same initial weights as before this option existed."""
    body = [
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ]
    head = [nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)] if hidden else [nn.Linear(16, 2)]
    return nn.Sequential(*body, *head)


@lru_cache(maxsize=2)
def trained_tiny_classifier(steps: int = 60, seed: int = 0) -> nn.Module:
    """The tiny net fitted with Adam on 256 synthetic images; eval mode, well above chance. Cached: shared by
    the test files of one session, never to be changed by a test."""
    torch.manual_seed(seed)
    model = tiny_net()
    x, y = synthetic_batch(256, seed=seed + 100)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for step in range(steps):
        idx = torch.arange(step * 64, step * 64 + 64) % 256
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
