"""RBM, DBN and DBM on images: the energy models of :mod:`medsight.models.energy` and
:mod:`medsight.models.dbm` over flattened ``(C, *patch_size)`` inputs, registered as ``rbm``, ``dbn``
and ``dbm``. They fit themselves (contrastive divergence is not the gradient of a loss the engine could
minimise on its own terms): :meth:`EnergyImageModel.fit_step` takes one plain-SGD step on a batch.

* ``forward(x)``: the top hidden layer's probabilities ``(B, out_channels)`` (the model as an encoder);
* ``reconstruction(x)``: a mean-field down pass of the code, in the shape of ``x`` (anomaly maps);
* ``free_energy(x)``: of the pixel-level RBM (the RBM's exact free energy; DBN: its first RBM's).

Schedules over the training ``progress`` in [0, 1]: a DBN trains its RBMs greedily, each for an equal
share of the budget, bottom up; a DBM pretrains greedily in the first ``PRETRAIN_SHARE`` of the budget,
then trains all layers jointly by persistent CD (mean-field data statistics, Gibbs chains for the model's).

Example:
    >>> from medsight.models import build_model
    >>> rbm = build_model("rbm", spatial_dims=2, in_channels=1, out_channels=16, patch_size=[8, 8])
    >>> logs = rbm.fit_step(torch.rand(4, 1, 8, 8), progress=0.0, lr=0.05)
    >>> rbm.free_energy(torch.rand(4, 1, 8, 8)).shape
    torch.Size([4])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from medsight.errors import ConfigError
from medsight.models import register_model
from medsight.models.dbm import DBM
from medsight.models.energy import DBN, RBM, Visible
from medsight.models.info import ModelInfo

PRETRAIN_SHARE = 0.5  # of a DBM's budget spent on greedy pretraining
N_CHAINS = 64  # persistent chains
ENERGY_INFO = ModelInfo(family="energy", needs_patch_size=True, tiny={"visible": "gaussian", "hidden": [8]})


def _check(name: str, patch_size: list[int] | None, deep_supervision: bool) -> list[int]:
    if deep_supervision:
        raise ConfigError(f"model {name!r}: deep_supervision=True is for segmentation models, got True")
    if patch_size is None:
        raise ConfigError(f"model {name!r}: patch_size (the input image size) is required, got None")
    return patch_size


def _sgd(loss: torch.Tensor, params: list[nn.Parameter], lr: float) -> None:
    """One plain SGD step on ``loss`` for ``params`` (unused ones stay)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            if g is not None:
                p.sub_(lr * g)


