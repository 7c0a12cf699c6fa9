"""The Task contract: what a task family implements so that every verb works for it.

A family is one folder ``tasks/<name>/`` whose package registers one object satisfying :class:`Task`
in :data:`medsight.task_registry.TASKS`. Shared code (api, cli, the run layer) calls only these
methods; deploy/ and robustness/ are libraries over the adapters a task returns
(:class:`~medsight.deploy.export.ExportSpec`, :class:`~medsight.deploy.serving.ServedModel`,
:class:`~medsight.robustness.adapter.AttackAdapter`, :class:`~medsight.robustness.adapter.FileAttacker`),
so a new family is trained, evaluated, served, exported and attacked with no edit there.

The contract has two halves: this plan-free family object (data, planning and the verbs on a run
folder), and the :class:`~medsight.engine.contract.TrainableTask` it builds for one plan, which is all
the engine sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from medsight.config import RunConfig, TrainConfig
    from medsight.data.spec import Case
    from medsight.deploy.export import ExportSpec
    from medsight.deploy.serving import ServedModel
    from medsight.engine.contract import TrainableTask
    from medsight.metrics.table import MetricTable
    from medsight.planning.plan import PlanBase
    from medsight.robustness.adapter import AttackAdapter, FileAttacker
    from medsight.runs import Run

Section = tuple[str, str, str]  # (anchor id, title, HTML body) of a report section


class TaskData(Protocol):
    """A loaded dataset of one family: its name and a JSON-able description of what is in it."""

    name: str

    def describe(self) -> dict[str, Any]: ...


class Fingerprinted(Protocol):
    """What ``medsight fingerprint`` shows: a few lines for people, the whole as JSON."""

    def summary_lines(self) -> list[str]: ...

    def to_json(self) -> str: ...


@dataclass
class PredictRequest:
    """What ``medsight predict --run`` asks of a task (see :func:`medsight.api.predict`)."""

    input: Path
    output: Path
    tta: bool | None = None
    overwrite: bool = False
    shard: str | tuple[int, int] | None = None
    dicom: bool | None = None  # DICOM results for DICOM inputs: None when possible, True required
    reference: Path | None = None  # an image the task needs beside each input (e.g. a fixed image)


@dataclass
class EvaluateRequest:
    """What ``medsight evaluate`` asks: a split of the run's data, or images scored against references."""

    split: str = "val"
    input: Path | None = None
    reference: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Example:
    """A tiny synthetic dataset of a family, made on the spot: for the demo, smoke checks and the tests
    that run every verb on every family. ``quick`` are ``--set`` overrides that make a run take seconds."""

    dataset: Path
    inputs: Path  # files to predict, in a form ``medsight predict`` takes
    quick: list[str] = field(default_factory=list)


@runtime_checkable
class Task(Protocol):
    """A task family (segment, classify, ...): the object its package registers in TASKS."""

    name: str
    plan_type: type[PlanBase]  # what its plan.json holds

    # -- data and planning (before a run exists) -----------------------------------------------
    def load(self, source: str | Path, config: RunConfig) -> TaskData:
        """Read, validate and split a dataset (a folder, a file or a registered name)."""
        ...

    def fingerprint(self, data: TaskData, config: RunConfig) -> Fingerprinted: ...

    def plan(self, data: TaskData, config: RunConfig, *, measure: bool = True) -> PlanBase:
        """The plan (with a reason per choice) for ``data`` under the config's budget and overrides."""
        ...

    def trainable(self, plan: PlanBase, train: TrainConfig) -> TrainableTask:
        """The engine's view of this family bound to ``plan``."""
        ...

    # -- verbs on a run folder -----------------------------------------------------------------
    def train(self, run: Run, *, evaluate: bool = True) -> None:
        """Train (or resume) the run with the engine; then, when ``evaluate``, score its validation split
        (and make the choices validation makes: thresholds, post-processing)."""
        ...

    def predict(self, run: Run, request: PredictRequest) -> list[Path]: ...

    def evaluate(self, run: Run, request: EvaluateRequest) -> MetricTable:
        """Predict and score; per-case rows and a summary with CIs. The task may write figures into
        ``run.eval_dir(split)``; the caller writes the table there with :meth:`MetricTable.write`."""
        ...

    def explain(self, run: Run, input: Path, output: Path, *, method: str, target: str | None) -> list[Path]:
        """Explanation maps of the model's answers (ConfigError where the family has none)."""
        ...

    def export_spec(self, run: Run) -> ExportSpec: ...

    def served_model(self, run: Run) -> ServedModel: ...

    def attack_adapter(self, run: Run, split: str, max_cases: int | None = None) -> AttackAdapter: ...

    def file_attacker(self, run: Run) -> FileAttacker: ...

    def fit_cases(self, run: Run) -> tuple[list[Case], list[Case]]:
        """The (training, validation) cases the run trained and validated on (the input profile that
        flags unusual inputs is fitted and calibrated on them; ``FamilyBase`` has the fold-based one)."""
        ...

    def example(self, folder: Path) -> Example:
        """Write a tiny synthetic dataset of this family into the new folder ``folder``."""
        ...

    def report_sections(self, run: Path, split: str, folder: Path) -> list[Section]:
        """This family's sections of report.html for one evaluation folder (``eval/<split>``), after
        its metrics, per-case table and plots: e.g. best and worst cases, explanations."""
        ...
