"""Every anomaly method on tiny synthetic pictures: it trains on normal images only (with its optimiser,
or fitting itself), scores normal below anomalous images, and its exported scorer has the declared
layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.anomaly.anomaly_testutils import tiny_data

from medsight.config import TrainConfig
from medsight.engine.contract import StepContext
from medsight.errors import DataError
from medsight.metrics.anomaly import image_auroc
from medsight.tasks.anomaly.planning import METHODS, plan_anomaly
from medsight.tasks.anomaly.scoring import Scorer, scores_and_maps
from medsight.tasks.anomaly.task import AnomalyTask, stack_inputs

torch.set_num_threads(1)
STEPS = 40
ENERGY_STEPS = 200  # contrastive divergence takes small steps
SMALL = {
    "conv_ae": {"base_filters": 4},
    "conv_vae": {"base_filters": 4, "latent_size": 16},
    "rbm": {},
    "dbn": {"hidden": [64]},
    "dbm": {"hidden": [64]},
    "resnet18": {"widen_factor": 0.25},
}


def _context(step: int, progress: float, optimizers: list) -> StepContext:
    from contextlib import nullcontext

    return StepContext(0, step, torch.device("cpu"), optimizers, nullcontext, progress=progress)


def _train(name: str) -> tuple[AnomalyTask, torch.nn.Module, np.ndarray]:
    data = tiny_data()
    kwargs = SMALL[METHODS[name].network]
    extra = {"code_size": 32} if name in ("rbm", "dbn", "dbm") else {}
    plan = plan_anomaly(data, overrides={"model": name, "network_kwargs": kwargs, **extra})
    torch.manual_seed(0)
    task = AnomalyTask(plan, TrainConfig(seed=0))
    model = task.build_model()
    optimizers = task.configure_optimizers(model) or []
    x = stack_inputs([c for c in data.train if c.classes == 0], plan)
    g = torch.Generator().manual_seed(0)
    model.train()
    steps = ENERGY_STEPS if name in ("rbm", "dbn", "dbm") else STEPS
    for step in range(steps):
        batch = {"image": x[torch.randint(0, len(x), (8,), generator=g)]}
        out = task.training_step(model, batch, _context(step, step / steps, optimizers))
        for spec in optimizers:
            spec.optimizer.zero_grad()
            out.losses[spec.name].backward()
            spec.optimizer.step()
    model.eval()
    val = data.splits["val"]
    with torch.no_grad():
        scores, maps = scores_and_maps(model, stack_inputs(val, plan), plan)
    assert maps.shape == (len(val), 1, 32, 32) and torch.isfinite(maps).all() and torch.isfinite(scores).all()
    y = np.array([c.classes for c in val])
    return task, model, image_auroc(y, scores.numpy())


@pytest.mark.parametrize("name", list(METHODS))
def test_method_trains_on_normal_images_and_ranks_anomalies_higher(name: str) -> None:
    task, model, auroc = _train(name)
    assert (task.configure_optimizers(model) is None) == (name in ("rbm", "dbn", "dbm", "padim"))
    assert auroc > 0.75, f"{name}: validation AUROC {auroc:.3f}"
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        out = Scorer(model, task.plan)(x)
        scores, _ = scores_and_maps(model, x, task.plan)
    assert out.shape == (2, 1 + 32 * 32)
    torch.testing.assert_close(out[:, 0], scores.float())


def test_bernoulli_energy_model_refuses_inputs_outside_unit_range() -> None:
    data = tiny_data()
    plan = plan_anomaly(data, overrides={"model": "rbm", "code_size": 8})
    task = AnomalyTask(plan)
    model = task.build_model()
    with pytest.raises(
        DataError, match=r"plan.model=rbm: the Bernoulli visible units need inputs in \[0, 1\]"
    ):
        task.training_step(model, {"image": torch.full((2, 1, 32, 32), 2.0)}, _context(0, 0.0, []))
