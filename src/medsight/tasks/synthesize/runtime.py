"""Synthesis without torch: the task half of ``medsight predict --model DIR`` (see
:mod:`medsight.deploy.runtime`). The exported network is the VAE (reconstruction) or pix2pix's generator
(translation), or a GAN's generator (latent map in, picture out); inputs and outputs are handled by
:func:`medsight.tasks.synthesize.outputs.synthesis_path`, the PyTorch path's own numpy code, so the files
are those of ``medsight predict --run RUN`` up to float rounding."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from medsight.deploy.runtime import Network
from medsight.io.batch import ShardLike
from medsight.tasks.synthesize.outputs import synthesis_path
from medsight.tasks.synthesize.planning import SynthesisPlan


class Runtime:
    """An exported synthesis network: an output image per input under a path."""

    plan_type: ClassVar[type[SynthesisPlan]] = SynthesisPlan

    def __init__(self, network: Network, plan: SynthesisPlan) -> None:
        self.network, self.plan = network, plan

    def predict_path(
        self, input: Path, output: Path, *, overwrite: bool = False, shard: ShardLike = None
    ) -> list[Path]:
        """See :func:`~medsight.tasks.synthesize.outputs.synthesis_path` (``shard`` is not used)."""
        return synthesis_path(input, output, self.plan, lambda: self.network, overwrite=overwrite)
