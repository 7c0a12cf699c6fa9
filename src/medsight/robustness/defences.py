"""Input-transformation defences on unit-space batches (B, C, *spatial), 2D and 3D.

Each defence maps a batch of intensities in [0, 1] to a batch of the same shape:

- ``median`` (``kernel``, odd, default 3): median smoothing over a ``kernel``-wide window of every
  spatial axis (MONAI's ``median_filter``, replicate padding); differentiable almost everywhere (the
  gradient flows to the selected median), so an adaptive attack differentiates it exactly;
- ``bit-depth`` (``bits``, default 5): intensities rounded to ``2**bits`` levels (feature squeezing,
  Xu et al. 2018); its gradient is zero almost everywhere, so it is attacked by BPDA;
- ``gaussian`` (``sigma`` in voxels, default 1.0): Gaussian smoothing (MONAI's separable filtering,
  replicate padding), differentiable;
- ``tv-denoise`` (``weight``, default 0.1): total-variation denoising (Chambolle 2004,
  ``skimage.restoration.denoise_tv_chambolle``) of every image channel on its own, in 2D or 3D; computed
  in numpy, so it is attacked by BPDA. TV is the robust choice of denoiser here: it has one parameter, it
  keeps edges, and it needs no training data.

Defences are named in ``INPUT_DEFENCES``; :func:`defended_forward` composes them in front of a forward
function. BPDA (Athalye et al. 2018, "backward pass differentiable approximation"): a defence without a
useful gradient runs as itself in the forward pass and as the identity in the backward pass
(:class:`StraightThrough`), so an attacker who differentiates the defended forward still gets a
gradient -- the adaptive attack. For "attack the undefended model, evaluate through the defence", attack
``forward`` and evaluate ``defended_forward(forward, ...)``.

Example::

    defended = defended_forward(forward, ["median:kernel=3", ("bit-depth", {"bits": 4})])
    x_adv = ATTACKS.get("pgd")(defended, loss_fn, x, y, eps=4 / 255)   # adaptive (through the defence)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medsight.errors import ConfigError
from medsight.registry import Registry
from medsight.robustness.adapter import AttackAdapter

Forward = Callable[[torch.Tensor], torch.Tensor]
DefenceSpec = str | tuple[str, Mapping[str, Any]]


@dataclass(frozen=True)
class InputDefence:
    """A named transformation ``fn(u, **params) -> u'``; ``differentiable`` False means BPDA."""

    fn: Callable[..., torch.Tensor]
    differentiable: bool
    defaults: Mapping[str, Any]


INPUT_DEFENCES: Registry[InputDefence] = Registry("input defence")


def _spatial_dims(u: torch.Tensor, what: str) -> int:
    if u.dim() not in (4, 5):
        raise ConfigError(
            f"{what}: expected a batch (B, C, H, W) or (B, C, D, H, W), got shape {tuple(u.shape)}"
        )
    return u.dim() - 2