class EnergyImageModel(nn.Module):
    """What the image energy models share: the input shape, the chains and the self-fitting step."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.n_visible = math.prod(self.shape)

    def fit_step(
        self,
        x: torch.Tensor,
        progress: float,
        lr: float,
        k: int = 1,
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        """One training step on the batch ``x`` at ``progress`` in [0, 1]; returns logs."""
        raise NotImplementedError

    def reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def free_energy(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _random_chain(self, n: int, visible: Visible) -> torch.Tensor:
        return (
            torch.zeros(n, self.n_visible)
            if visible == "gaussian"
            else torch.bernoulli(torch.full((n, self.n_visible), 0.5))
        )


class ImageRBM(EnergyImageModel):
    """A Bernoulli (or Gaussian) RBM on images, trained by CD-k or persistent CD-k (``persistent``)."""

    def __init__(
        self, shape: tuple[int, ...], n_hidden: int, visible: Visible = "bernoulli", persistent: bool = True
    ) -> None:
        super().__init__(shape)
        self.rbm = RBM(self.n_visible, n_hidden, visible)
        self.persistent = persistent
        self.register_buffer("chain", self._random_chain(N_CHAINS, visible))

    def fit_step(
        self,
        x: torch.Tensor,
        progress: float,
        lr: float,
        k: int = 1,
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        start = self.chain if self.persistent else None
        loss, negative = self.rbm.contrastive_divergence(x, k=k, persistent=start, generator=generator)
        _sgd(loss, list(self.rbm.parameters()), lr)
        if self.persistent:
            self.chain.copy_(negative.detach())
        with torch.no_grad():
            error = float((self.rbm.reconstruction(x) - x).pow(2).mean())
        return {"cd_loss": float(loss.detach()), "recon_error": error}

    def reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        return self.rbm.reconstruction(x)

    def free_energy(self, x: torch.Tensor) -> torch.Tensor:
        return self.rbm.free_energy(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rbm.hidden_probs(x)


class ImageDBN(EnergyImageModel):
    """A DBN on images: its RBMs trained greedily by CD-k, each for an equal share of the budget."""

    def __init__(self, shape: tuple[int, ...], sizes: list[int], visible: Visible = "bernoulli") -> None:
        super().__init__(shape)
        self.dbn = DBN([self.n_visible, *sizes], visible)

    def layer_at(self, progress: float) -> int:
        return min(len(self.dbn.rbms) - 1, int(progress * len(self.dbn.rbms)))

    def fit_step(
        self,
        x: torch.Tensor,
        progress: float,
        lr: float,
        k: int = 1,
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        i = self.layer_at(progress)
        rbm = self.dbn.rbms[i]
        with torch.no_grad():
            inputs = self.dbn._up_to(i, x)
        loss, _ = rbm.contrastive_divergence(inputs, k=k, generator=generator)
        _sgd(loss, list(rbm.parameters()), lr)
        with torch.no_grad():
            error = float((rbm.reconstruction(inputs) - inputs).pow(2).mean())
        return {"layer": float(i), "cd_loss": float(loss.detach()), "recon_error": error}

    def reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-field up to the top layer, then down through every RBM's visible means."""
        h = self.dbn.encode(x)
        for rbm in reversed(self.dbn.rbms):
            h = rbm.visible_mean(h)
        return h.reshape(x.shape)

    def free_energy(self, x: torch.Tensor) -> torch.Tensor:
        return self.dbn.rbms[0].free_energy(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dbn.encode(x)


class ImageDBM(EnergyImageModel):
    """A DBM on images: greedy pretraining, then joint persistent CD with mean-field inference."""

    def __init__(self, shape: tuple[int, ...], sizes: list[int], visible: Visible = "bernoulli") -> None:
        super().__init__(shape)
        self.dbm = DBM([self.n_visible, *sizes], visible)
        for i, n in enumerate(self.dbm.layer_sizes):
            chain = (
                self._random_chain(N_CHAINS, visible)
                if i == 0
                else torch.bernoulli(torch.full((N_CHAINS, n), 0.5))
            )
            self.register_buffer(f"chain_{i}", chain)

    def _chains(self) -> list[torch.Tensor]:
        return [getattr(self, f"chain_{i}") for i in range(len(self.dbm.layer_sizes))]

    def fit_step(
        self,
        x: torch.Tensor,
        progress: float,
        lr: float,
        k: int = 1,
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        rbms = self.dbm.rbms
        if progress < PRETRAIN_SHARE:
            i = min(len(rbms) - 1, int(progress / PRETRAIN_SHARE * len(rbms)))
            with torch.no_grad():
                inputs = rbms[0]._flat(x)
                for rbm in rbms[:i]:
                    inputs = rbm.hidden_probs(inputs)
            loss, _ = rbms[i].contrastive_divergence(inputs, k=k, generator=generator)
            _sgd(loss, list(rbms[i].parameters()), lr)
            return {"phase": 0.0, "layer": float(i), "cd_loss": float(loss.detach())}
        loss, chains = self.dbm.pcd_loss(x, self._chains(), k=k, generator=generator)
        _sgd(loss, list(self.dbm.parameters()), lr)
        for own, new in zip(self._chains(), chains, strict=True):
            own.copy_(new)
        with torch.no_grad():
            error = float((self.dbm.reconstruction(x) - x).pow(2).mean())
        return {"phase": 1.0, "pcd_loss": float(loss.detach()), "recon_error": error}

    def reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        return self.dbm.reconstruction(x)

    def free_energy(self, x: torch.Tensor) -> torch.Tensor:
        return self.dbm.rbms[0].free_energy(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dbm(x)


def _shape(in_channels: int, patch_size: list[int]) -> tuple[int, ...]:
    return (in_channels, *patch_size)


@register_model("rbm", ENERGY_INFO)
def build_rbm(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    visible: Visible = "bernoulli",
    persistent: bool = True,
    hidden: list[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """An RBM of ``out_channels`` hidden units over the flattened image (``hidden`` is ignored: one layer)."""
    size = _check("rbm", patch_size, deep_supervision)
    _no_extra("rbm", kwargs)
    return ImageRBM(_shape(in_channels, size), out_channels, visible, persistent)


@register_model("dbn", ENERGY_INFO)
def build_dbn(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    visible: Visible = "bernoulli",
    hidden: list[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A DBN with hidden layers ``hidden`` (default [256]) under a top layer of ``out_channels`` units."""
    size = _check("dbn", patch_size, deep_supervision)
    _no_extra("dbn", kwargs)
    return ImageDBN(_shape(in_channels, size), [*(hidden or [256]), out_channels], visible)


@register_model("dbm", ENERGY_INFO)
def build_dbm(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    visible: Visible = "bernoulli",
    hidden: list[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A DBM with hidden layers ``hidden`` (default [256]) under a top layer of ``out_channels`` units."""
    size = _check("dbm", patch_size, deep_supervision)
    _no_extra("dbm", kwargs)
    return ImageDBM(_shape(in_channels, size), [*(hidden or [256]), out_channels], visible)


@register_model("dbn_mlp", ModelInfo(family="classification", needs_patch_size=True))
def build_dbn_mlp(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    patch_size: list[int] | None,
    deep_supervision: bool,
    hidden: list[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """The classifier of a DBN (:meth:`medsight.models.energy.DBN.classifier`): ``Linear + Sigmoid`` per
    hidden layer (default [512, 256]) and a linear head; what ``medsight pretrain --method dbn`` seeds."""
    size = _check("dbn_mlp", patch_size, deep_supervision)
    _no_extra("dbn_mlp", kwargs)
    return DBN([math.prod(_shape(in_channels, size)), *(hidden or [512, 256])]).classifier(out_channels)


def _no_extra(name: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise ConfigError(
            f"model {name!r}: unknown options {sorted(kwargs)}; expected visible, hidden, persistent (rbm)"
        )
