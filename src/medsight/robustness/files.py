"""`medsight attack`: adversarial versions of image files, written in the input's own format.

Each image is attacked on the network's grid (the task's :class:`~medsight.robustness.adapter.FileAttacker`
chooses it: a classifier's input size, a segmenter's resampled grid ...) against the model's own answer
on the clean image (no labels needed). The perturbation is then mapped
back to the file's grid, added to the stored intensities and clipped to their valid range (0..255 for
8-bit pictures, the image's own min..max otherwise); 8-bit outputs are rounded. ``attack.csv`` lists,
per file, the model's answer before and after, read back from the written file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from medsight.errors import ConfigError
from medsight.io import Image, read_image, write_image
from medsight.robustness.adapter import FileAttacker
from medsight.robustness.attacks import ATTACKS
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
    attacker = file_attacker(run)
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


def file_attacker(run: Run) -> FileAttacker:
    """The run's task's file attacker, through the registry."""
    from medsight.task_registry import get_task

    return get_task(run.config.task).file_attacker(run)


def _input_files(source: Path) -> list[Path]:
    from medsight.errors import DataError
    from medsight.io.readers import is_image_file

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
