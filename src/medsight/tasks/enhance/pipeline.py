"""Enhancement end to end: data -> slices once -> degraded on the fly (seeded) -> train -> baselines tuned
on validation -> evaluate ours beside every classical method (per case, CIs over subjects) -> panels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from medsight.data.degradations import ifft2c
from medsight.errors import ConfigError, DataError
from medsight.metrics.table import MetricTable
from medsight.runs import Run
from medsight.tasks.contract import EvaluateRequest
from medsight.tasks.enhance.baselines import methods, tune
from medsight.tasks.enhance.data import (
    EnhanceCase,
    EnhanceData,
    case_seed,
    load_enhance_data,
    read_kspace,
    read_slices,
    read_volume,
)
from medsight.tasks.enhance.planning import EnhancePlan
from medsight.tasks.enhance.slices import (
    Network,
    Sample,
    degrade_slice,
    enhance_slice,
    fit_plane,
    fit_sample,
    network_input,
)
from medsight.tasks.enhance.task import EnhanceTask

log = logging.getLogger(__name__)
MAX_VAL_SLICES = 48
TUNE_SLICES = 4


@dataclass
class CaseSlices:
    """The slices of one case used for training or evaluation, at the plan's slice size.

    ``clean``: the clean slices (complex for raw k-space); ``degraded``: a pair's degraded slices;
    ``pixel_mm``: their in-plane pixel size (None for k-space files, which carry none)."""

    case: EnhanceCase
    clean: np.ndarray
    degraded: np.ndarray | None = None
    pixel_mm: float | None = None


def load_run_data(run: Run) -> EnhanceData:
    return load_enhance_data(run.config.data.dataset)


def case_slices(
    case: EnhanceCase, plan: EnhancePlan, count: int | None = None, *, fit: bool = True
) -> CaseSlices:
    """Read a case and keep up to ``count`` (default ``plan.slices_per_case``) slices with enough body,
    centred in the plan's slice size (``fit``: for training batches), or at their own size (evaluation)."""
    from medsight.tasks.enhance.slices import select_slices

    count = plan.slices_per_case if count is None else count
    size = plan.slice_size

    def fitted(x: np.ndarray, fill: float | None = None) -> np.ndarray:
        return fit_plane(x, size, fill) if fit else x

    if case.kspace is not None:
        k, _ = read_kspace(case.kspace)
        clean = ifft2c(k)
        picks = select_slices(np.abs(clean), count, plan.min_foreground)
        return CaseSlices(case, fitted(clean[picks], 0.0))
    if case.target is not None:
        degraded, clean = read_volume(case, "image"), read_volume(case, "target")
        if degraded.shape != clean.shape:
            raise DataError(f"{case.image}: shape {degraded.shape} does not match its target {clean.shape}")
        picks = select_slices(clean, count, plan.min_foreground)
        fill = float(clean.min())
        return CaseSlices(case, fitted(clean[picks], fill), fitted(degraded[picks], fill))
    clean, pixel_mm = read_slices(case)
    picks = select_slices(clean, count, plan.min_foreground)
    return CaseSlices(case, fitted(clean[picks]), pixel_mm=pixel_mm)


def case_samples(cs: CaseSlices, plan: EnhancePlan) -> list[Sample]:
    """The case's degraded slices, the same every time (the degradation seeded by the case id)."""
    if cs.degraded is not None:
        return [Sample(d, c) for d, c in zip(cs.degraded, cs.clean, strict=True)]
    rng = np.random.default_rng(case_seed(plan.degradation_seed, cs.case.case_id))
    try:
        return [degrade_slice(s, plan, rng, cs.pixel_mm) for s in cs.clean]
    except DataError as exc:
        raise DataError(f"{_source(cs.case)}: {exc}") from exc


def training_slices(case: EnhanceCase, plan: EnhancePlan) -> CaseSlices:
    """A training case's slices: at the plan's slice size, or whole where the plan degrades whole slices
    (:class:`TrainingBatches` crops them after the degradation)."""
    return case_slices(case, plan, fit=not plan.degrades_whole_slices)


def fitted_samples(case: EnhanceCase, plan: EnhancePlan) -> list[Sample]:
    """A case's degraded slices at the plan's slice size (validation batches, attacks): cropped before the
    degradation, or after it where the plan degrades whole slices."""
    samples = case_samples(training_slices(case, plan), plan)
    if plan.degrades_whole_slices:
        return [fit_sample(s, plan.slice_size) for s in samples]
    return samples


def _source(case: EnhanceCase) -> str:
    return str(case.image or case.kspace or case.case_id)


