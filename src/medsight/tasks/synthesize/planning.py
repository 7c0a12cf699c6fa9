"""The synthesis plan, and planning a generative model from a dataset.

The choices, each with its reason in ``plan.reasons``:

1. the model (``plan.model``, see :data:`MODELS`): its networks, losses and optimiser settings;
2. for translation (``pix2pix``, ``cyclegan``), the source and target channels (``plan.source``,
   ``plan.target``: contrast names of paired data); pix2pix needs paired cases;
3. the picture size: the median training image size scaled down to at most MAX_SIDE px (MAX_PAIRED for
   translation), rounded to the networks' multiple;
4. intensities scaled to [0, 1] (8-bit: /255; other: the training 0.5 / 99.5 percentiles; paired data is
   already scaled per volume), what the generators' sigmoid outputs give;
5. width and batch from the time budget: the narrow width under WIDE_BUDGET_S of training, the wide one
   above; the batch at most MAX_BATCH and 1/4 of the training cases.

Importing this module is cheap (no torch): the plan model is what a run's plan.json loads into.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from medsight.errors import ConfigError, DataError, did_you_mean
from medsight.planning.plan import ChannelNorm, PlanBase

MAX_SIDE = 64
MAX_PAIRED = 128
MAX_BATCH = 64
PAIRED_BATCH = 8
STATS_SAMPLES = 256
WIDE_BUDGET_S = 20 * 60


@dataclass(frozen=True)
class Model:
    """One synthesis model: its generator and discriminator networks and its defaults."""

    generator: str
    discriminator: str | None
    multiple: int
    lr: float
    betas: tuple[float, float]
    describe: str
    conditional: bool = False
    paired: bool = False


MODELS: dict[str, Model] = {
    "dcgan": Model(
        "dcgan_generator", "dcgan_discriminator", 4, 2e-4, (0.5, 0.999), "DCGAN, BCE adversarial loss"
    ),
    "cgan": Model(
        "dcgan_generator",
        "dcgan_discriminator",
        4,
        2e-4,
        (0.5, 0.999),
        "class-conditional DCGAN (one-hot latent, projection discriminator)",
        conditional=True,
    ),
    "wgan-gp": Model(
        "dcgan_generator",
        "dcgan_discriminator",
        4,
        1e-4,
        (0.0, 0.9),
        "WGAN with gradient penalty (critic without batch norm, 5 critic steps per generator step)",
    ),
    "vae": Model("conv_vae", None, 8, 1e-3, (0.9, 0.999), "beta-VAE (MONAI VarAutoEncoder)"),
    "pix2pix": Model(
        "unet",
        "patch_discriminator",
        16,
        2e-4,
        (0.5, 0.999),
        "pix2pix: U-Net generator (MONAI UNet), PatchGAN (MONAI PatchDiscriminator), LSGAN + 100 L1",
        paired=True,
    ),
    "cyclegan": Model(
        "unet",
        "patch_discriminator",
        16,
        2e-4,
        (0.5, 0.999),
        "CycleGAN: two U-Net generators, two PatchGANs, LSGAN + 10 x cycle L1, trained unpaired "
        "(each batch's targets shuffled)",
        paired=True,
    ),
}


class SynthesisPlan(PlanBase):
    """What the synthesize task trains with. Saved as plan.json; ``--set plan.<field>=...`` overrides."""

    task: str = "synthesize"
    model: str = "dcgan"
    kind: str = "pictures"  # the data: "pictures" or "paired"
    input_size: list[int]
    channel_names: list[str] = Field(default_factory=list)
    source: str | None = None  # translation: the source channel name
    target: str | None = None  # translation: the target channel name
    source_index: int | None = None
    target_index: int | None = None
    latent_size: int = 64
    discriminator: str | None = None
    discriminator_kwargs: dict[str, Any] = Field(default_factory=dict)
    lr: float = 2e-4
    lr_d: float = 2e-4
    betas: list[float] = Field(default_factory=lambda: [0.5, 0.999])
    grad_clip_g: float | None = None
    grad_clip_d: float | None = None
    beta: float = 1.0  # vae: weight of the KL term
    gp_weight: float = 10.0  # wgan-gp: weight of the gradient penalty
    n_critic: int = 5  # wgan-gp: critic steps per generator step
    l1_weight: float = 100.0  # pix2pix: weight of the L1 term
    cycle_weight: float = 10.0  # cyclegan: weight of the cycle-consistency L1 terms
    encoder_steps: int = 400  # steps of the evaluation encoder (an autoencoder on the real training split)
    n_train: int = 0
    data_summary: dict[str, Any] = Field(default_factory=dict)

    @property
    def conditional(self) -> bool:
        return MODELS[self.model].conditional

    @property
    def image_channels(self) -> int:
        """Channels of the pictures the model makes (the target channel for translation)."""
        return 1 if self.kind == "paired" else self.in_channels


def model_spec(name: str) -> Model:
    """The model ``name``; ConfigError with a "did you mean" for an unknown one."""
    if name not in MODELS:
        raise ConfigError(
            f"plan.model: unknown synthesis model {name!r}{did_you_mean(name, list(MODELS))}; "
            f"known: {', '.join(MODELS)}"
        )
    return MODELS[name]


def plan_synthesis(
    data: Any, *, overrides: Mapping[str, Any] | None = None, time_budget_s: float | None = None
) -> SynthesisPlan:
    """Plan a generative model for a :class:`~medsight.tasks.synthesize.data.SynthesisData`.

    Raises:
        ConfigError: an unknown override or model, or a source / target channel the data lacks.
        DataError: no training case, or pix2pix without paired cases.
    """
    from medsight.tasks.synthesize.data import channel_index

    overrides = dict(overrides or {})
    SynthesisPlan.check_override_names(overrides)
    name = str(overrides.get("model", "pix2pix" if data.kind == "paired" else "dcgan"))
    spec = model_spec(name)
    reasons: dict[str, str] = {"model": f"{name}: {spec.describe}"}
    if not data.train:
        raise DataError(f"{data.name}: no training case")
    if spec.paired != (data.kind == "paired"):
        raise DataError(_kind_mismatch(name, spec, data))
    if spec.conditional and len(data.class_names) < 2:
        raise DataError(f"plan.model=cgan: {data.name} has {len(data.class_names)} class(es); it needs >= 2")
    fields: dict[str, Any] = {}
    if spec.paired:
        src, tgt = overrides.get("source"), overrides.get("target")
        fields["source_index"] = channel_index(data.channel_names, src, "plan.source")
        fields["target_index"] = channel_index(data.channel_names, tgt, "plan.target")
        if fields["source_index"] == fields["target_index"]:
            raise ConfigError(f"plan.source and plan.target are the same channel ({src!r})")
        fields["source"] = data.channel_names[fields["source_index"]]
        fields["target"] = data.channel_names[fields["target_index"]]
        reasons["source"] = f"{fields['source']} -> {fields['target']}, of {', '.join(data.channel_names)}"
    size = _input_size(data.train, spec.multiple, MAX_PAIRED if spec.paired else MAX_SIDE, reasons)
    norms = _unit_range(data, reasons)
    wide = time_budget_s is not None and time_budget_s >= WIDE_BUDGET_S
    width = (64 if wide else 32) if spec.paired else (32 if wide else 16)
    reasons["network_kwargs"] = (
        f"base_filters {width}: {'at least' if wide else 'under'} {WIDE_BUDGET_S // 60} min of training"
    )
    cap = PAIRED_BATCH if spec.paired else MAX_BATCH
    batch = int(min(cap, max(2, len(data.train) // 4)))
    reasons["batch_size"] = f"{batch}: at most {cap} and 1/4 of the {len(data.train)} training cases"
    disc_kwargs: dict[str, Any] = {"base_filters": width}
    if name == "cgan":
        disc_kwargs["num_classes"] = len(data.class_names)
    if name == "wgan-gp":
        disc_kwargs["norm"] = "none"
    net_kwargs: dict[str, Any] = {"base_filters": width}
    if name == "vae":
        net_kwargs["latent_size"] = 32
    plan = SynthesisPlan(
        dataset=data.name,
        dim=data.dim,
        in_channels=1 if spec.paired else data.channels,
        class_names=list(data.class_names),
        normalization=norms,
        network=spec.generator,
        network_kwargs=net_kwargs,
        discriminator=spec.discriminator,
        discriminator_kwargs=disc_kwargs,
        batch_size=batch,
        augment=False,
        tta=False,
        model=name,
        kind=data.kind,
        input_size=size,
        channel_names=list(data.channel_names),
        lr=spec.lr,
        lr_d=spec.lr,
        betas=list(spec.betas),
        n_train=len(data.train),
        reasons=reasons,
        data_summary=data.describe(),
        **fields,
    )
    reasons["augment"] = "off: a generator learns the training distribution as it is"
    return plan.with_overrides({k: v for k, v in overrides.items() if k not in ("source", "target")})


def _kind_mismatch(name: str, spec: Model, data: Any) -> str:
    if spec.paired:
        need = "pix2pix needs paired cases" if name == "pix2pix" else f"{name} needs cases of two contrasts"
        return (
            f"plan.model={name}: {need} (a folder of subject folders holding one "
            f"volume per contrast, e.g. <subject>_t1.nii.gz and <subject>_t2.nii.gz); {data.name} holds "
            "pictures only"
        )
    return (
        f"plan.model={name}: {data.name} holds paired contrasts ({', '.join(data.channel_names)}); "
        "use plan.model=pix2pix or cyclegan with plan.source / plan.target"
    )


def _input_size(cases: list[Any], multiple: int, max_side: int, reasons: dict[str, str]) -> list[int]:
    shapes = np.array([c.read().shape[1:] for c in cases[:STATS_SAMPLES]])
    median = [int(s) for s in np.median(shapes, axis=0)]
    scale = min(1.0, max_side / max(median))
    size = [max(multiple, math.ceil(s * scale / multiple) * multiple) for s in median]
    reasons["input_size"] = f"median training image {median}, at most {max_side} px, a multiple of {multiple}"
    return size


def _unit_range(data: Any, reasons: dict[str, str]) -> list[ChannelNorm]:
    if data.kind == "paired":
        reasons["normalization"] = "each volume scaled by its brain's 99.5th percentile to [0, 1]"
        return [ChannelNorm(scheme="ct", clip_low=0.0, clip_high=1.0, mean=0.0, std=1.0)]
    arrays = [c.read() for c in data.train[:STATS_SAMPLES]]
    flat = [np.concatenate([a[ch].ravel() for a in arrays]) for ch in range(arrays[0].shape[0])]
    if all(f.min() >= 0 and f.max() <= 255 and np.allclose(f, np.round(f)) for f in flat):
        reasons["normalization"] = "8-bit images: /255 to [0, 1]"
        return [ChannelNorm(scheme="rgb", mean=0.0, std=1.0) for _ in flat]
    reasons["normalization"] = "clipped to the training 0.5/99.5 percentiles, scaled to [0, 1]"
    norms = []
    for f in flat:
        lo, hi = float(np.percentile(f, 0.5)), float(np.percentile(f, 99.5))
        norms.append(ChannelNorm(scheme="ct", clip_low=lo, clip_high=hi, mean=lo, std=max(hi - lo, 1e-6)))
    return norms


__all__ = ["MODELS", "Model", "SynthesisPlan", "model_spec", "plan_synthesis"]
