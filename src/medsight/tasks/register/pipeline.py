"""Learned registration end to end: subjects affinely aligned to the atlas once (cached arrays on the
working grid) -> random smooth deformations on the fly (seeded) -> train -> evaluate ours beside every
classical method on known deformations of each subject, at full resolution (per pair, CIs over pairs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medsight.data.spec import Case
from medsight.errors import ConfigError, DataError
from medsight.metrics.table import MetricTable
from medsight.runs import Run
from medsight.tasks.contract import EvaluateRequest
from medsight.tasks.register.data import RegisterData, load_register_data
from medsight.tasks.register.planning import RegisterPlan

log = logging.getLogger(__name__)
MAX_ONE_HOT = 32  # labels kept for weak supervision (the largest)


@dataclass
class Subject:
    """A training subject on the atlas's working grid (array order), after its affine step."""

    case_id: str
    image: np.ndarray  # (*grid) float32 in [0, 1]
    labels: np.ndarray | None  # (*grid) int


def load_run_data(run: Run) -> RegisterData:
    return load_register_data(run.config.data.dataset)


def split_cases(run: Run, data: RegisterData) -> tuple[list[Case], list[Case]]:
    """(train, validation) subjects: the run's subject-level fold; with fewer subjects than folds (one
    segmented subject is common) or ``data.fold=all``, every subject trains and validation pairs are new
    random deformations of the training subjects (other seeds)."""
    from medsight.runs import fold_ids

    if run.config.data.fold == "all" or len(data.train) < max(2, run.config.data.num_folds):
        return list(data.train), list(data.train)
    train_ids, val_ids = fold_ids(run, data.train)
    by_id = {c.case_id: c for c in data.train}
    return [by_id[i] for i in train_ids], [by_id[i] for i in val_ids]


def cases_of_split(run: Run, split: str) -> list[Case]:
    data = load_run_data(run)
    if split == "val":
        cases = split_cases(run, data)[1]
    elif split in ("test", "train"):
        cases = data.test if split == "test" else data.train
    else:
        raise ConfigError(f"--split: expected val, test or train, got {split!r}")
    if not cases:
        raise DataError(f"{data.name}: split {split!r} has no subjects")
    return cases


def atlas_side(plan: RegisterPlan) -> Any:
    from medsight.tasks.register.images import load_side

    return load_side(plan.atlas, "fixed", plan.atlas_labels)


def subject_on_grid(case: Case, atlas: Any, plan: RegisterPlan) -> Subject:
    """A subject's image (and labels) on the atlas's working grid after its affine step to the atlas."""
    import SimpleITK as sitk

    from medsight.tasks.register.images import load_side
    from medsight.tasks.register.warping import pair_arrays

    side = load_side(case.images[0], "moving", case.label)
    pair = pair_arrays(atlas.sitk, side.sitk, plan)
    labels = None
    if side.labels_sitk is not None:
        lab = sitk.Resample(side.labels_sitk, pair.grid, pair.affine, sitk.sitkNearestNeighbor, 0)
        labels = sitk.GetArrayFromImage(lab)
    return Subject(case.case_id, pair.moving, labels)


