"""Synthesis end to end: data -> pictures in memory ([0, 1], the plan's size) -> the evaluation encoder on
the real training pictures -> the generator (and discriminator) with the engine -> validation ->
evaluation (FID / KID / precision / recall / memorisation / TSTR, or PSNR / SSIM / MAE beside identity +
histogram matching for translation) -> figures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch

from medsight.data.spec import Case
from medsight.errors import ConfigError, DataError
from medsight.runs import Run
from medsight.tasks.synthesize.data import SynthesisData, load_synthesis_data
from medsight.tasks.synthesize.encoder import load_encoder, save_encoder, train_encoder
from medsight.tasks.synthesize.outputs import picture
from medsight.tasks.synthesize.planning import SynthesisPlan
from medsight.tasks.synthesize.task import SynthesisTask

log = logging.getLogger(__name__)
VAL_BATCH = 256
ENCODER_FILE = "encoder.pt"


def load_run_data(run: Run) -> SynthesisData:
    return load_synthesis_data(run.config.data.dataset)


def split_cases(run: Run, data: SynthesisData) -> tuple[list[Case], list[Case]]:
    """(training, validation) cases: the dataset's own validation split, else the run's fold."""
    from medsight.runs import fold_ids

    if data.splits.get("val"):
        return data.train, data.splits["val"]
    train_ids, val_ids = fold_ids(run, data.train)
    by_id = {c.case_id: c for c in data.train}
    return [by_id[i] for i in train_ids], [by_id[i] for i in val_ids]


def cases_of_split(run: Run, split: str) -> list[Case]:
    data = load_run_data(run)
    if split == "val":
        cases = split_cases(run, data)[1]
    elif split in ("test", "train"):
        cases = data.splits.get(split, [])
    else:
        raise ConfigError(f"--split: expected val, test or train, got {split!r}")
    if not cases:
        raise DataError(f"{data.name}: split {split!r} has no cases")
    return cases


def stack(cases: list[Case], plan: SynthesisPlan) -> dict[str, torch.Tensor]:
    """Cases as tensors: ``image`` (the source channel for translation), ``label`` (with classes);
    translation adds ``target`` and the brain ``mask``."""
    from medsight.transforms.segmentation import resize

    size = tuple(plan.input_size)
    if plan.kind == "paired":
        arrays = [c.read() for c in cases]
        src = np.stack([resize(a[plan.source_index : plan.source_index + 1], size) for a in arrays])
        tgt = np.stack([resize(a[plan.target_index : plan.target_index + 1], size) for a in arrays])
        masks = np.stack(
            [resize(c.extra["mask"][None].astype(np.int16), size, labels=True) > 0 for c in cases]
        )
        return {
            "image": torch.from_numpy(np.clip(src, 0, 1).astype(np.float32)),
            "target": torch.from_numpy(np.clip(tgt, 0, 1).astype(np.float32)),
            "mask": torch.from_numpy(masks.astype(np.float32)),
        }
    out = torch.empty((len(cases), plan.in_channels, *size), dtype=torch.float32)
    for i, case in enumerate(cases):
        try:
            out[i] = torch.from_numpy(picture(case.read(), plan))
        except DataError as exc:
            raise DataError(f"case {case.case_id}: {exc}") from exc
    result = {"image": out}
    if plan.class_names:
        result["label"] = torch.tensor([int(c.classes) for c in cases], dtype=torch.long)
    return result


def real_pictures(tensors: dict[str, torch.Tensor], plan: SynthesisPlan) -> torch.Tensor:
    """What the model makes, among the stacked tensors: the pictures, or the target contrast."""
    return tensors["target"] if plan.kind == "paired" else tensors["image"]


class Batches:
    """Shuffled passes over in-memory tensors (one pass per iteration of the stream)."""

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, seed: int) -> None:
        self.tensors, self.batch_size = tensors, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        n = len(self.tensors["image"])
        order = torch.randperm(n, generator=self.generator)
        batch = min(self.batch_size, n)
        for start in range(0, n - batch + 1, batch):
            idx = order[start : start + batch]
            yield {k: v[idx] for k, v in self.tensors.items()}


def batches(tensors: dict[str, torch.Tensor], size: int = VAL_BATCH) -> list[dict[str, torch.Tensor]]:
    n = len(tensors["image"])
    return [{k: v[i : i + size] for k, v in tensors.items()} for i in range(0, n, size)]


def train_synthesis(run: Run, evaluate: bool = True) -> None:
    """Train the evaluation encoder, then the run's model; then (``evaluate``) score the validation split."""
    from medsight.engine import Trainer

    data = load_run_data(run)
    train, val = split_cases(run, data)
    plan, config = run.plan, run.config.train
    x = stack(train, plan)
    x_val = stack(val, plan) if val else None
    encoder = None
    if plan.kind != "paired":  # translation is scored against its references, without an encoder
        log.info("evaluation encoder: %d steps on %d training pictures", plan.encoder_steps, len(train))
        encoder = train_encoder(real_pictures(x, plan), plan.encoder_steps, config.seed)
        save_encoder(encoder, run.path / ENCODER_FILE)
    task = SynthesisTask(plan, config, encoder)
    trainer = Trainer(task, config, run.path)
    model = task.build_model()  # built after the trainer has seeded everything
    trainer.fit(
        model, Batches(x, plan.batch_size, config.seed), batches(x_val) if x_val is not None else None
    )
    if val and evaluate:
        from medsight.tasks.synthesize.evaluation import evaluate_cases

        evaluate_cases(run, val, "val").write(run.eval_dir("val"))


def load_model(run: Run, device: str = "auto") -> torch.nn.Module:
    from medsight.engine import load_model_weights, resolve_device

    model = SynthesisTask(run.plan, run.config.train).build_model()
    load_model_weights(model, run.checkpoint)
    return model.to(resolve_device(device)).eval()


def run_encoder(run: Run) -> torch.nn.Module:
    return load_encoder(run.path / ENCODER_FILE, run.plan.image_channels, run.plan.dim)


__all__ = ["Batches", "load_model", "stack", "train_synthesis"]
