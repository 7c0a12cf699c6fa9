"""The anomaly plan, and planning an anomaly detector from a classification-style dataset.

The choices, each with its reason in ``plan.reasons``:

1. the normal class: ``data.normal_class``, else the one class named like normal / healthy / benign
   (ConfigError listing the classes otherwise); training uses the normal training cases only;
2. the method (``plan.model``, see :data:`METHODS`): the network, its score and its learning rate;
3. input size: the median training image size, scaled down to at most MAX_SIDE px, rounded up to the
   network's multiple (the anomaly map is resized back to each input's own grid);
4. intensities scaled to [0, 1] (8-bit: /255; other: the 0.5 / 99.5 percentiles of the training images),
   what the Bernoulli visible units of the energy models and the VAE's sigmoid output need; a PaDiM
   encoder pretrained by ``medsight pretrain`` keeps the normalisation it was pretrained with;
5. batch size: at most MAX_BATCH and at most 1/4 of the normal training cases;
6. the decision threshold on the score: Youden's J on the validation split after training.

Importing this module is cheap (no torch): the plan model is what a run's plan.json loads into.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from medsight.errors import ConfigError, DataError, did_you_mean
from medsight.planning.plan import ChannelNorm, PlanBase

MAX_SIDE = 64
MAX_BATCH = 64
STATS_SAMPLES = 256
NORMAL_NAMES = re.compile(r"(?<![a-z])(normal|healthy|benign|negative|no.?finding)", re.IGNORECASE)
Score = Literal["reconstruction", "free_energy", "mahalanobis"]


@dataclass(frozen=True)
class Method:
    """One anomaly method: the registered network it trains, its score and its defaults."""

    network: str
    score: Score
    lr: float
    kwargs: dict[str, Any] = field(default_factory=dict)
    code_size: int = 0  # top-layer units of an energy model (its out_channels)
    multiple: int = 1
    describe: str = ""


METHODS: dict[str, Method] = {
    "ae": Method("conv_ae", "reconstruction", 1e-3, multiple=8, describe="convolutional autoencoder (MONAI)"),
    "dae": Method("conv_ae", "reconstruction", 1e-3, multiple=8, describe="denoising autoencoder"),
    "sparse-ae": Method(
        "conv_ae", "reconstruction", 1e-3, multiple=8, describe="autoencoder, L1 code penalty"
    ),
    "contractive-ae": Method(
        "conv_ae", "reconstruction", 1e-3, multiple=8, describe="autoencoder, Jacobian (contractive) penalty"
    ),
    "vae": Method("conv_vae", "reconstruction", 1e-3, multiple=8, describe="variational autoencoder (MONAI)"),
    "rbm": Method("rbm", "free_energy", 0.1, code_size=128, describe="Bernoulli RBM, persistent CD"),
    "dbn": Method("dbn", "reconstruction", 0.1, {"hidden": [256]}, 64, describe="DBN, greedy CD"),
    "dbm": Method(
        "dbm",
        "reconstruction",
        0.1,
        {"hidden": [256]},
        64,
        describe="DBM, greedy + persistent CD, mean field",
    ),
    "padim": Method(
        "resnet18", "mahalanobis", 0.0, describe="PaDiM: Gaussian per position of encoder features"
    ),
}
ENERGY = ("rbm", "dbn", "dbm")


class AnomalyPlan(PlanBase):
    """What the anomaly task trains with. Saved as plan.json; ``--set plan.<field>=...`` overrides."""

    task: str = "anomaly"
    model: str = "ae"  # the method: a key of METHODS
    normal_class: str
    input_size: list[int]
    score: Score = "reconstruction"
    lr: float = 1e-3
    code_size: int = 0
    noise_std: float = 0.2  # dae: Gaussian input noise (in [0, 1] intensity units)
    sparsity: float = 1e-3  # sparse-ae: weight of the L1 penalty on the code
    contractive: float = 1e-2  # contractive-ae: weight of the squared Frobenius norm of d code / d x
    beta: float = 1.0  # vae: weight of the KL term
    cd_k: int = 1  # energy models: Gibbs steps of contrastive divergence
    padim_features: int = 100  # padim: feature channels kept (a fixed random subset)
    pretrained: str | None = None  # padim: an encoder.pt from `medsight pretrain` (else random weights)
    threshold: float | None = None  # on the score, chosen on the validation split
    n_normal_train: int = 0
    data_summary: dict[str, Any] = Field(default_factory=dict)


def method(name: str) -> Method:
    """The method ``name``; ConfigError with a "did you mean" for an unknown one."""
    if name not in METHODS:
        raise ConfigError(
            f"plan.model: unknown anomaly model {name!r}{did_you_mean(name, list(METHODS))}; "
            f"known: {', '.join(METHODS)}"
        )
    return METHODS[name]


def normal_class(class_names: list[str], requested: str | None, dataset: str) -> str:
    """The normal class: ``requested`` (``data.normal_class``) or the one named like normal."""
    if requested is not None:
        if requested not in class_names:
            raise ConfigError(
                f"data.normal_class: {requested!r} is not a class of {dataset}"
                f"{did_you_mean(requested, class_names)}; classes: {', '.join(map(repr, class_names))}"
            )
        return requested
    matches = [c for c in class_names if NORMAL_NAMES.search(c)]
    if len(matches) != 1:
        found = "several" if matches else "none"
        raise ConfigError(
            f"data.normal_class: not set, and {found} of the classes of {dataset} is named like "
            f"normal/healthy/benign; set it to one of {', '.join(map(repr, class_names))}"
        )
    return matches[0]


def plan_anomaly(
    data: Any, *, requested_normal: str | None = None, overrides: Mapping[str, Any] | None = None
) -> AnomalyPlan:
    """Plan an anomaly detector for a :class:`medsight.data.classification.ClassificationData`.

    Raises:
        ConfigError: an unknown override, method or normal class.
        DataError: multi-label data, or no normal case among the training cases.
    """
    overrides = dict(overrides or {})
    AnomalyPlan.check_override_names(overrides)
    if data.problem == "multilabel":
        raise DataError(f"{data.name}: anomaly detection needs single-label classes, found multi-label data")
    name = str(overrides.get("model", "ae"))
    meth = method(name)
    reasons: dict[str, str] = {"model": f"{name}: {meth.describe}"}
    normal = normal_class(list(data.class_names), requested_normal, data.name)
    k = list(data.class_names).index(normal)
    normals = [c for c in data.train if int(c.classes) == k]
    if not normals:
        raise DataError(f"{data.name}: no case of the normal class {normal!r} in the training split")
    reasons["normal_class"] = (
        f"{normal!r}: {len(normals)} of {len(data.train)} training cases train the model"
    )
    pretrained = overrides.get("pretrained")
    encoder = read_encoder_info(pretrained) if (name == "padim" and pretrained) else None
    size = _input_size(normals, meth.multiple, encoder, reasons)
    norms = encoder_norms(encoder, reasons) if encoder else _unit_range(normals, reasons)
    batch = int(min(MAX_BATCH, max(2, len(normals) // 4)))
    reasons["batch_size"] = (
        f"{batch}: at most {MAX_BATCH} and 1/4 of the {len(normals)} normal training cases"
    )
    kwargs = dict(encoder["network_kwargs"]) if encoder else dict(meth.kwargs)
    plan = AnomalyPlan(
        dataset=data.name,
        dim=data.dim,
        in_channels=data.channels,
        class_names=list(data.class_names),
        normalization=norms,
        network=meth.network,
        network_kwargs=kwargs,
        batch_size=batch,
        augment=False,
        tta=False,
        model=name,
        normal_class=normal,
        input_size=size,
        score=meth.score,
        lr=meth.lr,
        code_size=meth.code_size,
        n_normal_train=len(normals),
        reasons=reasons,
        data_summary=data.describe(),
    )
    reasons["augment"] = "off: augmentation could make normal cases look abnormal"
    return _check_score(plan.with_overrides(overrides))


def _check_score(plan: AnomalyPlan) -> AnomalyPlan:
    """ConfigError for a score the method cannot give."""
    allowed = {"mahalanobis"} if plan.model == "padim" else {"reconstruction"}
    if plan.model in ENERGY:
        allowed.add("free_energy")
    if plan.score not in allowed:
        raise ConfigError(
            f"plan.score: {plan.score!r} is not a score of plan.model={plan.model}; "
            f"expected one of {sorted(allowed)}"
        )
    return plan


def _input_size(cases: list[Any], multiple: int, encoder: dict | None, reasons: dict[str, str]) -> list[int]:
    if encoder:
        reasons["input_size"] = "the input size the encoder was pretrained at"
        return [int(s) for s in encoder["input_size"]]
    shapes = np.array([c.read().shape[1:] for c in cases[:STATS_SAMPLES]])
    median = [int(s) for s in np.median(shapes, axis=0)]
    scale = min(1.0, MAX_SIDE / max(median))
    size = [max(multiple, math.ceil(s * scale / multiple) * multiple) for s in median]
    reasons["input_size"] = (
        f"median normal training image {median}, at most {MAX_SIDE} px, a multiple of {multiple}"
    )
    return size


def _unit_range(cases: list[Any], reasons: dict[str, str]) -> list[ChannelNorm]:
    arrays = [c.read() for c in cases[:STATS_SAMPLES]]
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


def encoder_info_path(encoder: str | Path) -> Path:
    """Where ``medsight pretrain`` describes an encoder.pt: ``encoder.json`` beside it."""
    return Path(encoder).with_suffix(".json")


def read_encoder_info(encoder: str | Path) -> dict[str, Any]:
    """The description of a pretrained encoder (network, options, input size, normalisation)."""
    path = encoder_info_path(encoder)
    if not Path(encoder).is_file():
        raise ConfigError(f"plan.pretrained: {encoder} not found (write one with `medsight pretrain`)")
    if not path.is_file():
        raise ConfigError(f"plan.pretrained: {path} is missing (an encoder from `medsight pretrain` has one)")
    return json.loads(path.read_text())


def encoder_norms(encoder: dict[str, Any], reasons: dict[str, str]) -> list[ChannelNorm]:
    reasons["normalization"] = "the normalisation the encoder was pretrained with"
    return [ChannelNorm.model_validate(n) for n in encoder["normalization"]]


__all__ = ["ENERGY", "METHODS", "AnomalyPlan", "Method", "method", "normal_class", "plan_anomaly"]
