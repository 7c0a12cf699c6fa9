"""An anomaly model as ``medsight robustness`` and ``medsight attack`` see it (the contract's attack
adapters).

The model's output is the :class:`~medsight.tasks.anomaly.scoring.Scorer` row (column 0: the image
score). The attack's per-sample loss is the score signed by the truth: an anomalous image's attack
lowers its score (the anomaly hides), a normal image's raises it (a false alarm). The headline metric
is the image AUROC.
"""

from __future__ import annotations

import numpy as np
import torch

from medsight.io import Image
from medsight.robustness.adapter import Batch, unit_perturbation
from medsight.robustness.attacks.base import Attack
from medsight.robustness.space import InputSpace
from medsight.runs import Run

BATCH = 128


def signed_score(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """What an attack increases: ``score`` for normal cases (y = 0), ``-score`` for anomalous ones."""
    return outputs[:, 0] * (1.0 - 2.0 * y.float())


class AnomalyAdapter:
    """An anomaly run's split, ready to be attacked (a robustness ``AttackAdapter``)."""

    metric = "auroc"
    supports_detectors = False
    supports_universal = True
    supports_smoothing = False

    def __init__(self, run: Run, split: str, max_cases: int | None = None) -> None:
        from medsight.tasks.anomaly.pipeline import anomalous_labels, cases_of_split, load_model
        from medsight.tasks.anomaly.scoring import Scorer
        from medsight.tasks.anomaly.task import stack_inputs

        self.run = run
        task, model = load_model(run, device="cpu")
        self.model = Scorer(model, run.plan).eval()
        self.space = InputSpace(run.plan.normalization)
        self.class_names = ["normal", "anomalous"]
        cases = cases_of_split(run, split)[:max_cases]
        x, y = stack_inputs(cases, run.plan), anomalous_labels(cases, run.plan)
        ids = [c.case_id for c in cases]
        self.batches = [
            Batch(x[i : i + BATCH], y[i : i + BATCH], ids[i : i + BATCH]) for i in range(0, len(ids), BATCH)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return signed_score(outputs, y)

    def score(self, outputs: list[torch.Tensor], batches: list[Batch]) -> dict[str, float]:
        from medsight.metrics.anomaly import image_auroc

        scores = torch.cat([o[:, 0] for o in outputs]).float().detach().numpy()
        y = torch.cat([b.y for b in batches]).numpy()
        result = {"auroc": image_auroc(y, scores)}
        if self.run.plan.threshold is not None:
            result["accuracy"] = float(((scores > self.run.plan.threshold) == (y == 1)).mean())
        return result

    def describe(self, outputs: torch.Tensor, y: torch.Tensor) -> str:
        truth = "anomalous" if int(y[0]) else "normal"
        return f"score {float(outputs[0, 0]):.4g}; truth {truth}"


class AnomalyFiles:
    """Attacks image files of an anomaly run (a robustness ``FileAttacker``): against the model's own
    decision (an image it calls anomalous is pushed towards normal, and the other way round)."""

    def __init__(self, run: Run) -> None:
        from medsight.tasks.anomaly.pipeline import load_model
        from medsight.tasks.anomaly.scoring import Scorer

        self.run = run
        _, model = load_model(run, device="cpu")
        self.model = Scorer(model, run.plan).eval()
        self.space = InputSpace(run.plan.normalization)

    def network_input(self, image: Image) -> torch.Tensor:
        """The image resized and normalised as the network takes it, (1, C, *plan size)."""
        from medsight.tasks.anomaly.outputs import input_array

        return torch.from_numpy(input_array(image.array.astype(np.float32), self.run.plan))[None]

    def _answer(self, outputs: torch.Tensor) -> str:
        score, threshold = float(outputs[0, 0]), self.run.plan.threshold
        verdict = "" if threshold is None else (" anomalous" if score > threshold else " normal")
        return f"score {score:.4g}{verdict}"

    def answer(self, image: Image) -> str:
        with torch.inference_mode():
            return self._answer(self.model(self.network_input(image)))

    def perturbation(
        self, image: Image, attack_fn: Attack, eps: float, steps: int, generator: torch.Generator
    ) -> tuple[str, np.ndarray]:
        from medsight.transforms.segmentation import resize

        x = self.network_input(image)
        with torch.inference_mode():
            outputs = self.model(x)
        threshold = self.run.plan.threshold
        own = torch.tensor([float(threshold is not None and float(outputs[0, 0]) > threshold)])
        delta = unit_perturbation(
            self.space, self.model, signed_score, x, own, attack_fn, eps=eps, steps=steps, generator=generator
        )
        return self._answer(outputs), np.asarray(resize(delta.numpy().astype(np.float32), tuple(image.shape)))


def attack_adapter(run: Run, split: str, max_cases: int | None = None) -> AnomalyAdapter:
    """The run's model and the first ``max_cases`` cases of ``split``, ready to be attacked."""
    return AnomalyAdapter(run, split, max_cases)


def file_attacker(run: Run) -> AnomalyFiles:
    """How ``medsight attack`` attacks image files of this anomaly run."""
    return AnomalyFiles(run)
