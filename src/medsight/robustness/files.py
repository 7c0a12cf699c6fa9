"""`medsight attack`: adversarial versions of image files, written in the input's own format.

Each image is attacked on the network's grid (a classifier's input size, a segmenter's resampled grid)
against the model's own answer on the clean image (no labels needed). The perturbation is then mapped
back to the file's grid, added to the stored intensities and clipped to their valid range (0..255 for
8-bit pictures, the image's own min..max otherwise); 8-bit outputs are rounded. ``attack.csv`` lists,
per file, the model's answer before and after, read back from the written file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.errors import ConfigError
from medsight.io import Image, read_image, write_image
from medsight.robustness.attacks import ATTACKS
from medsight.robustness.space import InputSpace
from medsight.runs import Run, open_run
from medsight.utils import atomic_write_text


def attack_path(
    run_dir: str | Path,
    source: str | Path,
    output: str | Path,
    *,
    attack: str = "pgd",
    eps: str | float = "2/255",
    steps: int = 20,
    seed: int = 0,
) -> list[Path]:
    """Write an adversarial copy of every image under ``source`` into the folder ``output`` (same file
    names and formats) plus ``output/attack.csv``; return the written paths. Inputs are never modified."""
    run = open_run(run_dir)
    attack_fn = ATTACKS.get(attack)
    out = Path(output)
    files = _input_files(Path(source))
    if any(out.resolve() == f.parent.resolve() for f in files):
        raise ConfigError(f"--output {out}: is the input folder; adversarial images never replace the inputs")
    attacker = _ClassifyFiles(run) if run.config.task == "classify" else _SegmentFiles(run)
    eps_unit = attacker.space.eps(eps)
    generator = torch.Generator().manual_seed(seed)
    rows, written = [], []
    for f in files:
        image = read_image(f)
        clean_answer, delta = attacker.perturbation(image, attack_fn, eps_unit, steps, generator)
        adv = _apply(image, delta, attacker.space.raw_span(image.array))
        target = out / f.name
        written.append(write_image(adv, target))
        rows.append([str(f), str(target), clean_answer, attacker.answer(read_image(target))])
    table = io.StringIO()
    csv.writer(table).writerows([["input", "output", "clean", "adversarial"], *rows])
    written.append(atomic_write_text(out / "attack.csv", table.getvalue()))
    return written


def _input_files(source: Path) -> list[Path]:
    from medsight.data.classification import is_image_file
    from medsight.errors import DataError

    if source.is_file():
        return [source]
    files = sorted(p for p in source.rglob("*") if is_image_file(p)) if source.is_dir() else []
    if not files:
        raise DataError(f"{source}: no image files found to attack")
    return files


def _apply(image: Image, delta_unit: np.ndarray, spans: np.ndarray) -> Image:
    """The stored image plus the unit-space perturbation (C, *spatial), clipped to the valid range."""
    raw = image.array.astype(np.float32)
    eight_bit = image.array.dtype == np.uint8
    low, high = (0.0, 255.0) if eight_bit else (float(raw.min()), float(raw.max()))
    view = (-1,) + (1,) * (raw.ndim - 1)
    adv = np.clip(raw + delta_unit * spans.reshape(view), low, high)
    adv = np.round(adv).astype(np.uint8) if eight_bit else adv.astype(image.array.dtype, copy=False)
    return image.with_array(adv)


def _to_grid(delta: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A (C, *grid) perturbation resized (linearly) to ``shape``."""
    from medsight.transforms.segmentation import resize

    return np.asarray(resize(delta.numpy().astype(np.float32), tuple(shape)))


class _FilesBase:
    run: Run
    space: InputSpace

    def _attack(
        self,
        x: torch.Tensor,
        forward: Any,
        loss: Any,
        target: torch.Tensor,
        attack_fn: Any,
        eps: float,
        steps: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        u, state = self.space.to_unit(x)
        u_adv = attack_fn(
            self.space.forward_fn(forward, state), loss, u, target, eps=eps, steps=steps, generator=generator
        )
        return (u_adv - u)[0].detach()


class _ClassifyFiles(_FilesBase):
    def __init__(self, run: Run) -> None:
        from medsight.tasks.classify.pipeline import load_model

        self.run = run
        self.task, self.model = load_model(run, device="cpu")
        self.space = InputSpace(run.plan.normalization)

    def _input(self, image: Image) -> torch.Tensor:
        from medsight.transforms.classification import to_input

        return to_input(image.array.astype(np.float32), self.run.plan)[None]

    def answer(self, image: Image) -> str:
        with torch.inference_mode():
            return self._describe(self.model(self._input(image)).float())

    def _describe(self, logits: torch.Tensor) -> str:
        probs = self.task.probabilities(logits)[0]
        names = self.run.plan.class_names
        if self.task.multilabel:
            return ";".join(n for n, p in zip(names, probs.tolist(), strict=True) if p > 0.5) or "-"
        return f"{names[int(probs.argmax())]} ({float(probs.max()):.3f})"

    def perturbation(self, image: Image, attack_fn: Any, eps: float, steps: int, generator: torch.Generator):
        x = self._input(image)
        with torch.inference_mode():
            logits = self.model(x).float()
        target = (logits > 0).float() if self.task.multilabel else logits.argmax(dim=1)
        delta = self._attack(
            x, self.model, self.task.per_sample_loss, target, attack_fn, eps, steps, generator
        )
        return self._describe(logits), _to_grid(delta, image.array.shape[1:])


class _SegmentFiles(_FilesBase):
    def __init__(self, run: Run) -> None:
        from medsight.robustness.targets import segment_forward
        from medsight.tasks.segment.pipeline import load_model

        self.run = run
        self.task, self.model = load_model(run, device="cpu")
        self.space = InputSpace(run.plan.normalization)
        self.forward = segment_forward(self.model, run.plan)

    def answer(self, image: Image) -> str:
        from medsight.data.reading import CaseData
        from medsight.data.spec import Case

        with torch.inference_mode():
            labels = self.task.predict(
                self.model, CaseData(case=Case(case_id="x", images=()), image=image)
            ).output
        return f"{int((labels.array > 0).sum())} foreground voxels"

    def perturbation(self, image: Image, attack_fn: Any, eps: float, steps: int, generator: torch.Generator):
        from medsight.tasks.segment.sampler import training_target
        from medsight.transforms.segmentation import preprocess, restore, to_label_map

        pre = preprocess(image, None, self.run.plan)
        x = torch.from_numpy(pre.image)[None].float()
        with torch.inference_mode():
            probs = torch.sigmoid(self.forward(x)) if self.run.plan.regions else self.forward(x).softmax(1)
        plan = self.run.plan
        labels = to_label_map(probs[0].numpy(), plan.label_values, plan.regions)[None]
        target = torch.from_numpy(training_target(labels, plan))[None]
        delta = self._attack(
            x, self.forward, self.task.per_sample_loss, target, attack_fn, eps, steps, generator
        )
        return self.answer(image), restore(delta.numpy(), pre, background=0.0)