def to_batch(samples: list[Sample], plan: EnhancePlan) -> dict[str, torch.Tensor]:
    """Normalised network inputs and targets of samples."""
    xs, ys = [], []
    for s in samples:
        x, offset, scale = network_input(plan, s.degraded, s.kspace, s.mask)
        xs.append(x)
        ys.append(((s.reference - offset) / scale)[None].astype(np.float32))
    return {"image": torch.from_numpy(np.stack(xs)), "target": torch.from_numpy(np.stack(ys))}


class TrainingBatches:
    """Random slices, randomly flipped, freshly degraded for every batch (a bank of ``plan.bank_size``
    degraded versions per slice for slow degradations: low-dose CT); seeded by the run seed."""

    def __init__(self, cases: list[CaseSlices], plan: EnhancePlan, seed: int) -> None:
        self.plan, self.rng = plan, np.random.default_rng(seed)
        self.slices = [(cs, i) for cs in cases for i in range(len(cs.clean))]
        if not self.slices:
            raise DataError("enhance: no training slices")
        self.bank: dict[int, list[Sample]] = {}
        if plan.kind == "lowdose-ct":
            log.info("precomputing %d low-dose versions of %d slices", plan.bank_size, len(self.slices))
            for j, (cs, i) in enumerate(self.slices):
                self.bank[j] = [self._degraded(cs, cs.clean[i]) for _ in range(plan.bank_size)]

    def _degraded(self, cs: CaseSlices, clean: np.ndarray) -> Sample:
        """A clean slice of case ``cs`` freshly degraded, at the plan's slice size."""
        try:
            sample = degrade_slice(np.ascontiguousarray(clean), self.plan, self.rng, cs.pixel_mm)
        except DataError as exc:
            raise DataError(f"{_source(cs.case)}: {exc}") from exc
        return fit_sample(sample, self.plan.slice_size) if self.plan.degrades_whole_slices else sample

    def _sample(self, j: int) -> Sample:
        cs, i = self.slices[j]
        if j in self.bank:
            sample = self.bank[j][int(self.rng.integers(len(self.bank[j])))]
        elif cs.degraded is not None:
            sample = Sample(cs.degraded[i], cs.clean[i])
        else:
            clean = cs.clean[i]
            if self.plan.augment:
                clean = _flip(clean, self.rng)
            return self._degraded(cs, clean)
        if self.plan.augment:  # flip degraded and reference together
            flips = self.rng.random(2) < 0.5
            sample = Sample(_flip_axes(sample.degraded, flips), _flip_axes(sample.reference, flips))
        return sample

    def _crop(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Random ``plan.patch_size`` crops of a normalised image-domain batch (k-space stays whole)."""
        patch = self.plan.patch_size
        if patch is None or self.plan.kspace_input:
            return batch
        h, w = batch["image"].shape[-2:]
        out: dict[str, list[torch.Tensor]] = {"image": [], "target": []}
        for b in range(batch["image"].shape[0]):
            i = int(self.rng.integers(0, max(1, h - patch[0] + 1)))
            j = int(self.rng.integers(0, max(1, w - patch[1] + 1)))
            for key in out:
                out[key].append(batch[key][b, :, i : i + patch[0], j : j + patch[1]])
        return {k: torch.stack(v) for k, v in out.items()}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        batch = min(self.plan.batch_size, len(self.slices))
        while True:
            picks = self.rng.choice(len(self.slices), size=batch, replace=len(self.slices) < batch)
            yield self._crop(to_batch([self._sample(int(j)) for j in picks], self.plan))


def _flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _flip_axes(x, rng.random(2) < 0.5)


def _flip_axes(x: np.ndarray, flips: np.ndarray) -> np.ndarray:
    axes = tuple(a for a, f in zip((-2, -1), flips, strict=True) if f)
    return np.ascontiguousarray(np.flip(x, axes)) if axes else x


def split_cases(run: Run, data: EnhanceData) -> tuple[list[EnhanceCase], list[EnhanceCase]]:
    """(train, validation) cases: the dataset's own validation cases when it has them, else the run's
    subject-level fold of the training cases (``data.fold``; ``all``: no validation)."""
    from medsight.runs import fold_ids

    if data.val:
        return data.train, data.val
    train_ids, val_ids = fold_ids(run, data.train)
    by_id = {c.case_id: c for c in data.train}
    return [by_id[i] for i in train_ids], [by_id[i] for i in val_ids]


def cases_of_split(run: Run, split: str) -> list[EnhanceCase]:
    data = load_run_data(run)
    if split == "val":
        cases = split_cases(run, data)[1]
    elif split in ("test", "train"):
        cases = data.splits[split]
    else:
        raise ConfigError(f"--split: expected val, test or train, got {split!r}")
    if not cases:
        raise DataError(f"{data.name}: split {split!r} has no cases")
    return cases


def train_enhancement(run: Run, evaluate: bool = True) -> None:
    """Train the run's network; then (``evaluate``) tune the baselines and score validation."""
    from medsight.engine import Trainer
    from medsight.engine.distributed import dist_info

    data = load_run_data(run)
    train, val = split_cases(run, data)
    plan: EnhancePlan = run.plan  # type: ignore[assignment]
    log.info("reading %d training and %d validation cases", len(train), len(val))
    train_slices = [training_slices(c, plan) for c in train]
    val_samples = [s for c in val for s in fitted_samples(c, plan)][:MAX_VAL_SLICES]
    val_data = [to_batch(val_samples[i : i + 8], plan) for i in range(0, len(val_samples), 8)] or None
    task = EnhanceTask(plan, run.config.train)
    trainer = Trainer(task, run.config.train, run.path)
    seed = run.config.train.seed + 1000 * dist_info().rank
    trainer.fit(task.build_model(), TrainingBatches(train_slices, plan, seed), val_data)
    if val and evaluate:
        tune_baselines(run, val_samples[:TUNE_SLICES])
        evaluate_cases(run, val, "val").write(run.eval_dir("val"))


def tune_baselines(run: Run, samples: list[Sample]) -> None:
    """Choose the classical methods' weights on validation slices (best SSIM) and save them in plan.json."""
    from medsight.metrics.enhancement import ssim

    plan: EnhancePlan = run.plan  # type: ignore[assignment]
    chosen = tune(plan.kind, samples, ssim)
    if chosen:
        reason = f"chosen on {len(samples)} validation slices (best SSIM of a small grid)"
        run.save_plan(
            plan.model_copy(
                update={"baseline_params": chosen, "reasons": {**plan.reasons, "baseline_params": reason}}
            )
        )


def load_model(run: Run, device: str = "auto") -> tuple[EnhanceTask, torch.nn.Module]:
    from medsight.engine import load_model_weights, resolve_device

    task = EnhanceTask(run.plan, run.config.train)  # type: ignore[arg-type]
    model = task.build_model()
    load_model_weights(model, run.checkpoint)
    return task, model.to(resolve_device(device)).eval()


def torch_network(model: torch.nn.Module) -> Network:
    """The model as a numpy function on float32 batches (what :mod:`slices` runs)."""
    device = next(model.parameters()).device

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x).to(device)).float().cpu().numpy()

    return run


