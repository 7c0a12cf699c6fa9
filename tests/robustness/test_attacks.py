"""Every registered attack on a tiny trained classifier and segmenter, through an rgb InputSpace."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from robustness_testutils import Trained, class_images, per_sample_ce

from medsight.errors import ConfigError
from medsight.robustness.attacks import (
    ATTACKS,
    apply_universal,
    class_margin,
    fit_universal,
    margin_loss,
)

NORMS = {
    "fgsm": "linf",
    "bim": "linf",
    "pgd": "linf",
    "pgd-l2": "l2",
    "cw-l2": "l2",
    "deepfool": "l2",
    "square": "linf",
    "universal": "linf",
}
EPS = {"linf": 12 / 255, "l2": 0.5}
OPTIONS: dict[str, dict[str, Any]] = {
    "cw-l2": {"steps": 30, "binary_steps": 4},
    "square": {"n_queries": 300, "p_init": 0.8},  # a large square suits 16x16 images
}


def _attack(trained: Trained, name: str, loss: Any = per_sample_ce, **options: Any) -> torch.Tensor:
    """Runs one attack and checks what every attack promises: x untouched, the model untouched, the
    result in [0, 1] and within eps."""
    norm = NORMS[name]
    options = {"eps": EPS[norm], **OPTIONS.get(name, {}), **options}
    before, x = trained.snapshot(), trained.u.clone()
    generator = torch.Generator().manual_seed(1)
    adv = ATTACKS.get(name)(trained.forward, loss, trained.u, trained.y, generator=generator, **options)
    assert torch.equal(trained.u, x)
    assert all(torch.equal(v, before[k]) for k, v in trained.model.state_dict().items())
    assert all(p.grad is None for p in trained.model.parameters())
    assert adv.shape == x.shape and not adv.requires_grad
    assert adv.min() >= 0 and adv.max() <= 1
    if options["eps"] is not None:
        assert _norms(adv - x, norm).max() <= options["eps"] * (1 + 1e-5)
    return adv


def _norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    return delta.flatten(1).norm(p=float("inf") if norm == "linf" else 2, dim=1)


def _accuracy(trained: Trained, u: torch.Tensor) -> float:
    with torch.no_grad():
        return (trained.forward(u).argmax(1) == trained.y).float().mean().item()


def _dice(trained: Trained, u: torch.Tensor) -> float:
    with torch.no_grad():
        pred = trained.forward(u).argmax(1) == 1
    truth = trained.y == 1
    return (2 * (pred & truth).sum() / (pred.sum() + truth.sum())).item()


def test_every_registered_attack_is_tested() -> None:
    assert set(ATTACKS.names()) == set(NORMS)


@pytest.mark.parametrize("name", sorted(NORMS))
def test_attack_lowers_classifier_accuracy(classifier: Trained, name: str) -> None:
    clean = _accuracy(classifier, classifier.u)
    adv = _attack(classifier, name, margin_loss if name == "square" else per_sample_ce)
    assert clean == 1.0
    assert _accuracy(classifier, adv) < clean - 0.25


@pytest.mark.parametrize("name", sorted(set(NORMS) - {"deepfool"}))
def test_attack_lowers_segmenter_dice(segmenter: Trained, name: str) -> None:
    clean = _dice(segmenter, segmenter.u)
    # cw-l2 counts a segmentation as fooled at half its pixels, which takes an L2 norm of ~1.5 here
    adv = _attack(segmenter, name, **({"eps": None} if name == "cw-l2" else {}))
    assert clean > 0.95
    assert _dice(segmenter, adv) < clean - 0.02


def test_deepfool_refuses_a_segmenter(segmenter: Trained) -> None:
    with pytest.raises(ConfigError, match="deepfool attacks classifiers only.*use pgd or cw-l2"):
        ATTACKS.get("deepfool")(segmenter.forward, per_sample_ce, segmenter.u, segmenter.y)


def test_pgd_restarts_never_do_worse_than_one(classifier: Trained) -> None:
    def losses(restarts: int) -> torch.Tensor:
        adv = _attack(classifier, "pgd", eps=6 / 255, steps=5, restarts=restarts)
        with torch.no_grad():
            return per_sample_ce(classifier.forward(adv), classifier.y)

    single, three = losses(1), losses(3)
    assert (three >= single - 1e-6).all()
    assert (three > single + 1e-4).any()


def test_l2_pgd_stays_in_the_l2_ball_and_uses_it(classifier: Trained) -> None:
    adv = _attack(classifier, "pgd-l2", eps=0.3)
    norms = _norms(adv - classifier.u, "l2")
    assert norms.max() <= 0.3 + 1e-5
    assert (norms > 0.27).float().mean() > 0.5  # an L-inf step would overshoot the ball; this uses it
    assert _norms(adv - classifier.u, "linf").max() > 12 / 255  # not an L-inf attack in disguise


def _smallest_fgsm_flip(trained: Trained) -> torch.Tensor:
    """Per sample, the L2 norm of the FGSM perturbation of the smallest eps (k/255) that flips it."""
    needed = torch.full((len(trained.y),), float("inf"))
    for k in range(32, 0, -1):
        adv = ATTACKS.get("fgsm")(trained.forward, per_sample_ce, trained.u, trained.y, eps=k / 255)
        with torch.no_grad():
            flipped = trained.forward(adv).argmax(1) != trained.y
        needed[flipped] = _norms(adv - trained.u, "l2")[flipped]
    return needed


def test_cw_finds_smaller_l2_perturbations_than_fgsm(classifier: Trained) -> None:
    adv = _attack(classifier, "cw-l2", eps=None)
    with torch.no_grad():
        flipped = classifier.forward(adv).argmax(1) != classifier.y
    fgsm = _smallest_fgsm_flip(classifier)
    both = flipped & fgsm.isfinite()
    assert flipped.float().mean() > 0.9 and both.sum() > 10
    assert _norms(adv - classifier.u, "l2")[both].median() < 0.8 * fgsm[both].median()


def test_cw_eps_bounds_the_result(classifier: Trained) -> None:
    adv = _attack(classifier, "cw-l2", eps=0.1)
    assert _norms(adv - classifier.u, "l2").max() <= 0.1 + 1e-5


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_flips_labels_with_small_perturbations(classifier: Trained, norm: str) -> None:
    adv = _attack(classifier, "deepfool", eps=None, norm=norm)
    with torch.no_grad():
        flipped = classifier.forward(adv).argmax(1) != classifier.y
    assert flipped.float().mean() > 0.9
    if norm == "l2":
        fgsm = _smallest_fgsm_flip(classifier)
        both = flipped & fgsm.isfinite()
        assert _norms(adv - classifier.u, "l2")[both].median() < 0.8 * fgsm[both].median()
    else:
        assert _norms(adv - classifier.u, "linf").median() < 12 / 255


def test_square_is_black_box_and_respects_its_query_budget(classifier: Trained) -> None:
    queried = []

    def no_gradients(u: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            raise AssertionError("the square attack asked for a gradient")
        queried.append(len(u))
        return classifier.forward(u)

    adv = ATTACKS.get("square")(
        no_gradients, margin_loss, classifier.u, classifier.y, eps=12 / 255, n_queries=300, p_init=0.8
    )
    assert _accuracy(classifier, adv) < 0.75
    assert len(queried) <= 300
    assert sum(queried) < 300 * len(classifier.y)  # fooled samples stop being queried
    assert (adv - classifier.u).abs().max() <= 12 / 255 + 1e-6


def test_universal_perturbation_transfers_to_held_out_images(classifier: Trained) -> None:
    u_fit, y_fit = class_images(64, torch.Generator().manual_seed(5))
    delta = fit_universal(
        classifier.forward,
        per_sample_ce,
        u_fit,
        y_fit,
        eps=12 / 255,
        generator=torch.Generator().manual_seed(0),
    )
    assert delta.shape == (1, 1, 16, 16) and delta.abs().max() <= 12 / 255 + 1e-7
    assert _accuracy(classifier, apply_universal(classifier.u, delta)) < 0.75
    with pytest.raises(ConfigError, match="does not fit inputs of shape"):
        apply_universal(classifier.u, delta[..., :8])


def test_margin_loss_known_answers() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    assert torch.equal(margin_loss(logits, torch.tensor([0, 2])), torch.tensor([-1.0, 2.0]))
    single = torch.tensor([[3.0], [-1.0]])  # one logit: class 1 against 0
    assert torch.equal(margin_loss(single, torch.tensor([1, 1])), torch.tensor([-3.0, 1.0]))
    seg = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])  # (1, 2 classes, 1, 2)
    assert torch.equal(class_margin(seg, torch.tensor([[[0, 0]]])), torch.tensor([[[1.0, -2.0]]]))
    assert torch.equal(margin_loss(seg, torch.tensor([[[[0, 0]]]])), torch.tensor([0.5]))
    with pytest.raises(ConfigError, match="expected labels of shape \\(1, 1, 2\\)"):
        margin_loss(seg, torch.tensor([0]))
