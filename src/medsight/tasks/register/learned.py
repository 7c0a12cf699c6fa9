"""The learned method with a trained run (PyTorch): the network's field, optionally refined by a few
gradient steps on the pair itself (instance optimisation, ``plan.instance_steps``), then the shared
torch-free steps of :mod:`medsight.tasks.register.warping`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.runs import Run, open_run
from medsight.tasks.register.images import Side
from medsight.tasks.register.warping import PairArrays, learned_transform, pair_arrays


def load_model(run: Run, device: str = "auto") -> tuple[Any, torch.nn.Module]:
    from medsight.engine import load_model_weights, resolve_device
    from medsight.tasks.register.task import RegisterTask

    task = RegisterTask(run.plan, run.config.train)  # type: ignore[arg-type]
    model = task.build_model()
    load_model_weights(model, run.checkpoint)
    return task, model.to(resolve_device(device)).eval()


class LearnedRegistration:
    """A trained registration network: ``LearnedRegistration.from_run(run).transform(fixed, moving)``."""

    def __init__(self, run: Run, device: str = "auto", instance_steps: int | None = None) -> None:
        self.run, self.plan = run, run.plan
        self.task, self.model = load_model(run, device)
        self.device = next(self.model.parameters()).device
        self.instance_steps = self.plan.instance_steps if instance_steps is None else int(instance_steps)

    @classmethod
    def from_run(
        cls, run: str | Path | Run, device: str = "auto", instance_steps: int | None = None
    ) -> LearnedRegistration:
        return cls(run if isinstance(run, Run) else open_run(run), device, instance_steps)

    def network(self, x: np.ndarray) -> np.ndarray:
        """The velocity (or displacement) field of a ``(B, 2, *grid)`` batch."""
        with torch.inference_mode():
            return self.model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()

    def optimise(self, pair: PairArrays, velocity: np.ndarray) -> np.ndarray:
        """``instance_steps`` Adam steps on the field itself, minimising the training loss on this pair."""
        v = torch.tensor(velocity[None], device=self.device, requires_grad=True)
        moving = torch.from_numpy(pair.moving[None, None]).to(self.device)
        fixed = torch.from_numpy(pair.fixed[None, None]).to(self.device)
        opt = torch.optim.Adam([v], lr=self.plan.instance_lr)
        for _ in range(self.instance_steps):
            opt.zero_grad()
            loss, _ = self.task.loss(self.task.displacement(v), moving, fixed)
            loss.backward()
            opt.step()
        return v.detach().cpu().numpy()[0]

    def transform(self, fixed: Side, moving: Side) -> Any:
        """The fixed -> moving transform (SimpleITK) of a checked pair."""
        pair = pair_arrays(fixed.sitk, moving.sitk, self.plan)
        velocity = self.network(pair.network_input())[0]
        if self.instance_steps > 0:
            velocity = self.optimise(pair, velocity)
        return learned_transform(pair, velocity, self.plan.integration_steps)
