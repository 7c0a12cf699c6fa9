"""The anomaly family: the Task contract for unsupervised anomaly detection (registered as ``anomaly``).

Models learn what normal images look like from the normal training cases only (``data.normal_class``)
and score every image: autoencoders (``ae``, ``dae``, ``sparse-ae``, ``contractive-ae``, ``vae``) by
their reconstruction error, the RBM by its free energy, DBN / DBM by their reconstruction error, PaDiM by
the Mahalanobis distance of encoder features. See :mod:`medsight.tasks.anomaly.planning`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsight.data import brain_slices as _brain_slices  # noqa: F401  (registers brats-slices)
from medsight.task_registry import TASKS
from medsight.tasks.anomaly.planning import AnomalyPlan
from medsight.tasks.family_base import FamilyBase

if TYPE_CHECKING:
    from medsight.config import RunConfig, TrainConfig
    from medsight.data.classification import ClassificationData
    from medsight.runs import Run
    from medsight.tasks.anomaly.task import AnomalyTask
    from medsight.tasks.contract import Example, Section


@dataclass
class AnomalySummary:
    """What ``medsight fingerprint --task anomaly`` shows: classes and counts per split."""

    description: dict[str, Any]

    def summary_lines(self) -> list[str]:
        d = self.description
        lines = [f"dataset {d['name']}: {d['dim']}D, {d['channels']} channel(s)"]
        lines.append(f"  classes {', '.join(map(str, d['classes']))}")
        for split, info in d["splits"].items():
            lines.append(f"  {split}: {info['cases']} cases, per class {info['per_class']}")
        return lines

    def to_json(self) -> str:
        return json.dumps(self.description, indent=2, default=str)


class AnomalyFamily(FamilyBase):
    """Anomaly detection trained on normal cases only: image scores and anomaly maps."""

    name = "anomaly"
    plan_type = AnomalyPlan

    # -- data and planning ---------------------------------------------------------------------
    def load(self, source: str | Path, config: RunConfig) -> ClassificationData:
        from medsight.data.classification import load_classification

        return load_classification(source)

    def fingerprint(self, data: ClassificationData, config: RunConfig) -> AnomalySummary:
        return AnomalySummary(data.describe())

    def plan(self, data: ClassificationData, config: RunConfig, *, measure: bool = True) -> AnomalyPlan:
        from medsight.tasks.anomaly.planning import plan_anomaly

        plan = plan_anomaly(data, requested_normal=config.data.normal_class, overrides=config.plan)
        return plan.model_copy(update={"task": self.name})

    def trainable(self, plan: AnomalyPlan, train: TrainConfig) -> AnomalyTask:
        from medsight.tasks.anomaly.task import AnomalyTask

        return AnomalyTask(plan, train)

    # -- verbs on a run ------------------------------------------------------------------------
    def train(self, run: Run, *, evaluate: bool = True) -> None:
        from medsight.tasks.anomaly.pipeline import train_anomaly

        train_anomaly(run, evaluate=evaluate)

    def explain(self, run: Run, input: Path, output: Path, *, method: str, target: str | None) -> list[Path]:
        from medsight.errors import ConfigError

        raise ConfigError(
            "explain: an anomaly model explains itself with its anomaly map; "
            f"run `medsight predict --run {run.path} --input {input} --output {output}` (maps/)"
        )

    def example(self, folder: Path) -> Example:
        from medsight.tasks.anomaly.example import make_anomaly_example
        from medsight.tasks.contract import Example

        root = make_anomaly_example(folder)
        quick = [
            "train.max_iterations=6",
            "train.iterations_per_epoch=6",
            "train.progress=false",
            "plan.batch_size=8",
            "plan.network_kwargs={base_filters: 4}",
        ]
        return Example(root, root / "test", quick)

    def report_sections(self, run: Path, split: str, folder: Path) -> list[Section]:
        from medsight.report.builder import image_section, split_tag

        tag, suffix = split_tag(split)
        maps = image_section(folder / "maps", "anomaly maps")
        return [(f"anomaly-maps{tag}", f"Most anomalous cases and their maps{suffix}", maps)]


TASKS.add(AnomalyFamily.name, AnomalyFamily())