def atlas_on_grid(atlas: Any, plan: RegisterPlan) -> Subject:
    import SimpleITK as sitk

    from medsight.tasks.register.warping import resample_to, scale_intensity, working_grid

    grid = working_grid(atlas.sitk, plan.spacing, plan.grid_size)
    labels = None
    if atlas.labels_sitk is not None:
        lab = sitk.Resample(atlas.labels_sitk, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        labels = sitk.GetArrayFromImage(lab)
    return Subject("atlas", scale_intensity(resample_to(atlas.sitk, grid)), labels)


def random_displacement(
    shape: list[int], plan: RegisterPlan, batch: int, generator: torch.Generator
) -> torch.Tensor:
    """Random smooth displacements (B, dim, *shape) in voxels: normal noise on a grid of control points
    every ``control_mm``, interpolated, scaled so the largest is ``max_deform_mm`` x U(0.3, 1)."""
    import torch.nn.functional as F

    dim = len(shape)
    coarse = [max(2, round(n * plan.spacing / plan.control_mm) + 1) for n in shape]
    noise = torch.randn((batch, dim, *coarse), generator=generator)
    mode = "trilinear" if dim == 3 else "bicubic"
    field = F.interpolate(noise, size=list(shape), mode=mode, align_corners=True)
    peak = field.norm(dim=1).flatten(1).amax(dim=1).clamp_min(1e-6)
    amp = (0.3 + 0.7 * torch.rand(batch, generator=generator)) * plan.max_deform_mm / plan.spacing
    return field * (amp / peak).view(batch, *([1] * (dim + 1)))


class TrainingPairs:
    """Endless batches: a random subject under a random smooth deformation (moving) and the atlas
    (fixed); random gamma on the moving image; seeded by the run seed."""

    def __init__(self, subjects: list[Subject], atlas: Subject, plan: RegisterPlan, seed: int) -> None:
        from monai.networks.blocks import Warp

        if not subjects:
            raise DataError("register: no training subjects")
        self.subjects, self.atlas, self.plan = subjects, atlas, plan
        self.generator = torch.Generator().manual_seed(seed)
        self.warp = Warp(mode="bilinear", padding_mode="zeros")
        self.label_values = _label_values(subjects, atlas) if plan.label_weight > 0 else []

    def _one_hot(self, labels: np.ndarray) -> torch.Tensor:
        values = torch.as_tensor(self.label_values)
        lab = torch.from_numpy(labels.astype(np.int64))
        return (lab[None] == values.view(-1, *([1] * lab.ndim))).float()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        plan, shape = self.plan, list(self.atlas.image.shape)
        fixed = torch.from_numpy(self.atlas.image)[None, None]
        with_labels = bool(self.label_values) and self.atlas.labels is not None
        while True:
            picks = torch.randint(len(self.subjects), (plan.batch_size,), generator=self.generator)
            ddf = random_displacement(shape, plan, plan.batch_size, self.generator)
            base = torch.stack([torch.from_numpy(self.subjects[int(i)].image)[None] for i in picks])
            with torch.no_grad():
                moving = self.warp(base, ddf)
            if plan.intensity_augment:
                gamma = torch.exp(0.2 * torch.randn(plan.batch_size, generator=self.generator))
                moving = moving.clamp_min(0) ** gamma.view(-1, *([1] * (moving.ndim - 1)))
            batch = {"moving": moving.contiguous(), "fixed": fixed.expand_as(moving).contiguous()}
            if with_labels and all(self.subjects[int(i)].labels is not None for i in picks):
                hot = torch.stack([self._one_hot(self.subjects[int(i)].labels) for i in picks])
                with torch.no_grad():
                    batch["moving_labels"] = self.warp(hot, ddf)
                batch["fixed_labels"] = self._one_hot(self.atlas.labels)[None].expand_as(hot).contiguous()
            yield batch


def _label_values(subjects: list[Subject], atlas: Subject) -> list[int]:
    if atlas.labels is None:
        return []
    values, counts = np.unique(atlas.labels, return_counts=True)
    keep = [int(v) for v, _ in sorted(zip(values, counts, strict=True), key=lambda t: -t[1]) if v != 0]
    return keep[:MAX_ONE_HOT]


def validation_batches(
    subjects: list[Subject], plan: RegisterPlan, atlas: Any, seed: int
) -> list[dict[str, torch.Tensor]]:
    """Known deformations of the validation subjects on the working grid: moving, fixed (the subject),
    the true field (voxels, array axes) and the subject's foreground; ``plan.val_pairs`` in all."""
    import SimpleITK as sitk

    from medsight.metrics.registration import field_from_itk
    from medsight.tasks.register.deform import deform, pair_seed, random_field
    from medsight.tasks.register.warping import working_grid

    grid = working_grid(atlas.sitk, plan.spacing, plan.grid_size)
    batches = []
    for k in range(plan.val_pairs):
        subject = subjects[k % len(subjects)]
        img = sitk.GetImageFromArray(subject.image)
        img.CopyInformation(grid)
        rng = np.random.default_rng(pair_seed(seed, "val", subject.case_id, k))
        known = deform(img, None, random_field(img, plan.max_deform_mm, plan.control_mm, rng))
        u, spacing = field_from_itk(known.truth)
        truth = u / np.asarray(spacing).reshape(-1, *([1] * plan.dim))
        moving = sitk.GetArrayFromImage(known.moving)
        batches.append(
            {
                "moving": torch.from_numpy(moving)[None, None].float(),
                "fixed": torch.from_numpy(subject.image)[None, None].float(),
                "truth": torch.from_numpy(truth)[None].float(),
                "mask": torch.from_numpy(subject.image > 0.1)[None],
            }
        )
    return batches


def train_registration(run: Run, evaluate: bool = True) -> None:
    """Train the run's network on random deformations; then (``evaluate``) score validation pairs."""
    from medsight.engine import Trainer
    from medsight.engine.distributed import dist_info
    from medsight.tasks.register.task import RegisterTask

    data = load_run_data(run)
    plan: RegisterPlan = run.plan  # type: ignore[assignment]
    train, val = split_cases(run, data)
    atlas = atlas_side(plan)
    log.info("aligning %d training subjects to the atlas at %g mm", len(train), plan.spacing)
    subjects = [subject_on_grid(c, atlas, plan) for c in train]
    val_subjects = [subject_on_grid(c, atlas, plan) for c in val]
    seed = run.config.train.seed
    val_data = validation_batches(val_subjects, plan, atlas, seed)
    task = RegisterTask(plan, run.config.train)
    trainer = Trainer(task, run.config.train, run.path)
    pairs = TrainingPairs(subjects, atlas_on_grid(atlas, plan), plan, seed + 1000 * dist_info().rank)
    trainer.fit(task.build_model(), pairs, val_data)
    if evaluate:
        evaluate_cases(run, val, "val").write(run.eval_dir("val"))


def evaluate_request(run: Run, request: EvaluateRequest) -> MetricTable:
    if request.input is not None or request.reference is not None:
        raise ConfigError("evaluate: --input/--reference are not used by register; it scores --split")
    return evaluate_cases(run, cases_of_split(run, request.split), request.split)


def method_transformers(run: Run, plan: RegisterPlan) -> dict[str, Any]:
    """method name -> function (fixed Side, moving Side) -> transform: ours, then the baselines."""
    from medsight.tasks.register.classical import classical
    from medsight.tasks.register.images import working_image
    from medsight.tasks.register.learned import LearnedRegistration

    learned = LearnedRegistration(run, instance_steps=0)
    spacing = plan.classical_spacing or plan.spacing

    def baseline(name: str) -> Any:
        def run_it(fixed: Any, moving: Any) -> Any:
            return classical(name, working_image(fixed.sitk, spacing), working_image(moving.sitk, spacing))

        return run_it

    out: dict[str, Any] = {"learned": learned.transform}
    if plan.instance_steps > 0:  # the same network, then instance optimisation on each pair
        out["learned+io"] = LearnedRegistration(run).transform
    for name in plan.eval_baselines:
        out[name] = baseline(name)
    return out


def evaluate_cases(run: Run, cases: list[Case], split: str) -> MetricTable:
    """Ours and every classical method on the same known deformations of each subject (``eval_pairs``
    each, seeded): Dice / HD95 where the subject has labels, TRE against the true field inside the
    subject's foreground, folding %, SDlogJ and seconds per pair, CIs over pairs."""
    plan: RegisterPlan = run.plan  # type: ignore[assignment]
    methods = method_transformers(run, plan)
    rows = []
    for case in cases:
        for k in range(plan.eval_pairs):
            rows += score_known_pair(case, k, split, plan, methods, run.config.train.seed)
    info = {
        "split": split,
        "subjects": len(cases),
        "pairs": len(cases) * plan.eval_pairs,
        "pairs_are": f"known random smooth deformations (up to {plan.max_deform_mm:g} mm) of each subject",
        "methods": list(methods),
        "classical_spacing_mm": plan.classical_spacing or plan.spacing,
    }
    seconds = {m: float(np.mean([r["seconds"] for r in rows if r["method"] == m])) for m in methods}
    info["seconds_per_pair"] = {m: round(s, 3) for m, s in seconds.items()}
    if "bspline" in seconds and seconds["learned"] > 0:
        info["speedup_vs_bspline"] = round(seconds["bspline"] / seconds["learned"], 2)
    return MetricTable(rows=rows, keys=["pair_id", "method"], info=info)


def score_known_pair(
    case: Case, k: int, split: str, plan: RegisterPlan, methods: dict[str, Any], seed: int
) -> list[dict[str, Any]]:
    """One known deformation of a subject registered by every method: a row per method."""
    from medsight.metrics.registration import field_from_itk, field_tre
    from medsight.tasks.register.deform import deform, pair_seed, random_field
    from medsight.tasks.register.images import from_sitk, load_side
    from medsight.tasks.register.pairwise import apply_transform

    fixed = load_side(case.images[0], "fixed", case.label)
    rng = np.random.default_rng(pair_seed(seed, split, case.case_id, k))
    known = deform(
        fixed.sitk, fixed.labels_sitk, random_field(fixed.sitk, plan.max_deform_mm, plan.control_mm, rng)
    )
    moving_labels = from_sitk(known.moving_labels, fixed.image) if known.moving_labels is not None else None
    moving = load_side(from_sitk(known.moving, fixed.image), "moving", moving_labels)
    truth, _ = field_from_itk(known.truth)
    mask = np.transpose(fixed.labels.array[0]) > 0 if fixed.labels is not None else _foreground(fixed)
    rows = []
    for name, transformer in methods.items():
        t0 = time.perf_counter()
        transform = transformer(fixed, moving)
        seconds = time.perf_counter() - t0
        result = apply_transform(transform, fixed, moving, name, labels=plan.eval_labels or None)
        u, _ = field_from_itk(result.field)
        m = result.metrics
        rows.append(
            {
                "pair_id": f"{case.case_id}#{k}",
                "method": name,
                "subject": case.case_id,
                "dice": m.get("dice_mean", float("nan")),
                "hd95": m.get("hd95_mean", float("nan")),
                "tre": field_tre(u, truth, mask)["tre_mean"],
                "folding_pct": m["folding_pct"],
                "sdlogj": m["sdlogj"],
                "seconds": seconds,
            }
        )
        log.info(
            "%s#%d %s: tre %.2f mm, dice %.3f, %.1f s",
            case.case_id,
            k,
            name,
            rows[-1]["tre"],
            rows[-1]["dice"],
            seconds,
        )
    return rows


def _foreground(side: Any) -> np.ndarray:
    import SimpleITK as sitk

    mask = sitk.OtsuThreshold(side.sitk, 0, 1)
    return sitk.GetArrayFromImage(mask).astype(bool)
