"""The segment family: the Task contract for 2D and 3D semantic segmentation (registered as ``segment``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medsight.errors import ConfigError
from medsight.task_registry import TASKS
from medsight.tasks.family_base import FamilyBase
from medsight.tasks.segment.planning import Plan

if TYPE_CHECKING:
    from medsight.config import RunConfig, TrainConfig
    from medsight.data.fingerprint import Fingerprint
    from medsight.data.spec import DatasetSpec
    from medsight.runs import Run
    from medsight.tasks.contract import Example, Section
    from medsight.tasks.segment.task import SegmentTask


class SegmentFamily(FamilyBase):
    """Segmentation with the U-Net family, self-configured from a dataset fingerprint."""

    name = "segment"
    plan_type = Plan

    # -- data and planning ---------------------------------------------------------------------
    def load(self, source: str | Path, config: RunConfig) -> DatasetSpec:
        from medsight.data import load_dataset

        return load_dataset(source)

    def fingerprint(self, data: DatasetSpec, config: RunConfig) -> Fingerprint:
        from medsight.data import fingerprint_dataset

        return fingerprint_dataset(data, cache_dir=config.data.cache_dir)

    def plan(self, data: DatasetSpec, config: RunConfig, *, measure: bool = True) -> Plan:
        from medsight.data.validate import raise_on_issues
        from medsight.planning import device_budget, planning_budget
        from medsight.tasks.segment.planning import plan_photo_scale, plan_segmentation, with_augment_reason

        fp = self.fingerprint(data, config)
        raise_on_issues(fp.data_issues)
        plan = plan_segmentation(
            fp,
            budget=device_budget(config.train.device),
            measure=measure,
            time_budget_s=planning_budget(config),
            overrides=config.plan,
        )
        plan = plan_photo_scale(data.train, plan, config.plan)
        return plan.model_copy(update={"task": self.name, "reasons": with_augment_reason(plan)})

    def trainable(self, plan: Plan, train: TrainConfig) -> SegmentTask:
        from medsight.tasks.segment.task import SegmentTask

        return SegmentTask(plan, train)

    # -- verbs on a run ------------------------------------------------------------------------
    def train(self, run: Run, *, evaluate: bool = True) -> None:
        from medsight.tasks.segment.pipeline import train_segmentation

        train_segmentation(run, evaluate=evaluate)

    def explain(self, run: Run, input: Path, output: Path, *, method: str, target: str | None) -> list[Path]:
        raise ConfigError(
            f"explain: {run.path} is a segmentation run; explanations are for classifiers "
            "(a segmentation's probability map is its own explanation: predict writes it)"
        )

    def example(self, folder: Path) -> Example:
        from medsight.data import make_phantom_dataset
        from medsight.tasks.contract import Example

        root = make_phantom_dataset(folder, kind="fundus2d", n_train=6, n_test=2, size=64)
        quick = [
            "train.max_iterations=4",
            "train.iterations_per_epoch=2",
            "train.progress=false",
            "plan.batch_size=2",
            "data.num_folds=2",
        ]
        return Example(root, root / "imagesTs", quick)

    def report_sections(self, run: Path, split: str, folder: Path) -> list[Section]:
        from medsight.report.builder import image_section, split_tag

        tag, suffix = split_tag(split)
        overlays = image_section(folder / "overlays", "overlays")
        return [(f"overlays{tag}", f"Best and worst cases{suffix}", overlays)]


TASKS.add(SegmentFamily.name, SegmentFamily())
