"""An enhancer as ``medsight robustness`` and ``medsight attack`` see it: adversarial perturbations of the
degraded input that increase the L1 error of the enhanced slice (score: PSNR and SSIM of the outputs).
"""

from __future__ import annotations

import numpy as np
import torch

from medsight.errors import DataError
from medsight.io import Image
from medsight.robustness.adapter import Batch, unit_perturbation
from medsight.robustness.attacks.base import Attack
from medsight.robustness.space import InputSpace
from medsight.runs import Run

BATCH = 8  # slices per attacked batch


class EnhancerAdapter:
    """An enhancement run's split as normalised slices, ready to be attacked (an ``AttackAdapter``)."""

    metric = "ssim"
    supports_detectors = False
    supports_universal = False
    supports_smoothing = False

    def __init__(self, run: Run, split: str, max_cases: int | None = None) -> None:
        from medsight.tasks.enhance.pipeline import (
            cases_of_split,
            fitted_samples,
            load_model,
            to_batch,
        )

        self.run = run
        self.task, self.model = load_model(run, device="cpu")
        self.space = InputSpace(run.plan.normalization)
        self.class_names = list(run.plan.class_names)
        samples, ids = [], []
        for case in cases_of_split(run, split)[:max_cases]:
            mine = fitted_samples(case, run.plan)
            samples += mine
            ids += [f"{case.case_id}#{i}" for i in range(len(mine))]
        self.batches = []
        for i in range(0, len(samples), BATCH):
            b = to_batch(samples[i : i + BATCH], run.plan)
            self.batches.append(Batch(b["image"], b["target"], ids[i : i + BATCH]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.task.per_sample_loss(outputs, y)

    def score(self, outputs: list[torch.Tensor], batches: list[Batch]) -> dict[str, float]:
        from medsight.metrics.enhancement import psnr, ssim

        out = torch.cat(outputs)[:, 0].detach().float().numpy()
        ref = torch.cat([b.y for b in batches])[:, 0].numpy()
        return {
            "ssim": float(np.mean([ssim(o, r) for o, r in zip(out, ref, strict=True)])),
            "psnr": float(np.mean([min(psnr(o, r), 100.0) for o, r in zip(out, ref, strict=True)])),
        }

    def describe(self, outputs: torch.Tensor, y: torch.Tensor) -> str:
        from medsight.metrics.enhancement import ssim

        return f"SSIM {ssim(outputs[0, 0].detach().float().numpy(), y[0, 0].numpy()):.3f}"


class EnhancerFiles:
    """Attacks 2D image files of an image-domain enhancement run (a ``FileAttacker``): the answer is the
    L1 change of the enhanced image from the enhanced clean input."""

    def __init__(self, run: Run) -> None:
        from medsight.tasks.enhance.pipeline import load_model

        self.run = run
        self.task, self.model = load_model(run, device="cpu")
        self.space = InputSpace(run.plan.normalization)

    def _input(self, image: Image) -> torch.Tensor:
        from medsight.tasks.enhance.data import image_stack
        from medsight.tasks.enhance.slices import fit_plane, network_input

        if image.ndim != 2:
            raise DataError(f"attack: enhancement files are attacked as 2D images, got {image.ndim}D")
        stack = image_stack(image.array, "image")
        x, _, _ = network_input(self.run.plan, fit_plane(stack[0], self.run.plan.slice_size))
        return torch.from_numpy(x)[None]

    def answer(self, image: Image) -> str:
        with torch.inference_mode():
            out = self.model(self._input(image))
        return f"mean output {float(out[:, 0].mean()):.4f} (normalised)"

    def perturbation(
        self, image: Image, attack_fn: Attack, eps: float, steps: int, generator: torch.Generator
    ) -> tuple[str, np.ndarray]:
        from medsight.tasks.enhance.slices import fit_plane

        x = self._input(image)
        with torch.inference_mode():
            own = self.model(x)[:, :1].float().clone()  # the clean answer: the attack moves away from it
        delta = unit_perturbation(
            self.space,
            self.model,
            self.task.per_sample_loss,
            x,
            own,
            attack_fn,
            eps=eps,
            steps=steps,
            generator=generator,
        )
        back = fit_plane(delta.numpy().astype(np.float32), list(image.shape), fill=0.0)
        return self.answer(image), back


def attack_adapter(run: Run, split: str, max_cases: int | None = None) -> EnhancerAdapter:
    return EnhancerAdapter(run, split, max_cases)


def file_attacker(run: Run) -> EnhancerFiles:
    return EnhancerFiles(run)
