"""The detect family: the Task contract for lesion / structure detection with boxes, 2D and 3D
(registered as ``detect``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsight.task_registry import TASKS
from medsight.tasks.detect.planning import DetectPlan
from medsight.tasks.family_base import FamilyBase

if TYPE_CHECKING:
    from medsight.config import RunConfig, TrainConfig
    from medsight.data.boxes import BoxData
    from medsight.data.spec import Case
    from medsight.runs import Run
    from medsight.tasks.contract import Example, Section
    from medsight.tasks.detect.task import DetectTask


@dataclass
class BoxSummary:
    """What ``medsight fingerprint --task detect`` shows: boxes per split and class, sizes, problems."""

    description: dict[str, Any]

    def summary_lines(self) -> list[str]:
        d = self.description
        lines = [
            f"dataset {d['name']}: {d['dim']}D, {d['channels']} channel(s), classes {', '.join(d['classes'])}"
        ]
        for split, info in d["splits"].items():
            lines.append(
                f"  {split}: {info['images']} images, {info['patients']} patients, "
                f"boxes per class {info['boxes_per_class']}"
            )
        for key, value in d["boxes"].items():
            lines.append(f"  {key}: {value}")
        lines += [f"  note: {n}" for n in d.get("notes", [])]
        problems = d.get("problems", [])
        lines.append(f"  problems: {len(problems)}" + ("" if problems else " (none)"))
        return lines + [f"    {p}" for p in problems]

    def to_json(self) -> str:
        return json.dumps(self.description, indent=2, default=str)


class DetectFamily(FamilyBase):
    """One-stage detection (MONAI RetinaNet) of lesions and structures as boxes, 2D and 3D."""

    name = "detect"
    plan_type = DetectPlan

    # -- data and planning ---------------------------------------------------------------------
    def load(self, source: str | Path, config: RunConfig) -> BoxData:
        from medsight.data.boxes import load_boxes

        return load_boxes(source)

    def fingerprint(self, data: BoxData, config: RunConfig) -> BoxSummary:
        from medsight.data.boxes import load_boxes

        listed = load_boxes(data.source, strict=False) if data.source and Path(data.source).exists() else data
        listed.name = data.name
        return BoxSummary(listed.describe())

    def plan(self, data: BoxData, config: RunConfig, *, measure: bool = True) -> DetectPlan:
        from medsight.engine import resolve_device
        from medsight.planning import planning_budget
        from medsight.tasks.detect.planning import plan_detection

        plan = plan_detection(
            data,
            device=str(resolve_device(config.train.device)),
            measure=measure,
            time_budget_s=planning_budget(config),
            overrides=config.plan,
        )
        return plan.model_copy(update={"task": self.name})

    def trainable(self, plan: DetectPlan, train: TrainConfig) -> DetectTask:
        from medsight.tasks.detect.task import DetectTask

        return DetectTask(plan, train)

    # -- verbs on a run ------------------------------------------------------------------------
    def train(self, run: Run, *, evaluate: bool = True) -> None:
        from medsight.tasks.detect.pipeline import train_detection

        train_detection(run, evaluate=evaluate)

    def explain(self, run: Run, input: Path, output: Path, *, method: str, target: str | None) -> list[Path]:
        from medsight.errors import ConfigError

        raise ConfigError(
            "explain: the detect family has no explanation maps; its report shows best and worst images"
        )

    def fit_cases(self, run: Run) -> tuple[list[Case], list[Case]]:
        """The (training, validation) images the run used: the dataset's own val split when it has one."""
        from medsight.tasks.detect.pipeline import load_run_data, split_samples

        return split_samples(run, load_run_data(run))

    def example(self, folder: Path) -> Example:
        from medsight.tasks.contract import Example
        from medsight.tasks.detect.example import make_box_dataset

        root, inputs = make_box_dataset(folder)
        quick = [
            "train.max_iterations=16",
            "train.iterations_per_epoch=8",
            "train.progress=false",
            "plan.batch_size=4",
            "plan.network_kwargs={base_filters: 4, fpn_channels: 8}",
        ]
        return Example(root, inputs, quick)

    def report_sections(self, run: Path, split: str, folder: Path) -> list[Section]:
        from medsight.report.builder import image_section, split_tag

        tag, suffix = split_tag(split)
        body = image_section(folder / "cases", "best and worst images")
        note = "<p>Reference boxes green, predicted boxes red with their scores (from 0.3).</p>"
        return [(f"detections{tag}", f"Best and worst images{suffix}", note + body)]


TASKS.add(DetectFamily.name, DetectFamily())
