"""The register family: the Task contract for learned (VoxelMorph-style) registration to an atlas, with
the classical SimpleITK methods behind the same outputs (registered as ``register``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsight.errors import ConfigError
from medsight.task_registry import TASKS
from medsight.tasks.family_base import FamilyBase
from medsight.tasks.register.planning import RegisterPlan

if TYPE_CHECKING:
    from medsight.config import RunConfig, TrainConfig
    from medsight.data.spec import Case
    from medsight.deploy.serving import ServedModel
    from medsight.robustness.adapter import AttackAdapter, FileAttacker
    from medsight.runs import Run
    from medsight.tasks.contract import Example, Section
    from medsight.tasks.register.data import RegisterData
    from medsight.tasks.register.task import RegisterTask


@dataclass
class RegisterSummary:
    """What ``medsight fingerprint --task register`` shows."""

    description: dict[str, Any]

    def summary_lines(self) -> list[str]:
        d = self.description
        lines = [f"dataset {d['name']}: {d['dim']}D images"]
        for split, info in d["splits"].items():
            lines.append(f"  {split}: {info['subjects']} subjects, {info['with_labels']} with labels")
        return lines + [f"  note: {n}" for n in d.get("notes", [])]

    def to_json(self) -> str:
        return json.dumps(self.description, indent=2, default=str)


class RegisterFamily(FamilyBase):
    """Moving images in, aligned to a fixed image (the atlas), beside the classical methods."""

    name = "register"
    plan_type = RegisterPlan

    def load(self, source: str | Path, config: RunConfig) -> RegisterData:
        from medsight.tasks.register.data import load_register_data

        return load_register_data(source)

    def fingerprint(self, data: RegisterData, config: RunConfig) -> RegisterSummary:
        return RegisterSummary(data.describe())

    def plan(self, data: RegisterData, config: RunConfig, *, measure: bool = True) -> RegisterPlan:
        from medsight.engine import resolve_device
        from medsight.planning import planning_budget
        from medsight.tasks.register.planning import plan_registration

        plan = plan_registration(
            data,
            device=str(resolve_device(config.train.device)),
            measure=measure,
            time_budget_s=planning_budget(config),
            overrides=config.plan,
        )
        return plan.model_copy(update={"task": self.name})

    def trainable(self, plan: RegisterPlan, train: TrainConfig) -> RegisterTask:
        from medsight.tasks.register.task import RegisterTask

        return RegisterTask(plan, train)

    def train(self, run: Run, *, evaluate: bool = True) -> None:
        from medsight.tasks.register.pipeline import train_registration

        train_registration(run, evaluate=evaluate)

    def explain(self, run: Run, input: Path, output: Path, *, method: str, target: str | None) -> list[Path]:
        raise ConfigError(
            f"explain: {run.path} is a registration run; its Jacobian maps and checkerboards are in the "
            "outputs of `medsight predict` and `medsight register`"
        )

    def served_model(self, run: Run) -> ServedModel:
        raise ConfigError(f"serve: {run.path}: registration runs are not served yet; use `medsight predict`")

    def attack_adapter(self, run: Run, split: str, max_cases: int | None = None) -> AttackAdapter:
        raise ConfigError(f"attack: {run.path}: adversarial attacks on registration are not supported yet")

    def file_attacker(self, run: Run) -> FileAttacker:
        raise ConfigError(f"attack: {run.path}: adversarial attacks on registration are not supported yet")

    def fit_cases(self, run: Run) -> tuple[list[Case], list[Case]]:
        """The training and validation subjects' images (what predict inputs look like)."""
        from medsight.tasks.register.pipeline import load_run_data, split_cases

        return split_cases(run, load_run_data(run))

    def example(self, folder: Path) -> Example:
        from medsight.tasks.contract import Example
        from medsight.tasks.register.example import make_example

        root, inputs = make_example(folder)
        quick = [
            "train.max_iterations=4",
            "train.iterations_per_epoch=2",
            "train.progress=false",
            "plan.network_kwargs={base_filters: 4}",
            "plan.val_pairs=1",
            "plan.eval_pairs=1",
            "plan.eval_baselines=[affine]",
        ]
        return Example(root, inputs, quick)

    def report_sections(self, run: Path, split: str, folder: Path) -> list[Section]:
        return []


TASKS.add(RegisterFamily.name, RegisterFamily())
