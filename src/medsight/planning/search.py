"""Timing networks on this machine, and the one width search every planner uses.

A planner describes the network its plan will train (:class:`StepProbe`: the registered name, the
options, the input and the batch) and :func:`search_width` times it at each candidate value of the
network's declared width option (``ModelInfo.width_option``), keeping the widest whose training
step fits a step-time target. The network timed is the plan's own, including one the user chose.

Example:
    >>> probe = StepProbe("unet", spatial_dims=2, in_channels=1, out_channels=2, input_size=[64, 64],
    ...                   batch_size=4)
    >>> choice = search_width(probe, widths=(8, 16, 32), target_s=0.5)  # doctest: +SKIP
    >>> choice.options  # doctest: +SKIP
    {'base_filters': 16}
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

Width = int | float


@dataclass(frozen=True)
class StepProbe:
    """A network to time: what ``build_model`` needs, and the batch one training step sees."""

    network: str
    spatial_dims: int
    in_channels: int
    out_channels: int
    input_size: list[int]
    batch_size: int
    device: str = "cpu"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WidthChoice:
    """What :func:`search_width` chose, and the step times it measured on the way.

    Attributes:
        network: the network timed.
        option: the width option sized (None: the network declares none, or the user set it).
        value: the chosen value of ``option`` (None when ``option`` is None).
        seconds: the measured step of the chosen network.
        target_s: the step-time target it was sized against.
        timings: ``(value, seconds)`` of every candidate timed, narrowest first.
    """

    network: str
    option: str | None
    value: Width | None
    seconds: float
    target_s: float
    timings: tuple[tuple[Width | None, float], ...]

    @property
    def options(self) -> dict[str, Width]:
        """The network option the choice sets: ``{option: value}``, or nothing."""
        return {} if self.option is None or self.value is None else {self.option: self.value}

    def describe(self) -> str:
        """One line for ``plan.reasons``."""
        if self.option is None:
            return f"{self.network} as configured (no width to size): {self.seconds:.3f} s per step"
        times = "; ".join(f"{self.option}={v:g}: {s:.3f} s per step" for v, s in self.timings)
        return (
            f"{self.network} with {self.option}={self.value:g}: the widest whose measured step fits "
            f"{self.target_s:.3f} s, else the narrowest ({times})"
        )


def time_training_step(net: Any, x: Any) -> float:
    """Seconds of one training step of ``net`` on batch ``x`` (forward, backward, AdamW update): the
    faster of two after a warm-up."""
    import torch

    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        opt.zero_grad()
        net(x).float().mean().backward()
        opt.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(min(times[1:]))


def measure_step(probe: StepProbe) -> float:
    """Seconds per training step of the network ``probe`` describes, built through the model registry."""
    import torch

    from medsight.models import build_model

    net = build_model(
        probe.network,
        spatial_dims=probe.spatial_dims,
        in_channels=probe.in_channels,
        out_channels=probe.out_channels,
        patch_size=probe.input_size,
        **probe.options,
    ).to(probe.device)
    x = torch.randn(probe.batch_size, probe.in_channels, *probe.input_size, device=probe.device)
    return time_training_step(net, x)


def search_width(probe: StepProbe, widths: Sequence[Width], target_s: float) -> WidthChoice:
    """Size ``probe``'s network: the widest candidate whose measured step takes at most ``target_s``.

    Candidates are values of the network's declared width option (``ModelInfo.width_option``), timed
    narrowest first; the search stops at the first that is too slow, and keeps the narrowest when none
    fits. A network without a width option, or whose ``probe.options`` already set it (the user's
    choice), is timed once as it is.

    Args:
        probe: the network the plan will train, with every option but its width.
        widths: candidate values of the width option, narrowest first.
        target_s: the step-time target (seconds per training step).
    """
    from medsight.models import model_info

    option = model_info(probe.network).width_option
    if option is None or option in probe.options or not widths:
        seconds = measure_step(probe)
        return WidthChoice(probe.network, None, None, seconds, target_s, ((None, seconds),))
    timings: list[tuple[Width | None, float]] = []
    for width in widths:
        seconds = measure_step(replace(probe, options={**probe.options, option: width}))
        timings.append((width, seconds))
        if seconds > target_s:
            break
    fitting = [t for t in timings if t[1] <= target_s]
    value, seconds = fitting[-1] if fitting else timings[0]
    return WidthChoice(probe.network, option, value, seconds, target_s, tuple(timings))
