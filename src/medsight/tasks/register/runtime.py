"""Registration without torch: the task half of ``medsight predict --model DIR`` (see
:mod:`medsight.deploy.runtime`). The affine step, integration, warping and files are the PyTorch path's
own torch-free code (:mod:`medsight.tasks.register.warping`, :mod:`medsight.tasks.register.outputs`), so
the outputs are those of ``medsight predict --run RUN`` up to float rounding in the network (without
instance optimisation, which needs torch). The fixed image is the run's atlas (``plan.atlas``): it must
be readable where the export runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from medsight.deploy.runtime import Network
from medsight.errors import DataError
from medsight.io.batch import ShardLike
from medsight.tasks.register.outputs import register_path
from medsight.tasks.register.planning import RegisterPlan


class Runtime:
    """An exported registration network: every moving image under a path registered to the atlas."""

    plan_type: ClassVar[type[RegisterPlan]] = RegisterPlan

    def __init__(self, network: Network, plan: RegisterPlan) -> None:
        self.network, self.plan = network, plan

    def transform(self, fixed: Any, moving: Any) -> Any:
        from medsight.tasks.register.warping import register_with_network

        return register_with_network(fixed.sitk, moving.sitk, self.plan, self.network)

    def predict_path(
        self, input: Path, output: Path, *, overwrite: bool = False, shard: ShardLike = None
    ) -> list[Path]:
        atlas = Path(self.plan.atlas)
        if not atlas.exists():
            raise DataError(f"plan.atlas: {atlas}: the run's atlas (the fixed image) is not found here")
        labels = Path(self.plan.atlas_labels) if self.plan.atlas_labels else None
        return register_path(
            input,
            output,
            atlas,
            labels if labels and labels.exists() else None,
            lambda: self.transform,
            overwrite=overwrite,
            shard=shard,
        )
