"""A deep Boltzmann machine (Salakhutdinov & Hinton 2009): greedy layer-wise pretraining of its RBMs,
mean-field inference of the hidden layers, and joint training by persistent contrastive divergence.

Energy of the states ``s_0 = v, s_1 .. s_L`` (``W_i`` is ``(n_{i+1}, n_i)``, ``a_i`` the bias of layer
``i``): ``E = -sum_i s_{i+1}.W_i s_i - sum_i a_i.s_i`` (Gaussian visible units: ``|v - a_0|^2 / 2``
replaces ``-a_0.v``). The layer biases are the RBMs' own: ``a_0`` is the first RBM's visible bias,
``a_i`` (i >= 1) the hidden bias of RBM ``i - 1``; the upper RBMs' visible biases serve pretraining only.

Example:
    >>> dbm = DBM([6, 4, 2])
    >>> v = torch.bernoulli(torch.full((8, 6), 0.5), generator=torch.Generator().manual_seed(0))
    >>> loss, chains = dbm.pcd_loss(v, dbm.init_chains(8))
    >>> [m.shape[1] for m in dbm.mean_field(v)]
    [4, 2]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medsight.errors import ConfigError
from medsight.models.energy import RBM, Visible

MEAN_FIELD_STEPS = 10


class DBM(nn.Module):
    """A deep Boltzmann machine over ``layer_sizes = [n_visible, n_1, ..., n_L]`` (L >= 2).

    Args:
        layer_sizes: units per layer, visible first.
        visible: ``"bernoulli"`` (inputs in [0, 1]) or ``"gaussian"`` (unit variance).
    """

    def __init__(self, layer_sizes: list[int] | tuple[int, ...], visible: Visible = "bernoulli") -> None:
        super().__init__()
        if len(layer_sizes) < 3:
            raise ConfigError(f"DBM needs a visible and at least two hidden layers, got {list(layer_sizes)}")
        self.layer_sizes = list(layer_sizes)
        pairs = zip(self.layer_sizes[:-1], self.layer_sizes[1:], strict=True)
        self.rbms = nn.ModuleList(
            RBM(n_v, n_h, visible if i == 0 else "bernoulli") for i, (n_v, n_h) in enumerate(pairs)
        )

    @property
    def gaussian(self) -> bool:
        return self.rbms[0].visible == "gaussian"

    def bias(self, i: int) -> torch.Tensor:
        """The bias of layer ``i`` (0: visible)."""
        return self.rbms[0].visible_bias if i == 0 else self.rbms[i - 1].hidden_bias

    def _input(self, i: int, states: list[torch.Tensor]) -> torch.Tensor:
        """The total input of hidden layer ``i`` from its neighbours in ``states``."""
        x = F.linear(states[i - 1], self.rbms[i - 1].weight, self.bias(i))
        if i + 1 < len(states):
            x = x + states[i + 1] @ self.rbms[i].weight
        return x

    def mean_field(self, v: torch.Tensor, steps: int = MEAN_FIELD_STEPS) -> list[torch.Tensor]:
        """Mean-field posteriors ``q(h_i = 1 | v)`` of every hidden layer, ``steps`` fixed-point sweeps
        from a bottom-up pass (inner layers with doubled input, standing in for the missing top-down)."""
        x = self.rbms[0]._flat(v)
        states = [x]
        for i in range(1, len(self.layer_sizes)):
            scale = 2.0 if i < len(self.layer_sizes) - 1 else 1.0
            states.append(torch.sigmoid(scale * F.linear(states[-1], self.rbms[i - 1].weight, self.bias(i))))
        for _ in range(steps):
            for i in range(1, len(states)):
                states[i] = torch.sigmoid(self._input(i, states))
        return states[1:]

    def energy(self, states: list[torch.Tensor]) -> torch.Tensor:
        """``E(s_0, ..., s_L)`` per sample, shape ``(B,)``."""
        v = states[0]
        e = 0.5 * (v - self.bias(0)).pow(2).sum(1) if self.gaussian else -(v @ self.bias(0))
        for i, rbm in enumerate(self.rbms):
            e = (
                e
                - (F.linear(states[i], rbm.weight) * states[i + 1]).sum(1)
                - states[i + 1] @ self.bias(i + 1)
            )
        return e

    def init_chains(self, n: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Persistent chains: ``n`` random binary states of every layer (Gaussian visible: zeros)."""
        w = self.rbms[0].weight
        return [
            torch.zeros(n, s, dtype=w.dtype, device=w.device)
            if (i == 0 and self.gaussian)
            else torch.bernoulli(torch.full((n, s), 0.5, dtype=w.dtype, device=w.device), generator=generator)
            for i, s in enumerate(self.layer_sizes)
        ]

    @torch.no_grad()
    def gibbs(
        self, states: list[torch.Tensor], k: int = 1, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """``k`` sweeps of block Gibbs sampling: odd layers given even ones, then even given odd."""
        states = list(states)
        n = len(states)
        for _ in range(k):
            for parity in (1, 0):
                for i in range(parity, n, 2):
                    states[i] = self._sample(i, states, generator)
        return states

    def _sample(self, i: int, states: list[torch.Tensor], generator: torch.Generator | None) -> torch.Tensor:
        if i > 0:
            return torch.bernoulli(torch.sigmoid(self._input(i, states)), generator=generator)
        mean = F.linear(states[1], self.rbms[0].weight.t(), self.bias(0))
        if self.gaussian:
            return mean + torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return torch.bernoulli(torch.sigmoid(mean), generator=generator)

    def pcd_loss(
        self,
        v: torch.Tensor,
        chains: list[torch.Tensor],
        k: int = 1,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A surrogate loss whose gradient is the DBM's variational PCD estimate of the negative
        log-likelihood gradient: ``E(v, mean-field) - E(model samples)``, both states detached.

        Returns:
            ``(loss, chains)``: the advanced persistent chains, to pass back next step.
        """
        x = self.rbms[0]._flat(v)
        with torch.no_grad():
            data = [x, *self.mean_field(x)]
            chains = self.gibbs(chains, k, generator)
        return self.energy(data).mean() - self.energy(chains).mean(), chains

    def reconstruction(self, v: torch.Tensor) -> torch.Tensor:
        """``E[v | q(h_1)]`` from the mean-field posterior, in the shape of ``v``."""
        h1 = self.mean_field(v)[0]
        mean = F.linear(h1, self.rbms[0].weight.t(), self.bias(0))
        return (mean if self.gaussian else torch.sigmoid(mean)).reshape(v.shape)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """The top layer's mean-field posterior, ``(B, layer_sizes[-1])`` (the DBM as an encoder)."""
        return self.mean_field(v)[-1]