def evaluate_request(run: Run, request: EvaluateRequest) -> MetricTable:
    if request.input is not None or request.reference is not None:
        raise ConfigError("evaluate: --input/--reference are not used by enhance; it scores --split")
    return evaluate_cases(run, cases_of_split(run, request.split), request.split)


def evaluate_cases(run: Run, cases: list[EnhanceCase], split: str) -> MetricTable:
    """Ours and every classical method on the same degraded slices: a row per case and method, the
    summary over subjects with bootstrap CIs, seconds per slice, and best / worst panels."""
    from medsight.metrics.enhancement import image_metrics, subject_summary
    from medsight.tasks.enhance.figures import write_panels

    plan: EnhancePlan = run.plan  # type: ignore[assignment]
    _, model = load_model(run)
    net = torch_network(model)
    baselines = methods(plan.kind)
    params = dict(plan.baseline_params)
    names = ["ours", *baselines]
    rows, seconds, panels = [], dict.fromkeys(names, 0.0), []
    n_slices = 0
    for case in cases:
        samples = case_samples(case_slices(case, plan, plan.eval_slices_per_case, fit=False), plan)
        outputs: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for s in samples:
            for name in names:
                t0 = time.perf_counter()
                if name == "ours":
                    out = enhance_slice(net, plan, s.degraded, s.kspace, s.mask)
                else:
                    out = baselines[name](s, params)
                seconds[name] += time.perf_counter() - t0
                outputs[name].append(out)
        n_slices += len(samples)
        ref = np.stack([s.reference for s in samples])
        for name in names:
            metrics = image_metrics(np.stack(outputs[name]), ref)
            rows.append(
                {
                    "case_id": case.case_id,
                    "method": name,
                    "subject": case.subject,
                    "slices": len(samples),
                    **metrics,
                }
            )
        panels.append((case.case_id, samples, {n: np.stack(v) for n, v in outputs.items()}))
    ours = {r["case_id"]: r["ssim"] for r in rows if r["method"] == "ours"}
    write_panels(run.eval_dir(split) / "panels", panels, ours, plan)
    info = {
        "split": split,
        "cases": len(cases),
        "subjects": len({c.subject for c in cases}),
        "slices": n_slices,
        "degradation": plan.degradation or "user pairs",
        "simulated_kspace": plan.simulated_kspace,
        "seconds_per_slice": {n: round(seconds[n] / max(n_slices, 1), 4) for n in names},
        "baseline_params": params,
    }
    pooled = subject_summary(rows, names)
    return MetricTable(rows=rows, keys=["case_id", "method"], info=info, pooled=pooled)
