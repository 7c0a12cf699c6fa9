"""Randomised smoothing with a certified L2 radius (Cohen, Rosenfeld and Kolter, ICML 2019).

The smoothed classifier ``g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c)`` is certified robust around ``x``
within the L2 radius ``sigma * Phi^-1(pA)`` whenever the top class has probability ``pA > 1/2``. ``f`` is
the base classifier (argmax of ``forward``'s logits), ``sigma`` and the radius are in unit-space units
(intensities scaled to [0, 1], see :mod:`medsight.robustness.space`). The noise is not clipped to [0, 1]
unless ``clamp=True``; clipping is part of the base classifier (``f(clip(.))``), so either way the
certificate holds.

``predict`` is Cohen's PREDICT (a two-sided binomial test of the top two counts; -1 = abstain) and
``certify`` is CERTIFY (the top class picked from ``n0`` draws, ``pA`` bounded from below by the
one-sided Clopper-Pearson bound at level ``1 - alpha`` from ``n`` fresh draws; -1 with radius 0 = abstain).

Example::

    smooth = SmoothedClassifier(space.forward_fn(model, state), num_classes=2, sigma=0.25)
    labels, radii = smooth.certify(u, n0=100, n=1000, alpha=0.001)
    certified_accuracy(labels, radii, y, [0.0, 0.25, 0.5])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from medsight.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from medsight.robustness.space import InputSpace, UnitState

Forward = Callable[[torch.Tensor], torch.Tensor]
ABSTAIN = -1


class SmoothedClassifier:
    """A base classifier ``forward`` (unit batch -> logits (B, K)) smoothed by Gaussian noise.

    ``forward`` is called on batches of noisy copies of one sample, so it must not depend on which
    samples share a batch (true for 'rgb', 'ct' and unmasked 'zscore' normalisations); for per-image
    normalisation states use :meth:`from_model`, which builds each sample's forward from its own state.
    Each call draws its noise from a generator seeded with ``seed``, so results are repeatable.
    """

    def __init__(
        self, forward: Forward, num_classes: int, sigma: float, *, seed: int = 0, clamp: bool = False
    ) -> None:
        if num_classes < 2:
            raise ConfigError(f"num_classes: randomised smoothing needs >= 2 classes, got {num_classes}")
        if not sigma > 0:
            raise ConfigError(f"sigma: expected a noise level > 0 (unit-space units), got {sigma}")
        self.num_classes, self.sigma, self.seed, self.clamp = num_classes, float(sigma), seed, clamp
        self._forward_for: Callable[[int], Forward] = lambda _i: forward

    @classmethod
    def from_model(
        cls, model: nn.Module, space: InputSpace, state: UnitState, num_classes: int, sigma: float, **kwargs
    ) -> SmoothedClassifier:
        """A smoothed classifier whose sample ``i`` is normalised with row ``i`` of ``state``."""
        smooth = cls(space.forward_fn(model, state), num_classes, sigma, **kwargs)
        smooth._forward_for = lambda i: space.forward_fn(model, _state_row(state, i))
        return smooth

    def predict(self, x: torch.Tensor, n: int = 100, alpha: float = 0.001, batch: int = 100) -> np.ndarray:
        """Smoothed predictions (B,) of a unit batch; -1 where the top two classes
        differ by less than ``alpha`` allows (two-sided binomial test)."""
        from scipy.stats import binomtest

        _check_counts(n=n, batch=batch, alpha=alpha)
        generator = torch.Generator().manual_seed(self.seed)
        out = np.full(x.shape[0], ABSTAIN, dtype=np.int64)
        for i in range(x.shape[0]):
            counts = self.sample_counts(x[i : i + 1], n, batch, generator, index=i)
            top2 = np.argsort(counts)[::-1][:2]
            n_a, n_b = int(counts[top2[0]]), int(counts[top2[1]])
            if binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha:
                out[i] = int(top2[0])
        return out

    def certify(
        self, x: torch.Tensor, n0: int = 100, n: int = 1000, alpha: float = 0.001, batch: int = 100
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels (B,), certified L2 radii (B,)) of a unit batch; label -1 and radius 0 = abstain."""
        from scipy.stats import norm

        _check_counts(n=n, n0=n0, batch=batch, alpha=alpha)
        generator = torch.Generator().manual_seed(self.seed)
        labels = np.full(x.shape[0], ABSTAIN, dtype=np.int64)
        radii = np.zeros(x.shape[0], dtype=np.float64)
        for i in range(x.shape[0]):
            guess = int(np.argmax(self.sample_counts(x[i : i + 1], n0, batch, generator, index=i)))
            n_a = int(self.sample_counts(x[i : i + 1], n, batch, generator, index=i)[guess])
            p_lower = clopper_pearson_lower(n_a, n, alpha)
            if p_lower > 0.5:
                labels[i], radii[i] = guess, self.sigma * float(norm.ppf(p_lower))
        return labels, radii

    def sample_counts(
        self, x: torch.Tensor, n: int, batch: int, generator: torch.Generator, *, index: int = 0
    ) -> np.ndarray:
        """How often the base classifier predicts each class on ``n`` noisy copies of a sample (1, C, ...)."""
        forward = self._forward_for(index)
        counts = np.zeros(self.num_classes, dtype=np.int64)
        remaining = n
        with torch.no_grad():
            while remaining > 0:
                m = min(batch, remaining)
                noise = torch.randn((m, *x.shape[1:]), generator=generator, dtype=torch.float32)
                noisy = x.float() + self.sigma * noise.to(x.device)
                logits = forward(noisy.clamp(0, 1) if self.clamp else noisy)
                if logits.dim() != 2 or logits.shape[1] != self.num_classes:
                    raise ConfigError(
                        f"smoothing: expected logits of shape (batch, {self.num_classes}), "
                        f"got {tuple(logits.shape)}"
                    )
                counts += np.bincount(logits.argmax(1).cpu().numpy(), minlength=self.num_classes)
                remaining -= m
        return counts


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """The one-sided (1 - ``alpha``) Clopper-Pearson lower confidence bound of a binomial proportion."""
    from scipy.stats import beta

    if successes <= 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def certified_accuracy(
    labels: np.ndarray | Sequence[int],
    radii: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[int] | torch.Tensor,
    radii_grid: Sequence[float],
) -> np.ndarray:
    """Fraction of samples certified correct with radius >= r, for every r of ``radii_grid``."""
    labels, radii = np.asarray(labels), np.asarray(radii, dtype=float)
    y = y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if not labels.shape == radii.shape == y.shape:
        raise ConfigError(
            f"certified_accuracy: labels, radii and y must have one shape, got {labels.shape}, "
            f"{radii.shape} and {y.shape}"
        )
    correct = (labels == y) & (labels != ABSTAIN)
    return np.array([float(np.mean(correct & (radii >= r))) if len(y) else 0.0 for r in radii_grid])


def _state_row(state: UnitState, i: int) -> UnitState:
    from medsight.robustness.space import UnitState

    mask = None if state.mask is None else state.mask[i : i + 1]
    return UnitState(state.low[i : i + 1], state.high[i : i + 1], mask)


def _check_counts(*, alpha: float, batch: int, **counts: int) -> None:
    for name, value in {**counts, "batch": batch}.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"smoothing {name}: expected an integer >= 1, got {value!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"smoothing alpha: expected a level in (0, 1), got {alpha!r}")
