"""Known answers for the deep Boltzmann machine on a model small enough to enumerate every state: its
energy, its mean-field fixed point, its Gibbs sampler, and that persistent-CD training raises the exact
log-likelihood of the training patterns."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from medsight.errors import ConfigError, DataError
from medsight.models.dbm import DBM

SIZES = [5, 4, 3]


def _states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=torch.float64)


def _random_dbm(seed: int = 0) -> DBM:
    torch.manual_seed(seed)
    dbm = DBM(SIZES).double()
    with torch.no_grad():
        for p in dbm.parameters():
            p.normal_(0, 0.8)
    return dbm


def _log_p_visible(dbm: DBM, v: torch.Tensor) -> torch.Tensor:
    """Exact log p(v) by enumerating both hidden layers."""
    h1, h2 = _states(SIZES[1]), _states(SIZES[2])
    pairs = torch.cartesian_prod(torch.arange(len(h1)), torch.arange(len(h2)))

    def log_unnorm(vv: torch.Tensor) -> torch.Tensor:
        n = len(vv)
        e = dbm.energy(
            [vv.repeat_interleave(len(pairs), 0), h1[pairs[:, 0]].repeat(n, 1), h2[pairs[:, 1]].repeat(n, 1)]
        )
        return torch.logsumexp(-e.view(n, len(pairs)), dim=1)

    log_z = torch.logsumexp(log_unnorm(_states(SIZES[0])), dim=0)
    return log_unnorm(v) - log_z


def test_energy_matches_the_formula() -> None:
    dbm = _random_dbm()
    v, h1, h2 = (torch.rand(3, n, dtype=torch.float64).round() for n in SIZES)
    w1, w2 = dbm.rbms[0].weight, dbm.rbms[1].weight
    a0, a1, a2 = dbm.bias(0), dbm.bias(1), dbm.bias(2)
    want = -((h1 @ w1) * v).sum(1) - ((h2 @ w2) * h1).sum(1) - v @ a0 - h1 @ a1 - h2 @ a2
    torch.testing.assert_close(dbm.energy([v, h1, h2]), want)


def test_mean_field_is_a_fixed_point_of_the_update_equations() -> None:
    dbm = _random_dbm()
    v = torch.rand(6, 5, dtype=torch.float64).round()
    with torch.no_grad():
        mu1, mu2 = dbm.mean_field(v, steps=200)
        w1, w2 = dbm.rbms[0].weight, dbm.rbms[1].weight
    torch.testing.assert_close(mu1, torch.sigmoid(v @ w1.t() + mu2 @ w2 + dbm.bias(1)), atol=1e-6, rtol=0)
    torch.testing.assert_close(mu2, torch.sigmoid(mu1 @ w2.t() + dbm.bias(2)), atol=1e-6, rtol=0)


def test_gibbs_chains_sample_the_model_distribution() -> None:
    dbm = _random_dbm(1)
    g = torch.Generator().manual_seed(0)
    chains = dbm.gibbs(dbm.init_chains(4000, g), k=30, generator=g)
    v = chains[0]
    exact = _log_p_visible(dbm, _states(5)).exp()
    codes = (v * 2 ** torch.arange(4, -1, -1.0)).sum(1).long()
    empirical = torch.bincount(codes, minlength=32).double() / len(v)
    assert (
        float((empirical - exact.detach()).abs().sum()) < 0.12
    )  # total variation ~ sampling noise of 4000 draws


def test_pcd_training_raises_the_exact_log_likelihood() -> None:
    torch.manual_seed(0)
    dbm = DBM(SIZES).double()
    patterns = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]], dtype=torch.float64).repeat(8, 1)
    before = float(_log_p_visible(dbm, patterns).mean().detach())
    g = torch.Generator().manual_seed(0)
    chains = dbm.init_chains(16, g)
    opt = torch.optim.SGD(dbm.parameters(), lr=0.1)
    for _ in range(300):
        loss, chains = dbm.pcd_loss(patterns, chains, k=1, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = float(_log_p_visible(dbm, patterns).mean().detach())
    assert after > before + 1.5, (before, after)
    assert after > math.log(0.5) - 1.0  # most of the mass on the two patterns (log 1/2 at best)


def test_dbm_checks_its_layers_and_inputs() -> None:
    with pytest.raises(ConfigError, match="at least two hidden layers"):
        DBM([5, 4])
    with pytest.raises(DataError, match=r"inputs in \[0, 1\]"):
        DBM(SIZES).mean_field(torch.full((1, 5), 2.0))
    assert DBM(SIZES, visible="gaussian").reconstruction(torch.randn(2, 5)).shape == (2, 5)
