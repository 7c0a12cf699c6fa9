"""Domain-specific pretraining: an encoder learnt from unlabelled images (``medsight pretrain``), saved so
that ``medsight train classify DATA --set plan.pretrained=RUN/encoder.pt`` fine-tunes it.

The encoder is the network the classify family plans for the same data (ResNet-18 with the same input
size, stem, width and normalisation: :func:`medsight.tasks.classify.planning.plan_classification`), so
its ``encoder.pt`` (every tensor but the head ``fc``) loads key by key. Methods:

* ``ae``: the encoder's last feature map, a light decoder, mean squared reconstruction error;
* ``mae``: the same, from inputs with MASK_RATIO of their PATCH x PATCH patches blanked, the error on
  the blanked pixels only (a masked autoencoder in the CNN form of SparK, Tian et al. 2023, simplified);
* ``vae``: pooled features -> a Gaussian code (mean, log-variance) -> the decoder; reconstruction + KL;
* ``simclr``: two random augmentations of each image, a 2-layer projection head and MONAI's
  ``ContrastiveLoss`` (NT-Xent, Chen et al. 2020);
* ``dbn``: a DBN (Gaussian visible units on the normalised pixels) trained greedily by CD-1, saved in
  the layout of the ``dbn_mlp`` classifier (fine-tune with ``--set plan.network=dbn_mlp``).

Training runs on the engine (budget, checkpoints, metrics.jsonl) in a run folder
``<out>/pretrain-<method>-<dataset>-<stamp>/`` that gets ``encoder.pt`` and ``encoder.json`` (network,
options, input size, normalisation: what fine-tuning and PaDiM need).

Example::

    run = pretrain("pneumoniamnist", method="simclr", overrides=["train.time_budget=5m"])
    # medsight train classify pneumoniamnist --set plan.pretrained=RUN/encoder.pt
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsight.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    import torch

PRETRAIN_METHODS = ("ae", "vae", "dbn", "simclr", "mae")
MASK_RATIO = 0.6
PATCH = 4
DBN_HIDDEN = [512, 256]


def check_method(method: str) -> str:
    if method not in PRETRAIN_METHODS:
        raise ConfigError(
            f"--method: unknown pretraining method {method!r}{did_you_mean(method, list(PRETRAIN_METHODS))}; "
            f"known: {', '.join(PRETRAIN_METHODS)}"
        )
    return method


def pretrain(
    dataset: str | Path,
    method: str = "ae",
    *,
    overrides: list[str] | None = None,
    out: str | Path = "runs",
) -> Path:
    """Pretrain an encoder on the (unlabelled) training images of ``dataset``; return the run folder.

    Args:
        dataset: anything the classify family loads (MedMNIST name or .npz, class folders, CSV); labels
            are not used.
        method: one of PRETRAIN_METHODS.
        overrides: ``--set`` values: ``train.*`` (budget, lr, seed ...) and ``plan.*`` fields of the
            classify plan the encoder must match (``plan.network_kwargs``, ``plan.input_size`` ...).
        out: the parent folder of the run folder.

    Raises:
        ConfigError: an unknown method or option.
    """
    from medsight.config import load_config
    from medsight.data.classification import load_classification
    from medsight.engine import Trainer
    from medsight.tasks.anomaly.pretrain_task import (
        NormalisedBatches,
        PretrainTask,
        encoder_state,
        stack_inputs,
    )
    from medsight.tasks.classify.planning import plan_classification
    from medsight.utils import atomic_write_text

    check_method(method)
    config = load_config(None, overrides, task="classify", data={"dataset": str(dataset)}, out=str(out))
    data = load_classification(config.data.dataset)
    plan = plan_classification(data, measure=False, overrides=config.plan)
    folder = _run_folder(Path(config.out), method, data.name)
    atomic_write_text(folder / "config.yaml", config.to_yaml())
    task = PretrainTask(method, plan, config.train)
    trainer = Trainer(task, config.train, folder)
    model = task.build_model()
    x = stack_inputs(data.train, plan)
    trainer.fit(model, NormalisedBatches(x, plan.batch_size, config.train.seed), None)
    _save_encoder(folder, encoder_state(model, method), plan, method, len(x))
    return folder


def _run_folder(out: Path, method: str, dataset: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = out / f"pretrain-{method}-{dataset}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def _save_encoder(
    folder: Path, state: dict[str, torch.Tensor], plan: Any, method: str, n_images: int
) -> None:
    import torch

    from medsight.utils import atomic_write, atomic_write_text

    atomic_write(folder / "encoder.pt", lambda tmp: torch.save(state, tmp))
    info = {
        "method": method,
        "dataset": plan.dataset,
        "images": n_images,
        "network": "dbn_mlp" if method == "dbn" else plan.network,
        "network_kwargs": {"hidden": DBN_HIDDEN} if method == "dbn" else plan.network_kwargs,
        "input_size": plan.input_size,
        "in_channels": plan.in_channels,
        "normalization": [n.model_dump(mode="json") for n in plan.normalization],
        "tensors": len(state),
    }
    atomic_write_text(folder / "encoder.json", json.dumps(info, indent=2))
