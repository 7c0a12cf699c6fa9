"""The synthesize family: the Task contract for generative models (registered as ``synthesize``).

GANs (``dcgan``, ``cgan``, ``wgan-gp``) and a beta-VAE (``vae``) learn to make new pictures of a
dataset; pix2pix (paired) and CycleGAN (unpaired) translate one MR contrast into another. Evaluation
uses an encoder the run trains on the same modality (no hub weights). See
:mod:`medsight.tasks.synthesize.planning` and :mod:`medsight.tasks.synthesize.task`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsight.errors import ConfigError
from medsight.task_registry import TASKS
from medsight.tasks.family_base import FamilyBase
from medsight.tasks.synthesize.planning import SynthesisPlan

if TYPE_CHECKING:
    from medsight.config import RunConfig, TrainConfig
    from medsight.data.spec import Case
    from medsight.metrics.table import MetricTable
    from medsight.runs import Run
    from medsight.tasks.contract import EvaluateRequest, Example, Section
    from medsight.tasks.synthesize.data import SynthesisData
    from medsight.tasks.synthesize.task import SynthesisTask


@dataclass
class SynthesisSummary:
    """What ``medsight fingerprint --task synthesize`` shows."""

    description: dict[str, Any]

    def summary_lines(self) -> list[str]:
        d = self.description
        lines = [f"dataset {d['name']}: {d['kind']}, {d['dim']}D, channels {', '.join(d['channels'])}"]
        if d["classes"]:
            lines.append(f"  classes {', '.join(map(str, d['classes']))}")
        for split, info in d["splits"].items():
            per = f", per class {info['per_class']}" if "per_class" in info else ""
            lines.append(f"  {split}: {info['cases']} cases{per}")
        return lines + [f"  note: {n}" for n in d.get("notes", [])]

    def to_json(self) -> str:
        return json.dumps(self.description, indent=2, default=str)


class SynthesizeFamily(FamilyBase):
    """New pictures, modality translation and labelled samples for augmentation."""

    name = "synthesize"
    plan_type = SynthesisPlan

    def load(self, source: str | Path, config: RunConfig) -> SynthesisData:
        from medsight.tasks.synthesize.data import load_synthesis_data

        return load_synthesis_data(source)

    def fingerprint(self, data: SynthesisData, config: RunConfig) -> SynthesisSummary:
        return SynthesisSummary(data.describe())

    def plan(self, data: SynthesisData, config: RunConfig, *, measure: bool = True) -> SynthesisPlan:
        from medsight.planning import planning_budget
        from medsight.tasks.synthesize.planning import plan_synthesis

        plan = plan_synthesis(data, overrides=config.plan, time_budget_s=planning_budget(config))
        return plan.model_copy(update={"task": self.name})

    def trainable(self, plan: SynthesisPlan, train: TrainConfig) -> SynthesisTask:
        from medsight.tasks.synthesize.task import SynthesisTask

        return SynthesisTask(plan, train)

    def train(self, run: Run, *, evaluate: bool = True) -> None:
        from medsight.tasks.synthesize.pipeline import train_synthesis

        train_synthesis(run, evaluate=evaluate)

    def evaluate(self, run: Run, request: EvaluateRequest) -> MetricTable:
        from medsight.tasks.synthesize.evaluation import evaluate_request

        return evaluate_request(run, request)

    def explain(self, run: Run, input: Path, output: Path, *, method: str, target: str | None) -> list[Path]:
        raise ConfigError(
            f"explain: {run.path} is a synthesis run; its sample grids, nearest training pictures and "
            "translation panels are in the report (eval/<split>/figures)"
        )

    def fit_cases(self, run: Run) -> tuple[list[Case], list[Case]]:
        """The (training, validation) cases as predict's inputs look: pictures, or the source contrast."""
        from medsight.data.spec import Case
        from medsight.tasks.synthesize.pipeline import load_run_data, split_cases

        train, val = split_cases(run, load_run_data(run))
        k = run.plan.source_index
        if run.plan.kind != "paired" or k is None:
            return train, val

        def source(c: Case) -> Case:
            return Case(c.case_id, array=c.read()[k : k + 1], patient_id=c.patient_id)

        return [source(c) for c in train], [source(c) for c in val]

    def labelled_samples(self, run: Path, counts: dict[str, int], seed: int = 0) -> list[Case]:
        """Generated labelled pictures (see :func:`medsight.tasks.synthesize.labelled_samples`)."""
        from medsight.tasks.synthesize.sampling import labelled_samples

        return labelled_samples(run, counts, seed)

    def example(self, folder: Path) -> Example:
        from medsight.tasks.contract import Example
        from medsight.tasks.synthesize.example import make_pictures_example

        root = make_pictures_example(folder)
        quick = [
            "plan.model=vae",
            "train.max_iterations=4",
            "train.iterations_per_epoch=2",
            "train.progress=false",
            "plan.batch_size=8",
            "plan.network_kwargs={base_filters: 4, latent_size: 4}",
            "plan.encoder_steps=4",
        ]
        return Example(root, root / "test", quick)

    def report_sections(self, run: Path, split: str, folder: Path) -> list[Section]:
        from medsight.report.builder import image_section, split_tag

        tag, suffix = split_tag(split)
        figures = image_section(folder / "figures", "figures")
        return [(f"synthesis-figures{tag}", f"Generated pictures and translations{suffix}", figures)]


TASKS.add(SynthesizeFamily.name, SynthesizeFamily())
