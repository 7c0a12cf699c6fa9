"""A classifier as ``medsight robustness`` and ``medsight attack`` see it (the contract's attack adapters).

Inputs are attacked on the plan's input grid (every case the same size, so detectors and universal
perturbations apply), without flip TTA: clean and attacked scores are of the same network without it.
The file attacker resizes the perturbation back to the file's own grid.
"""

from __future__ import annotations

import numpy as np
import torch

from medsight.io import Image
from medsight.robustness.adapter import Batch, unit_perturbation
from medsight.robustness.attacks.base import Attack
from medsight.robustness.space import InputSpace
from medsight.runs import Run
from medsight.tasks.classify.task import ClassifyTask

BATCH = 128  # cases per attacked batch


class ClassifierAdapter:
    """A classification run's split, ready to be attacked (a robustness ``AttackAdapter``)."""

    metric = "accuracy"
    supports_detectors = True
    supports_universal = True

    def __init__(self, run: Run, split: str, max_cases: int | None = None) -> None:
        from medsight.tasks.classify.pipeline import load_model

        self.run = run
        self.task, self.model = load_model(run, device="cpu")
        self.space = InputSpace(run.plan.normalization)
        self.class_names = list(run.plan.class_names)
        self.batches = _batches(run, self.task, split, max_cases)

    @property
    def supports_smoothing(self) -> bool:
        return not self.task.multilabel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.task.per_sample_loss(logits, y)

    def score(self, outputs: list[torch.Tensor], batches: list[Batch]) -> dict[str, float]:
        """Accuracy and macro AUC, with the run's thresholds (as ``medsight evaluate`` scores)."""
        from medsight.metrics.classification import point_metrics

        plan = self.run.plan
        probs = self.task.probabilities(torch.cat(outputs).float()).numpy()
        labels = torch.cat([b.y for b in batches]).numpy()
        metrics = point_metrics(labels, probs, plan.problem, plan.class_names, plan.thresholds)["all"]
        return {"accuracy": float(metrics["accuracy"]), "auc": float(metrics["auc_macro"])}

    def describe(self, logits: torch.Tensor, y: torch.Tensor) -> str:
        """``"pneumonia (0.93); truth normal"``, or every label's probability for multi-label problems."""
        probs = self.task.probabilities(logits.float())[0]
        names = self.class_names
        if self.task.multilabel:
            return ", ".join(f"{n} {p:.2f}" for n, p in zip(names, probs.tolist(), strict=True))
        k = int(probs.argmax())
        return f"{names[k]} ({float(probs[k]):.2f}); truth {names[int(y[0])]}"


class ClassifierFiles:
    """Attacks image files of a classification run (a robustness ``FileAttacker``)."""

    def __init__(self, run: Run) -> None:
        from medsight.tasks.classify.pipeline import load_model

        self.run = run
        self.task, self.model = load_model(run, device="cpu")
        self.space = InputSpace(run.plan.normalization)

    def answer(self, image: Image) -> str:
        with torch.inference_mode():
            return self._answer(self.model(self.network_input(image)).float())

    def perturbation(
        self, image: Image, attack_fn: Attack, eps: float, steps: int, generator: torch.Generator
    ) -> tuple[str, np.ndarray]:
        x = self.network_input(image)
        with torch.inference_mode():
            logits = self.model(x).float()
        own = (logits > 0).float() if self.task.multilabel else logits.argmax(dim=1)  # the model's answer
        loss = self.task.per_sample_loss
        delta = unit_perturbation(
            self.space, self.model, loss, x, own, attack_fn, eps=eps, steps=steps, generator=generator
        )
        return self._answer(logits), _resized(delta, image.array.shape[1:])

    def network_input(self, image: Image) -> torch.Tensor:
        """The image resized and normalised as the network takes it, (1, C, *plan size)."""
        from medsight.transforms.classification import to_input

        return to_input(image.array.astype(np.float32), self.run.plan)[None]

    def _answer(self, logits: torch.Tensor) -> str:
        probs = self.task.probabilities(logits)[0]
        names = self.run.plan.class_names
        if self.task.multilabel:
            return ";".join(n for n, p in zip(names, probs.tolist(), strict=True) if p > 0.5) or "-"
        return f"{names[int(probs.argmax())]} ({float(probs.max()):.3f})"


def attack_adapter(run: Run, split: str, max_cases: int | None = None) -> ClassifierAdapter:
    """The run's model and the first ``max_cases`` cases of ``split``, ready to be attacked."""
    return ClassifierAdapter(run, split, max_cases)


def file_attacker(run: Run) -> ClassifierFiles:
    """How ``medsight attack`` attacks image files of this classification run."""
    return ClassifierFiles(run)


def _batches(run: Run, task: ClassifyTask, split: str, max_cases: int | None) -> list[Batch]:
    """The split's first ``max_cases`` cases as normalised batches of at most BATCH cases."""
    from medsight.tasks.classify.pipeline import label_tensor, samples_of_split, stack_inputs

    samples = samples_of_split(run, split)[:max_cases]
    x, y = stack_inputs(samples, run.plan), label_tensor(samples, task.multilabel)
    return [
        Batch(x[i : i + BATCH].float(), y[i : i + BATCH], [s.case_id for s in samples[i : i + BATCH]])
        for i in range(0, len(samples), BATCH)
    ]


def _resized(delta: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A (C, *grid) perturbation resized (linearly) to the file's grid ``shape``."""
    from medsight.transforms.segmentation import resize

    return np.asarray(resize(delta.numpy().astype(np.float32), tuple(shape)))
