"""Energy-based models: RBM free energy, partition function (exact and AIS), CD-k gradients, DBN."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from medsight.errors import ConfigError, DataError, ShapeError
from medsight.models.energy import DBN, RBM, ais_log_partition, log_likelihood, log_partition_exact

torch.set_num_threads(1)


def _rbm(n_v: int, n_h: int, visible: str = "bernoulli", std: float = 1.0, seed: int = 0) -> RBM:
    """A float64 RBM with random weights and biases."""
    torch.manual_seed(seed)
    rbm = RBM(n_v, n_h, visible).double()
    with torch.no_grad():
        rbm.weight.normal_(0.0, std)
        rbm.visible_bias.normal_(0.0, 0.5)
        rbm.hidden_bias.normal_(0.0, 0.5)
    return rbm


def _states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=torch.float64)


def _energy(rbm: RBM, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """E(v, h) for every pair: ``(len(v), len(h))``."""
    interaction = v @ rbm.weight.t() @ h.t()
    hidden = (h @ rbm.hidden_bias)[None, :]
    if rbm.visible == "bernoulli":
        return -(v @ rbm.visible_bias)[:, None] - hidden - interaction
    return 0.5 * (v - rbm.visible_bias).pow(2).sum(1)[:, None] - hidden - interaction


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_free_energy_matches_brute_force_sum_over_hidden_states(visible: str) -> None:
    rbm = _rbm(4, 3, visible)
    v = _states(4) if visible == "bernoulli" else torch.randn(16, 4, dtype=torch.float64)
    brute = -torch.logsumexp(-_energy(rbm, v, _states(3)), dim=1)
    with torch.no_grad():
        assert torch.allclose(rbm.free_energy(v), brute, atol=1e-10)


@pytest.mark.parametrize("shape", [(4, 3), (3, 5)])  # enumerates the hidden, then the visible layer
def test_exact_log_partition_of_bernoulli_rbm_matches_sum_over_all_states(shape: tuple[int, int]) -> None:
    rbm = _rbm(*shape)
    brute = torch.logsumexp(-_energy(rbm, _states(shape[0]), _states(shape[1])).flatten(), dim=0)
    with torch.no_grad():
        assert float(log_partition_exact(rbm)) == pytest.approx(float(brute), abs=1e-10)
        probs = log_likelihood(rbm, _states(shape[0]), log_partition_exact(rbm)).exp()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-10)


def test_exact_log_partition_of_gaussian_rbm_matches_numerical_integral() -> None:
    rbm = _rbm(1, 3, "gaussian")
    grid = torch.linspace(-30, 30, 200001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        integral = torch.logsumexp(-rbm.free_energy(grid), dim=0) + math.log(float(grid[1] - grid[0]))
        assert float(log_partition_exact(rbm)) == pytest.approx(float(integral), abs=1e-6)


def test_exact_log_partition_refuses_too_many_units() -> None:
    with pytest.raises(ConfigError, match="at most 20"):
        log_partition_exact(RBM(25, 22))


@pytest.mark.parametrize(
    ("visible", "use_data"), [("bernoulli", False), ("bernoulli", True), ("gaussian", False)]
)
def test_ais_log_partition_agrees_with_exact(visible: str, use_data: bool) -> None:
    rbm = _rbm(10, 6, visible, std=1.0 if visible == "bernoulli" else 0.3)
    data = torch.bernoulli(torch.full((50, 10), 0.3), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exact = float(log_partition_exact(rbm))
    g = torch.Generator().manual_seed(0)
    estimate = float(
        ais_log_partition(rbm, n_chains=200, n_betas=1000, generator=g, data=data if use_data else None)
    )
    assert abs(estimate - exact) < 0.1


def _grad(loss: torch.Tensor, rbm: RBM) -> torch.Tensor:
    grads = torch.autograd.grad(loss, list(rbm.parameters()))
    return torch.cat([g.flatten() for g in grads])


@pytest.mark.parametrize(("k", "persistent"), [(1, False), (20, False), (20, True)])
def test_cd_k_gradient_points_along_exact_log_likelihood_gradient(k: int, persistent: bool) -> None:
    rbm = _rbm(6, 4, std=1.5)
    data = torch.bernoulli(torch.full((8, 6), 0.5), generator=torch.Generator().manual_seed(1))
    data = data.double().repeat(250, 1)
    exact = _grad(rbm.free_energy(data).mean() + log_partition_exact(rbm), rbm)  # -mean log-likelihood
    g = torch.Generator().manual_seed(2)
    chain = (
        torch.bernoulli(torch.full((1000, 6), 0.5, dtype=torch.float64), generator=g) if persistent else None
    )
    loss, state = rbm.contrastive_divergence(data, k=k, persistent=chain, generator=g)
    cosine = torch.nn.functional.cosine_similarity(_grad(loss, rbm), exact, dim=0)
    assert float(cosine) > 0.8
    assert state.shape == (1000 if persistent else 2000, 6) and not state.requires_grad


def test_cd1_training_raises_exact_log_likelihood_of_training_patterns() -> None:
    patterns = torch.tensor(
        [[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1]], dtype=torch.float32
    )
    torch.manual_seed(0)
    rbm = RBM(6, 4, init_std=0.1)
    g = torch.Generator().manual_seed(0)
    data = patterns.repeat(8, 1)
    with torch.no_grad():
        before = float(log_likelihood(rbm, patterns, log_partition_exact(rbm)).mean())
    opt = torch.optim.Adam(rbm.parameters(), lr=0.05)
    for _ in range(300):
        loss, _ = rbm.contrastive_divergence(data, k=1, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(log_likelihood(rbm, patterns, log_partition_exact(rbm)).mean())
    assert before == pytest.approx(-6 * math.log(2), abs=0.05)
    assert after > before + 1.5  # the best possible is log(1/4), 2.77 nats above the start


def test_bernoulli_rbm_refuses_inputs_outside_unit_interval_and_gaussian_accepts_them() -> None:
    x = torch.tensor([[0.0, 1.5, 0.2, -0.25]])
    with pytest.raises(DataError, match=r"\[0, 1\].*\[-0\.25, 1\.5\]"):
        RBM(4, 3).free_energy(x)
    with pytest.raises(DataError, match="found"):
        RBM(4, 3).contrastive_divergence(x)
    assert RBM(4, 3, visible="gaussian").free_energy(x).shape == (1,)


def test_rbm_shapes_flatten_images_and_refuse_wrong_sizes() -> None:
    torch.manual_seed(0)
    rbm = RBM(6, 4)
    images = torch.rand(5, 1, 2, 3)
    assert rbm.reconstruction(images).shape == images.shape
    assert rbm.hidden_probs(images).shape == (5, 4)
    assert rbm.gibbs(images, k=2).shape == (5, 6)
    with pytest.raises(ShapeError, match=r"\(B, 6\)"):
        rbm.free_energy(torch.rand(5, 7))
    with pytest.raises(ConfigError):
        RBM(4, 3, visible="poisson")  # type: ignore[arg-type]


def test_dbn_pretrains_encodes_and_seeds_a_classifier() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    prototypes = torch.bernoulli(torch.full((3, 12), 0.5), generator=g)
    x = prototypes.repeat(20, 1)
    dbn = DBN([12, 8, 3])
    history = dbn.pretrain(x, epochs=15, lr=0.1, k=1, batch_size=16, generator=g)
    assert len(history) == 2 and history[0][-1] < history[0][0]
    codes = dbn.encode(x)
    assert codes.shape == (60, 3)
    assert bool(((codes > 0) & (codes < 1)).all())
    head = dbn.classifier(4)
    assert head(x).shape == (60, 4)
    assert torch.equal(head[1].weight, dbn.rbms[0].weight.detach())
    loader = [(x[:30], torch.zeros(30)), (x[30:], torch.ones(30))]
    assert len(dbn.fit_layer(1, loader, epochs=1)) == 1
