"""What every task family does the same way: the predict, evaluate, deploy and attack verbs of the Task
contract, answered by the family's own modules beside its family module (``predictor.py``:
``predict_request``; ``pipeline.py``: ``evaluate_request``; ``deploy.py``: ``export_spec``,
``served_model``; ``attack.py``: ``attack_adapter``, ``file_attacker``), imported only when a verb needs
them; and the run's (training, validation) cases for data with training cases and patient-level folds.

A family subclasses :class:`FamilyBase` and writes those two modules; the paths are relative to the
family's package, so a copy of the folder under another name uses its own modules.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from medsight.data.spec import Case
    from medsight.deploy.export import ExportSpec
    from medsight.deploy.serving import ServedModel
    from medsight.metrics.table import MetricTable
    from medsight.robustness.adapter import AttackAdapter, FileAttacker
    from medsight.runs import Run
    from medsight.tasks.contract import EvaluateRequest, PredictRequest


class FamilyBase:
    """The verbs a family answers through its own ``predictor``, ``pipeline``, ``deploy`` and ``attack``
    modules."""

    def _own(self, module: str) -> ModuleType:
        package = type(self).__module__.rpartition(".")[0]
        return importlib.import_module(f"{package}.{module}")

    def predict(self, run: Run, request: PredictRequest) -> list[Path]:
        return self._own("predictor").predict_request(run, request)

    def evaluate(self, run: Run, request: EvaluateRequest) -> MetricTable:
        return self._own("pipeline").evaluate_request(run, request)

    def export_spec(self, run: Run) -> ExportSpec:
        return self._own("deploy").export_spec(run)

    def served_model(self, run: Run) -> ServedModel:
        return self._own("deploy").served_model(run)

    def attack_adapter(self, run: Run, split: str, max_cases: int | None = None) -> AttackAdapter:
        return self._own("attack").attack_adapter(run, split, max_cases)

    def file_attacker(self, run: Run) -> FileAttacker:
        return self._own("attack").file_attacker(run)

    def fit_cases(self, run: Run) -> tuple[list[Case], list[Case]]:
        """The run's (training, validation) cases: its fold of the dataset's training cases (``data.fold``;
        ``all``: no validation). Empty for data without a list of training :class:`Case` s."""
        from medsight.data.spec import Case
        from medsight.runs import fold_ids

        data = self.load(run.config.data.dataset, run.config)  # type: ignore[attr-defined]
        cases = list(getattr(data, "train", None) or [])
        if not cases or not all(isinstance(c, Case) for c in cases):
            return [], []
        train_ids, val_ids = fold_ids(run, cases)
        by_id = {c.case_id: c for c in cases}
        return [by_id[i] for i in train_ids], [by_id[i] for i in val_ids]
