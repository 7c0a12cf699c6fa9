"""Energy-based models for the ``anomaly`` family: RBMs, their partition function, and DBNs.

Plain ``nn.Module``s that import nothing from the engine or the tasks:

* :class:`RBM`: a restricted Boltzmann machine with binary hidden units and Bernoulli or Gaussian
  (unit-variance) visible units, trained by (persistent) contrastive divergence through a surrogate
  loss whose gradient is the CD-k estimate, so any torch optimiser trains it;
* :func:`log_partition_exact` (by enumeration, tiny models) and :func:`ais_log_partition` (annealed
  importance sampling, Salakhutdinov & Murray 2008) for :func:`log_likelihood`;
* :class:`DBN`: a stack of RBMs trained greedily layer by layer, whose mean-field up pass is an
  encoder and whose weights seed a classifier for fine-tuning.

Energies (``W`` is ``(n_hidden, n_visible)``, as in ``nn.Linear``; ``b`` visible, ``c`` hidden biases):

* Bernoulli visible: ``E(v, h) = -b.v - c.h - h.W v``;
* Gaussian visible (unit variance, standardise the data first): ``E(v, h) = |v - b|^2 / 2 - c.h - h.W v``.

Example:
    >>> rbm = RBM(6, 4)
    >>> x = torch.bernoulli(torch.full((8, 6), 0.5), generator=torch.Generator().manual_seed(0))
    >>> loss, chain = rbm.contrastive_divergence(x, k=1)
    >>> loss.backward()
    >>> log_likelihood(rbm, x, log_partition_exact(rbm)).shape
    torch.Size([8])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medsight.errors import ConfigError, DataError, ShapeError

Visible = Literal["bernoulli", "gaussian"]
MAX_ENUMERATED_UNITS = 20


class RBM(nn.Module):
    """A restricted Boltzmann machine with binary hidden units.

    Inputs are ``(B, n_visible)`` or ``(B, *shape)`` with ``prod(shape) == n_visible`` (flattened).

    Args:
        n_visible: number of visible units.
        n_hidden: number of hidden units.
        visible: ``"bernoulli"`` (inputs in [0, 1]) or ``"gaussian"`` (unit variance).
        init_std: standard deviation of the initial weights (biases start at zero).

    Example:
        >>> rbm = RBM(4, 3, visible="gaussian")
        >>> rbm.free_energy(torch.zeros(2, 4)).shape
        torch.Size([2])
    """

    def __init__(self, n_visible: int, n_hidden: int, visible: Visible = "bernoulli", init_std: float = 0.01):
        super().__init__()
        if visible not in ("bernoulli", "gaussian"):
            raise ConfigError(f"RBM visible units must be 'bernoulli' or 'gaussian', got {visible!r}")
        if n_visible < 1 or n_hidden < 1:
            raise ConfigError(
                f"RBM needs at least one unit per layer, got {n_visible} visible, {n_hidden} hidden"
            )
        self.n_visible, self.n_hidden, self.visible = n_visible, n_hidden, visible
        self.weight = nn.Parameter(torch.randn(n_hidden, n_visible) * init_std)
        self.visible_bias = nn.Parameter(torch.zeros(n_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden))

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, visible={self.visible!r}"

    def _flat(self, v: torch.Tensor) -> torch.Tensor:
        """``v`` as ``(B, n_visible)``, checked against the visible layer."""
        flat = v.reshape(v.shape[0], -1) if v.dim() != 1 else v.reshape(1, -1)
        if flat.shape[1] != self.n_visible:
            raise ShapeError("RBM visible input", f"(B, {self.n_visible})", tuple(v.shape))
        if self.visible == "bernoulli" and flat.numel():
            lo, hi = float(flat.detach().min()), float(flat.detach().max())
            if lo < 0.0 or hi > 1.0:
                raise DataError(
                    f"RBM with Bernoulli visible units needs inputs in [0, 1], found [{lo:.4g}, {hi:.4g}]"
                    " (rescale the data, or use visible='gaussian' on standardised data)"
                )
        return flat

    def _hidden_input(self, v: torch.Tensor) -> torch.Tensor:
        return F.linear(v, self.weight, self.hidden_bias)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """``F(v) = -log sum_h exp(-E(v, h))`` per sample, shape ``(B,)``."""
        v = self._flat(v)
        hidden = F.softplus(self._hidden_input(v)).sum(dim=1)
        if self.visible == "bernoulli":
            return -(v @ self.visible_bias) - hidden
        return 0.5 * (v - self.visible_bias).pow(2).sum(dim=1) - hidden

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """``p(h_j = 1 | v)``, shape ``(B, n_hidden)``."""
        return torch.sigmoid(self._hidden_input(self._flat(v)))

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """``E[v | h]``: probabilities (Bernoulli) or means (Gaussian), shape ``(B, n_visible)``."""
        pre = F.linear(h, self.weight.t(), self.visible_bias)
        return torch.sigmoid(pre) if self.visible == "bernoulli" else pre

    def sample_hidden(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A binary sample of ``h ~ p(h | v)``."""
        return torch.bernoulli(self.hidden_probs(v), generator=generator)

    def sample_visible(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A sample of ``v ~ p(v | h)``: binary (Bernoulli) or ``N(mean, 1)`` (Gaussian)."""
        mean = self.visible_mean(h)
        if self.visible == "bernoulli":
            return torch.bernoulli(mean, generator=generator)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + noise

    def gibbs(self, v: torch.Tensor, k: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """``k`` steps of block Gibbs sampling ``v -> h -> v``, from ``v``; returns the visible sample."""
        v = self._flat(v)
        for _ in range(k):
            v = self.sample_visible(self.sample_hidden(v, generator), generator)
        return v

    def contrastive_divergence(
        self,
        v: torch.Tensor,
        k: int = 1,
        persistent: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A surrogate loss whose gradient is the CD-k (or persistent CD-k) estimate.

        ``loss = F(data).mean() - F(model_samples).mean()``, the samples detached, so its gradient is
        the negative log-likelihood gradient estimated with a ``k``-step Gibbs chain started at the
        data, or at ``persistent`` (a chain state of any batch size) for persistent CD.

        Returns:
            ``(loss, chain_state)``: pass ``chain_state`` back as ``persistent`` for PCD.

        Example:
            >>> rbm = RBM(6, 4)
            >>> opt = torch.optim.SGD(rbm.parameters(), lr=0.1)
            >>> x = torch.ones(4, 6)
            >>> loss, chain = rbm.contrastive_divergence(x, k=1)
            >>> loss.backward(); opt.step()
        """
        if k < 1:
            raise ConfigError(f"contrastive divergence needs k >= 1 Gibbs steps, got {k}")
        data = self._flat(v)
        start = data if persistent is None else self._flat(persistent)
        with torch.no_grad():
            negative = self.gibbs(start.detach(), k, generator)
        loss = self.free_energy(data).mean() - self.free_energy(negative).mean()
        return loss, negative

    def reconstruction(self, v: torch.Tensor) -> torch.Tensor:
        """One mean-field up-down pass ``E[v | p(h | v)]``, in the shape of ``v`` (for anomaly maps)."""
        return self.visible_mean(self.hidden_probs(v)).reshape(v.shape)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """The hidden probabilities ``p(h | v)`` (the RBM as an encoder)."""
        return self.hidden_probs(v)


def _all_states(n: int, like: torch.Tensor) -> torch.Tensor:
    """Every binary vector of length ``n``, shape ``(2**n, n)``."""
    states = list(itertools.product((0.0, 1.0), repeat=n))
    return torch.tensor(states, dtype=like.dtype, device=like.device)


def _log_z_over_hidden(rbm: RBM) -> torch.Tensor:
    """``log Z`` by summing ``v`` out analytically and enumerating ``h``."""
    h = _all_states(rbm.n_hidden, rbm.weight)
    top_down = F.linear(h, rbm.weight.t(), rbm.visible_bias)  # b + W^T h
    if rbm.visible == "bernoulli":
        log_terms = h @ rbm.hidden_bias + F.softplus(top_down).sum(dim=1)
        return torch.logsumexp(log_terms, dim=0)
    b = rbm.visible_bias
    log_terms = h @ rbm.hidden_bias + 0.5 * top_down.pow(2).sum(dim=1) - 0.5 * b.pow(2).sum()
    return torch.logsumexp(log_terms, dim=0) + 0.5 * rbm.n_visible * math.log(2 * math.pi)


def log_partition_exact(rbm: RBM) -> torch.Tensor:
    """``log Z`` of a tiny RBM by enumerating the smaller binary layer (differentiable).

    Gaussian visible units are integrated analytically, so only the hidden layer is enumerated.

    Raises:
        ConfigError: the enumerated layer has more than 20 units.

    Example:
        >>> rbm = RBM(3, 2)
        >>> with torch.no_grad():
        ...     _ = rbm.weight.zero_()
        >>> round(log_partition_exact(rbm).item(), 4) == round(5 * math.log(2), 4)
        True
    """
    over_visible = rbm.visible == "bernoulli" and rbm.n_visible < rbm.n_hidden
    n = rbm.n_visible if over_visible else rbm.n_hidden
    if n > MAX_ENUMERATED_UNITS:
        layer = "visible" if over_visible else "hidden"
        raise ConfigError(
            f"exact log partition enumerates 2**{n} {layer} states; at most {MAX_ENUMERATED_UNITS} units"
            " are allowed (use ais_log_partition)"
        )
    if over_visible:
        return torch.logsumexp(-rbm.free_energy(_all_states(n, rbm.weight)), dim=0)
    return _log_z_over_hidden(rbm)


def log_likelihood(rbm: RBM, v: torch.Tensor, log_z: torch.Tensor | float) -> torch.Tensor:
    """``log p(v) = -F(v) - log Z`` per sample (a log density for Gaussian visible units).

    Example:
        >>> rbm = RBM(3, 2)
        >>> bool(log_likelihood(rbm, torch.ones(1, 3), log_partition_exact(rbm)).exp() < 1)
        True
    """
    return -rbm.free_energy(v) - log_z


def _base_bias(rbm: RBM, data: torch.Tensor | None) -> torch.Tensor:
    """Visible biases of the zero-weight base RBM: the data's base rates, or the RBM's own biases."""
    if data is None:
        return rbm.visible_bias.detach().double()
    x = rbm._flat(data).detach().double()
    if rbm.visible == "gaussian":
        return x.mean(dim=0)
    rate = (x.sum(dim=0) + 0.5) / (x.shape[0] + 1.0)  # smoothed, so no rate is exactly 0 or 1
    return torch.log(rate) - torch.log1p(-rate)


class _Annealer:
    """The AIS path ``p_beta(v, h) ∝ exp((1 - beta) * base(v) + beta * (-E_B(v, h)))``, in float64."""

    def __init__(self, rbm: RBM, base: torch.Tensor) -> None:
        self.gaussian = rbm.visible == "gaussian"
        self.w = rbm.weight.detach().double().cpu()
        self.b = rbm.visible_bias.detach().double().cpu()
        self.c = rbm.hidden_bias.detach().double().cpu()
        self.base = base.cpu()

    def log_z_base(self) -> float:
        n_h = self.c.numel()
        if self.gaussian:
            return n_h * math.log(2) + 0.5 * self.b.numel() * math.log(2 * math.pi)
        return n_h * math.log(2) + float(F.softplus(self.base).sum())

    def log_p(self, beta: float, v: torch.Tensor) -> torch.Tensor:
        """Unnormalised ``log p_beta(v)`` with the hidden units summed out."""
        hidden = F.softplus(beta * F.linear(v, self.w, self.c)).sum(dim=1)
        linear = (1 - beta) * (v @ self.base) + beta * (v @ self.b)
        if not self.gaussian:
            return linear + hidden
        squares = (1 - beta) * self.base.pow(2).sum() + beta * self.b.pow(2).sum()
        return linear + hidden - 0.5 * (v.pow(2).sum(dim=1) + squares)

    def sample_base(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        shape = (n, self.base.numel())
        if self.gaussian:
            return self.base + torch.randn(shape, generator=generator, dtype=torch.float64)
        return torch.bernoulli(torch.sigmoid(self.base).expand(shape), generator=generator)

    def transition(self, beta: float, v: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One Gibbs step ``v -> h -> v`` that leaves ``p_beta`` invariant."""
        h = torch.bernoulli(torch.sigmoid(beta * F.linear(v, self.w, self.c)), generator=generator)
        pre = (1 - beta) * self.base + beta * F.linear(h, self.w.t(), self.b)
        if self.gaussian:
            return pre + torch.randn(pre.shape, generator=generator, dtype=torch.float64)
        return torch.bernoulli(torch.sigmoid(pre), generator=generator)


@torch.no_grad()
def ais_log_partition(
    rbm: RBM,
    n_chains: int = 100,
    n_betas: int = 1000,
    generator: torch.Generator | None = None,
    data: torch.Tensor | None = None,
) -> torch.Tensor:
    """Estimate ``log Z`` by annealed importance sampling (Salakhutdinov & Murray 2008).

    Anneals from a zero-weight RBM (visible biases: the base rates of ``data`` when given, else the
    RBM's own) to ``rbm`` through ``n_betas`` evenly spaced inverse temperatures, with ``n_chains``
    independent chains, in float64 on the CPU. The estimate of ``Z`` is unbiased; that of ``log Z``
    is a stochastic lower bound on average.

    Example:
        >>> rbm = RBM(6, 4)
        >>> g = torch.Generator().manual_seed(0)
        >>> abs(float(ais_log_partition(rbm, 50, 200, g) - log_partition_exact(rbm).detach())) < 0.05
        True
    """
    if n_chains < 1 or n_betas < 2:
        raise ConfigError(f"AIS needs n_chains >= 1 and n_betas >= 2, got {n_chains} and {n_betas}")
    path = _Annealer(rbm, _base_bias(rbm, data))
    betas = torch.linspace(0.0, 1.0, n_betas, dtype=torch.float64).tolist()
    v = path.sample_base(n_chains, generator)
    log_w = torch.zeros(n_chains, dtype=torch.float64)
    for k in range(1, n_betas):
        log_w += path.log_p(betas[k], v) - path.log_p(betas[k - 1], v)
        if k < n_betas - 1:
            v = path.transition(betas[k], v, generator)
    log_mean_w = torch.logsumexp(log_w, dim=0) - math.log(n_chains)
    return (path.log_z_base() + log_mean_w).to(rbm.weight.dtype).to(rbm.weight.device)


def _batches(
    data: torch.Tensor | Iterable, batch_size: int, generator: torch.Generator | None
) -> Iterator[torch.Tensor]:
    """Mini-batches of a tensor (shuffled) or of an iterable of tensors / ``(x, ...)`` tuples."""
    if isinstance(data, torch.Tensor):
        order = torch.randperm(data.shape[0], generator=generator)
        yield from (data[order[i : i + batch_size]] for i in range(0, data.shape[0], batch_size))
        return
    for batch in data:
        yield batch[0] if isinstance(batch, list | tuple) else batch


class DBN(nn.Module):
    """A deep belief network: a stack of RBMs trained greedily, layer by layer, with CD-k.

    Args:
        layer_sizes: ``[n_visible, n_hidden_1, ..., n_hidden_L]``.
        visible: the first RBM's visible units; the upper RBMs are Bernoulli.

    Example:
        >>> dbn = DBN([6, 4, 2])
        >>> x = torch.bernoulli(torch.full((16, 6), 0.5), generator=torch.Generator().manual_seed(0))
        >>> _ = dbn.pretrain(x, epochs=2, lr=0.1)
        >>> dbn.encode(x).shape
        torch.Size([16, 2])
    """

    def __init__(self, layer_sizes: list[int] | tuple[int, ...], visible: Visible = "bernoulli") -> None:
        super().__init__()
        if len(layer_sizes) < 2:
            raise ConfigError(f"DBN needs at least two layer sizes, got {list(layer_sizes)}")
        self.layer_sizes = list(layer_sizes)
        pairs = zip(self.layer_sizes[:-1], self.layer_sizes[1:], strict=True)
        self.rbms = nn.ModuleList(
            RBM(n_v, n_h, visible if i == 0 else "bernoulli") for i, (n_v, n_h) in enumerate(pairs)
        )

    def _up_to(self, i: int, v: torch.Tensor) -> torch.Tensor:
        """The mean-field input of layer ``i`` (the probabilities of the layer below)."""
        x = v.reshape(v.shape[0], -1)
        for rbm in self.rbms[:i]:
            x = rbm.hidden_probs(x)
        return x

    def fit_layer(
        self,
        i: int,
        data: torch.Tensor | Iterable,
        epochs: int = 10,
        lr: float = 0.05,
        k: int = 1,
        batch_size: int = 32,
        generator: torch.Generator | None = None,
    ) -> list[float]:
        """Train RBM ``i`` by CD-k (SGD with momentum) on the mean-field codes of the layers below.

        ``data`` is the DBN's own input: a tensor (shuffled in mini-batches) or a data loader of
        tensors or ``(x, ...)`` tuples. Returns the mean reconstruction error of each epoch.
        """
        rbm = self.rbms[i]
        opt = torch.optim.SGD(rbm.parameters(), lr=lr, momentum=0.5)
        history = []
        for _ in range(epochs):
            errors = []
            for batch in _batches(data, batch_size, generator):
                with torch.no_grad():
                    x = self._up_to(i, batch)
                loss, _ = rbm.contrastive_divergence(x, k=k, generator=generator)
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    errors.append(float((rbm.reconstruction(x) - x).pow(2).mean()))
            history.append(sum(errors) / max(len(errors), 1))
        return history

    def pretrain(
        self,
        x: torch.Tensor | Iterable,
        epochs: int = 10,
        lr: float = 0.05,
        k: int = 1,
        batch_size: int = 32,
        generator: torch.Generator | None = None,
    ) -> list[list[float]]:
        """Greedy layer-wise pretraining: :meth:`fit_layer` for every layer, bottom up."""
        return [self.fit_layer(i, x, epochs, lr, k, batch_size, generator) for i in range(len(self.rbms))]

    def encode(self, v: torch.Tensor) -> torch.Tensor:
        """The mean-field up pass: the top layer's probabilities, ``(B, layer_sizes[-1])``, in (0, 1)."""
        return self._up_to(len(self.rbms), v)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`encode`."""
        return self.encode(v)

    def classifier(self, n_classes: int) -> nn.Sequential:
        """A classifier for fine-tuning: the RBMs' weights as ``Linear + Sigmoid`` layers, then a head.

        The layers are copies: fine-tuning the classifier leaves the DBN unchanged.

        Example:
            >>> DBN([6, 4, 2]).classifier(3)(torch.rand(5, 6)).shape
            torch.Size([5, 3])
        """
        layers: list[nn.Module] = [nn.Flatten()]
        for rbm in self.rbms:
            linear = nn.Linear(rbm.n_visible, rbm.n_hidden)
            with torch.no_grad():
                linear.weight.copy_(rbm.weight)
                linear.bias.copy_(rbm.hidden_bias)
            layers += [linear, nn.Sigmoid()]
        layers.append(nn.Linear(self.layer_sizes[-1], n_classes))
        return nn.Sequential(*layers)
