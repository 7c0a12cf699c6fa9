"""``data.synthetic=RUN``: labelled samples made by another run join the classifier's training split
(never its validation or test split).

The run's family is found through the task registry; it makes labelled samples when it has a
``labelled_samples(run, counts, seed)`` method (a class-conditional generator does). ``data.synthetic_ratio``
synthetic samples per real training sample are asked for, in the real training split's class
proportions, with the run seed.
"""

from __future__ import annotations

import logging

import numpy as np

from medsight.data.spec import Case
from medsight.errors import ConfigError
from medsight.runs import Run

log = logging.getLogger(__name__)


def synthetic_samples(run: Run, train: list[Case], class_names: list[str]) -> list[Case]:
    """The labelled samples ``run.config.data.synthetic`` makes for the training split (none when unset)."""
    from medsight.runs import open_run
    from medsight.task_registry import get_task

    source, ratio = run.config.data.synthetic, run.config.data.synthetic_ratio
    if not source or ratio <= 0 or not train:
        return []
    maker = open_run(source)
    family = get_task(maker.config.task)
    make = getattr(family, "labelled_samples", None)
    if make is None:
        raise ConfigError(
            f"data.synthetic: {source} is a {maker.config.task} run, which makes no labelled samples"
        )
    y = np.array([int(c.classes) for c in train])
    if y.ndim != 1 or (y < 0).any():
        raise ConfigError("data.synthetic: augmentation needs single-label training cases")
    total = int(round(ratio * len(train)))
    counts = {name: int(round(total * float(np.mean(y == k)))) for k, name in enumerate(class_names)}
    cases = make(maker.path, counts, seed=run.config.train.seed)
    index = {name: k for k, name in enumerate(class_names)}
    log.info("data.synthetic: %d samples from %s (%s)", len(cases), source, counts)
    return [_relabel(c, index, maker.plan.class_names) for c in cases]


def _relabel(case: Case, index: dict[str, int], maker_classes: list[str]) -> Case:
    """The sample's class index in this dataset's class order (the maker's may differ)."""
    name = maker_classes[int(case.classes)]
    if name not in index:
        raise ConfigError(
            f"data.synthetic: class {name!r} of the synthetic samples is not a class here ({list(index)})"
        )
    return Case(case.case_id, classes=index[name], array=case.array, patient_id=case.case_id)