def median_smoothing(u: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Median of each ``kernel``-wide window (odd ``kernel``; ``1`` is the identity), replicate padding."""
    from monai.networks.layers import median_filter

    dims = _spatial_dims(u, "median")
    if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ConfigError(f"median kernel: expected an odd integer >= 1, got {kernel!r}")
    if kernel == 1:
        return u
    return median_filter(u, kernel_size=kernel, spatial_dims=dims)


def bit_depth_reduction(u: torch.Tensor, bits: int = 5) -> torch.Tensor:
    """Intensities in [0, 1] rounded to ``2**bits`` evenly spaced levels (0 and 1 included)."""
    if not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ConfigError(f"bit-depth bits: expected an integer in 1..16, got {bits!r}")
    levels = 2**bits - 1
    return torch.round(u.clamp(0, 1) * levels) / levels


def gaussian_smoothing(u: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian smoothing of every spatial axis, ``sigma`` in voxels, replicate padding (MONAI's separable
    filtering; its ``GaussianFilter`` pads with zeros, which would darken the borders)."""
    from monai.networks.layers import gaussian_1d, separable_filtering

    dims = _spatial_dims(u, "gaussian")
    if not float(sigma) > 0:
        raise ConfigError(f"gaussian sigma: expected a value > 0 (voxels), got {sigma!r}")
    kernel = gaussian_1d(torch.tensor(float(sigma)), truncated=4.0, approx="erf", normalize=True)
    return separable_filtering(u, [kernel.to(u)] * dims, mode="replicate")


def tv_denoising(u: torch.Tensor, weight: float = 0.1) -> torch.Tensor:
    """Total-variation denoising (Chambolle) of each image channel, 2D or 3D; larger ``weight``: smoother."""
    from skimage.restoration import denoise_tv_chambolle

    _spatial_dims(u, "tv-denoise")
    if not float(weight) > 0:
        raise ConfigError(f"tv-denoise weight: expected a value > 0, got {weight!r}")
    arr = u.detach().float().cpu().numpy()
    out = arr.copy()
    for b in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            out[b, c] = denoise_tv_chambolle(arr[b, c], weight=float(weight))
    return torch.from_numpy(out).to(device=u.device, dtype=u.dtype)


INPUT_DEFENCES.add("median", InputDefence(median_smoothing, True, {"kernel": 3}))
INPUT_DEFENCES.add("bit-depth", InputDefence(bit_depth_reduction, False, {"bits": 5}))
INPUT_DEFENCES.add("gaussian", InputDefence(gaussian_smoothing, True, {"sigma": 1.0}))
INPUT_DEFENCES.add("tv-denoise", InputDefence(tv_denoising, False, {"weight": 0.1}))


class StraightThrough(torch.autograd.Function):
    """BPDA: ``fn(x)`` in the forward pass, the identity in the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return fn(x.detach())

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output, None


def parse_defence(spec: DefenceSpec) -> tuple[str, dict[str, Any]]:
    """``"median:kernel=5"`` or ``("median", {"kernel": 5})`` -> ``("median", {"kernel": 5})``, with defaults.

    Unknown names and parameters are a ConfigError; numbers in a string spec become int or float.
    """
    if isinstance(spec, str):
        name, *pairs = [p.strip() for p in spec.split(":")]
        params: dict[str, Any] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"defence {spec!r}: expected name:key=value[:key=value], got part {pair!r}")
            params[key.strip()] = _number(value.strip(), spec)
    else:
        name, params = spec[0], dict(spec[1])
    defence = INPUT_DEFENCES.get(name)
    unknown = set(params) - set(defence.defaults)
    if unknown:
        raise ConfigError(
            f"defence {name!r}: unknown parameter(s) {sorted(unknown)}; known: {sorted(defence.defaults)}"
        )
    return name.lower(), {**defence.defaults, **params}


def apply_defence(u: torch.Tensor, spec: DefenceSpec, *, bpda: bool = False) -> torch.Tensor:
    """One defence on a unit batch; with ``bpda`` a non-differentiable one gets the identity gradient."""
    name, params = parse_defence(spec)
    defence = INPUT_DEFENCES.get(name)
    if bpda and not defence.differentiable:
        return StraightThrough.apply(u, lambda v: defence.fn(v, **params))
    return defence.fn(u, **params)


def defended_forward(forward: Forward, defences: DefenceSpec | Sequence[DefenceSpec]) -> Forward:
    """``u -> forward(d_n(...d_1(u)))``: the defences in order in front of ``forward``.

    Differentiable defences are differentiated exactly; the others by BPDA (identity backward), so the
    result can be attacked directly (the adaptive attack). The specs are checked here, once.
    """
    specs = [defences] if isinstance(defences, str) or _is_pair(defences) else list(defences)
    parsed = [parse_defence(s) for s in specs]  # type: ignore[arg-type]

    def run(u: torch.Tensor) -> torch.Tensor:
        for spec in parsed:
            u = apply_defence(u, spec, bpda=True)
        return forward(u)

    return run


class DefendedAdapter:
    """An attack adapter whose model is seen through input defences (in the unit space); every member
    but ``forward`` is the wrapped adapter's."""

    def __init__(self, adapter: AttackAdapter, defences: Sequence[DefenceSpec]) -> None:
        self.adapter = adapter
        if not adapter.space.stateless:
            raise ConfigError(
                "defences: need an input normalisation without per-image state (rgb, ct or unmasked zscore), "
                f"got {[n.scheme + (' (masked)' if n.use_mask else '') for n in adapter.space.norms]}"
            )
        self.defences = list(defences)
        defended_forward(adapter.forward, self.defences)  # unknown names and parameters fail here

    def __getattr__(self, name: str) -> Any:
        if name == "adapter":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.adapter, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, state = self.space.to_unit(x)
        return defended_forward(self.space.forward_fn(self.adapter.forward, state), self.defences)(u)


def with_defences(adapter: AttackAdapter, defences: Sequence[DefenceSpec]) -> AttackAdapter:
    """The same adapter seen through input-transformation defences (``"median:kernel=3"``, ``"bit-depth"``
    ...). Attacks on it are adaptive: they differentiate through the defences (BPDA, the identity backward,
    for the non-differentiable ones)."""
    return DefendedAdapter(adapter, defences)


def _is_pair(spec: object) -> bool:
    return (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and isinstance(spec[1], Mapping)
    )


def _number(text: str, spec: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError as exc:
        raise ConfigError(f"defence {spec!r}: expected a number, got {text!r}") from exc
