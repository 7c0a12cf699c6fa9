"""The classify family: the Task contract for image classification (registered as ``classify``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsight.task_registry import TASKS
from medsight.tasks.classify.planning import ClassifyPlan
from medsight.tasks.family_base import FamilyBase

if TYPE_CHECKING:
    from medsight.config import RunConfig, TrainConfig
    from medsight.data.classification import ClassificationData
    from medsight.data.spec import Case
    from medsight.runs import Run
    from medsight.tasks.classify.task import ClassifyTask
    from medsight.tasks.contract import Example, Section


@dataclass
class ClassificationSummary:
    """What ``medsight fingerprint --task classify`` shows: sizes, classes and counts per split."""

    description: dict[str, Any]

    def summary_lines(self) -> list[str]:
        d = self.description
        lines = [f"dataset {d['name']}: {d['problem']}, {d['dim']}D, {d['channels']} channel(s)"]
        lines.append(f"  classes {', '.join(map(str, d['classes']))}")
        for split, info in d["splits"].items():
            lines.append(f"  {split}: {info['cases']} cases, per class {info['per_class']}")
        return lines + [f"  note: {n}" for n in d.get("notes", [])]

    def to_json(self) -> str:
        return json.dumps(self.description, indent=2, default=str)


class ClassifyFamily(FamilyBase):
    """Binary, multi-class, multi-label and ordinal classification, 2D and 3D."""

    name = "classify"
    plan_type = ClassifyPlan

    # -- data and planning ---------------------------------------------------------------------
    def load(self, source: str | Path, config: RunConfig) -> ClassificationData:
        from medsight.data.classification import load_classification

        return load_classification(source, problem=config.plan.get("problem"))

    def fingerprint(self, data: ClassificationData, config: RunConfig) -> ClassificationSummary:
        return ClassificationSummary(data.describe())

    def plan(self, data: ClassificationData, config: RunConfig, *, measure: bool = True) -> ClassifyPlan:
        from medsight.engine import resolve_device
        from medsight.planning import planning_budget
        from medsight.tasks.classify.planning import plan_classification

        plan = plan_classification(
            data,
            device=str(resolve_device(config.train.device)),
            measure=measure,
            time_budget_s=planning_budget(config),
            overrides=config.plan,
        )
        return plan.model_copy(update={"task": self.name})  # the family's registered name

    def trainable(self, plan: ClassifyPlan, train: TrainConfig) -> ClassifyTask:
        from medsight.tasks.classify.task import ClassifyTask

        return ClassifyTask(plan, train)

    # -- verbs on a run ------------------------------------------------------------------------
    def train(self, run: Run, *, evaluate: bool = True) -> None:
        from medsight.tasks.classify.pipeline import train_classification

        train_classification(run, evaluate=evaluate)

    def explain(self, run: Run, input: Path, output: Path, *, method: str, target: str | None) -> list[Path]:
        from medsight.tasks.classify.explaining import explain_path

        return explain_path(run.path, input, output, method=method, target=target)

    def fit_cases(self, run: Run) -> tuple[list[Case], list[Case]]:
        from medsight.tasks.classify.pipeline import split_samples

        return split_samples(run, self.load(run.config.data.dataset, run.config))

    def example(self, folder: Path) -> Example:
        from medsight.data.phantom_bars import make_bar_dataset
        from medsight.tasks.contract import Example

        root = make_bar_dataset(folder, n_train=48, n_val=12, n_test=8)
        quick = [
            "train.max_iterations=20",
            "train.iterations_per_epoch=10",
            "train.progress=false",
            "plan.batch_size=16",
            "plan.network_kwargs={small_input: true, widen_factor: 0.25}",
        ]
        return Example(root, root / "test", quick)

    def report_sections(self, run: Path, split: str, folder: Path) -> list[Section]:
        from medsight.report.builder import image_section, split_tag

        tag, suffix = split_tag(split)
        explanations = image_section(folder / "explanations", "explanations")
        return [(f"explanations{tag}", f"Explanations of right and wrong cases{suffix}", explanations)]


TASKS.add(ClassifyFamily.name, ClassifyFamily())
