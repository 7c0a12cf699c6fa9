"""robustness/ is generic over the task contract: a family it has never heard of, registered in TASKS with
an AttackAdapter, is attacked by `evaluate_robustness` with no edit there; capabilities, not task names,
decide what applies; defences wrap any adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from robustness_testutils import NORM, per_sample_ce, synthetic_batch, trained_tiny_classifier
from torch import nn

from medsight.config import RunConfig
from medsight.errors import ConfigError
from medsight.planning.plan import ChannelNorm, PlanBase
from medsight.robustness.adapter import AttackAdapter, Batch
from medsight.robustness.defences import with_defences
from medsight.robustness.evaluate import evaluate_robustness
from medsight.robustness.space import InputSpace
from medsight.task_registry import load_families

SPLITS = {"test": (24, 7), "val": (96, 8)}  # cases and seed of each split of the toy family


class ToyAdapter:
    """The tiny classifier of robustness_testutils on noisy squares, as a family would provide it."""

    metric = "accuracy"
    class_names = ["dark", "bright"]

    def __init__(self, split: str, capable: bool, norms: list[ChannelNorm] | None = None) -> None:
        n, seed = SPLITS[split]
        u, y = synthetic_batch(n, seed)
        self.model: nn.Module = trained_tiny_classifier()
        self.space = InputSpace(norms or [NORM])
        self.batches = [Batch((u - NORM.mean) / NORM.std, y, [f"{split}_{i}" for i in range(n)])]
        self.supports_detectors = self.supports_universal = self.supports_smoothing = capable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * NORM.std + NORM.mean)  # the tiny net reads unit images

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return per_sample_ce(logits, y)

    def score(self, outputs: list[torch.Tensor], batches: list[Batch]) -> dict[str, float]:
        right = torch.cat([o.argmax(1) == b.y for o, b in zip(outputs, batches, strict=True)])
        return {"accuracy": float(right.float().mean())}

    def describe(self, logits: torch.Tensor, y: torch.Tensor) -> str:
        return f"{self.class_names[int(logits.argmax())]}; truth {self.class_names[int(y[0])]}"


class ToyFamily:
    """Just what the robustness verb asks of a Task: its plan type (to open the run) and attack_adapter."""

    plan_type = PlanBase

    def __init__(self, name: str, capable: bool) -> None:
        self.name, self.capable = name, capable

    def attack_adapter(self, run: object, split: str, max_cases: int | None = None) -> ToyAdapter:
        return ToyAdapter(split, self.capable)


@pytest.fixture()
def toy_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """A run folder of a family registered for this test only (``capable``: every capability, or none)."""
    capable: bool = request.param
    name = "toy" if capable else "toy-plain"
    monkeypatch.setitem(load_families()._items, name, ToyFamily(name, capable))
    names, norms = ToyAdapter.class_names, [NORM]
    plan = PlanBase(
        task=name, dim=2, in_channels=1, class_names=names, normalization=norms, network="tiny", batch_size=32
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(RunConfig(task=name).to_yaml())
    plan.save(run / "plan.json")
    return run


@pytest.mark.parametrize("toy_run", [True], indirect=True)
def test_a_new_family_is_attacked_through_its_adapter_alone(toy_run: Path, tmp_path: Path) -> None:
    report = evaluate_robustness(
        toy_run,
        attacks=["pgd", "universal"],
        eps=["12/255"],
        steps=10,
        out=tmp_path / "rob",
        smoothing_sigma="16/255",
        smoothing_n=40,
    )
    assert report["task"] == "toy" and report["metric"] == "accuracy" and report["cases"] == 24
    clean = report["clean"]["accuracy"]
    pgd, universal = report["results"]
    assert clean >= 0.9 and pgd["metrics"]["accuracy"] < clean - 0.5
    assert universal["attack"] == "universal" and universal["metrics"]["accuracy"] < clean
    assert universal["metrics"]["accuracy"] >= pgd["metrics"]["accuracy"]  # one delta for all: weaker
    assert pgd["detectors"]["mahalanobis"] > 0.7  # fitted on the family's validation split
    assert report["smoothing"]["certified_accuracy"]["0.0"] > 0.5
    assert (tmp_path / "rob/examples/pgd.png").is_file() and (tmp_path / "rob/report.html").is_file()


@pytest.mark.parametrize("toy_run", [False], indirect=True)
def test_capabilities_decide_what_applies(toy_run: Path, tmp_path: Path) -> None:
    report = evaluate_robustness(toy_run, attacks=["fgsm"], eps=["12/255"], out=tmp_path / "rob")
    assert report["task"] == "toy-plain" and "detectors" not in report["results"][0]  # none asked of it
    with pytest.raises(ConfigError, match="attack 'universal': needs inputs of one size.*'toy-plain'"):
        evaluate_robustness(toy_run, attacks=["universal"], eps=["12/255"], out=tmp_path / "bad")
    with pytest.raises(ConfigError, match="smoothing: certifies single-label classifiers only"):
        evaluate_robustness(toy_run, attacks=["fgsm"], smoothing_sigma="0.1", out=tmp_path / "bad")


def test_defences_change_only_the_forward_of_any_adapter() -> None:
    adapter = ToyAdapter("test", capable=True)
    defended = with_defences(adapter, ["bit-depth:bits=1"])
    assert isinstance(adapter, AttackAdapter) and isinstance(defended, AttackAdapter)
    assert defended.batches is adapter.batches and defended.model is adapter.model
    assert defended.space is adapter.space and defended.supports_universal
    x = adapter.batches[0].x
    with torch.no_grad():
        plain, through = adapter.forward(x), defended.forward(x)
        squeezed = adapter.forward((x * NORM.std + NORM.mean).round().sub(NORM.mean).div(NORM.std))
    assert not torch.allclose(plain, through) and torch.allclose(through, squeezed, atol=1e-5)
    assert defended.score([through], adapter.batches) == adapter.score([through], adapter.batches)


def test_defences_need_a_stateless_normalisation() -> None:
    masked = ToyAdapter("test", capable=True, norms=[ChannelNorm(scheme="zscore", use_mask=True)])
    with pytest.raises(ConfigError, match=r"defences: need an input normalisation without per-image state"):
        with_defences(masked, ["median"])
