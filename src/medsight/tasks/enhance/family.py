"""The enhance family: the Task contract for denoising, super-resolution and reconstruction from
undersampled k-space or low-dose CT (registered as ``enhance``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsight.errors import ConfigError
from medsight.task_registry import TASKS
from medsight.tasks.enhance.planning import EnhancePlan
from medsight.tasks.family_base import FamilyBase

if TYPE_CHECKING:
    from medsight.config import RunConfig, TrainConfig
    from medsight.data.spec import Case
    from medsight.runs import Run
    from medsight.tasks.contract import Example, Section
    from medsight.tasks.enhance.data import EnhanceCase, EnhanceData
    from medsight.tasks.enhance.task import EnhanceTask


@dataclass
class EnhanceSummary:
    """What ``medsight fingerprint --task enhance`` shows."""

    description: dict[str, Any]

    def summary_lines(self) -> list[str]:
        d = self.description
        lines = [f"dataset {d['name']}: {d['kind']}, {d['modality']}, largest in-plane {d['max_in_plane']}"]
        for split, info in d["splits"].items():
            lines.append(f"  {split}: {info['cases']} cases of {info['subjects']} subjects")
        return lines + [f"  note: {n}" for n in d.get("notes", [])]

    def to_json(self) -> str:
        return json.dumps(self.description, indent=2, default=str)


class EnhanceFamily(FamilyBase):
    """Degraded in, enhanced out, always beside the classical methods."""

    name = "enhance"
    plan_type = EnhancePlan

    def load(self, source: str | Path, config: RunConfig) -> EnhanceData:
        from medsight.tasks.enhance.data import load_enhance_data

        return load_enhance_data(source)

    def fingerprint(self, data: EnhanceData, config: RunConfig) -> EnhanceSummary:
        return EnhanceSummary(data.describe())

    def plan(self, data: EnhanceData, config: RunConfig, *, measure: bool = True) -> EnhancePlan:
        from medsight.engine import resolve_device
        from medsight.planning import planning_budget
        from medsight.tasks.enhance.planning import plan_enhancement

        plan = plan_enhancement(
            data,
            device=str(resolve_device(config.train.device)),
            measure=measure,
            time_budget_s=planning_budget(config),
            overrides=config.plan,
            seed=config.train.seed,
        )
        return plan.model_copy(update={"task": self.name})

    def trainable(self, plan: EnhancePlan, train: TrainConfig) -> EnhanceTask:
        from medsight.tasks.enhance.task import EnhanceTask

        return EnhanceTask(plan, train)

    def train(self, run: Run, *, evaluate: bool = True) -> None:
        from medsight.tasks.enhance.pipeline import train_enhancement

        train_enhancement(run, evaluate=evaluate)

    def explain(self, run: Run, input: Path, output: Path, *, method: str, target: str | None) -> list[Path]:
        raise ConfigError(
            f"explain: {run.path} is an enhancement run; "
            "its error maps are in the report (eval/<split>/panels)"
        )

    def fit_cases(self, run: Run) -> tuple[list[Case], list[Case]]:
        """The (training, validation) images as the network's inputs look like them: clean images (a
        pair's degraded image); none for raw k-space, whose predict inputs are not images."""
        from medsight.data.spec import Case
        from medsight.tasks.enhance.pipeline import load_run_data, split_cases

        data = load_run_data(run)
        if data.kind == "kspace":
            return [], []

        def as_case(c: EnhanceCase) -> Case:
            return Case(case_id=c.case_id, images=(c.image,), patient_id=c.subject)

        train, val = split_cases(run, data)
        return [as_case(c) for c in train if c.channel == 0], [as_case(c) for c in val if c.channel == 0]

    def example(self, folder: Path) -> Example:
        from medsight.tasks.contract import Example
        from medsight.tasks.enhance.example import make_example

        root, inputs = make_example(folder)
        quick = [
            "train.max_iterations=4",
            "train.iterations_per_epoch=2",
            "train.progress=false",
            "plan.batch_size=2",
            "plan.network_kwargs={base_filters: 4, cascades: 2}",
            "data.num_folds=2",
        ]
        return Example(root, inputs, quick)

    def report_sections(self, run: Path, split: str, folder: Path) -> list[Section]:
        from medsight.report.builder import image_section, split_tag

        tag, suffix = split_tag(split)
        note = _simulated_note(run)
        panels = note + image_section(folder / "panels", "panels")
        return [(f"panels{tag}", f"Best and worst cases{suffix}", panels)]


def _simulated_note(run: Path) -> str:
    try:
        plan = json.loads((run / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    text = (
        "<p><strong>k-space was simulated from magnitude images</strong> (FFT of the real image, no phase, "
        "single coil): easier than real acquired k-space.</p>"
    )
    return text if plan.get("simulated_kspace") else ""


TASKS.add(EnhanceFamily.name, EnhanceFamily())
