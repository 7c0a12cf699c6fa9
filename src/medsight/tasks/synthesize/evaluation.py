"""Scoring a synthesis run on a split of its data.

Pictures (``dcgan``, ``cgan``, ``wgan-gp``, ``vae``): as many generated pictures as the split has real
ones (a cGAN: with the split's classes), then on the run's evaluation encoder's features
(:mod:`medsight.tasks.synthesize.encoder`): FID (95% CI by bootstrap over both sets), KID (mean and sd
over subsets), improved precision / recall (k = 3); in pixel space: the memorised share of generated
pictures against the training pictures, beside the same share of the split's real pictures (what
copying nothing still gives). A cGAN adds TSTR: a logistic regression on the encoder features of
synthetic labelled pictures (as many as the training split, in its class proportions), its AUC on the
split's real pictures, beside the same classifier trained on the real training pictures (TRTR).
One row per generated picture: its class, nearest training picture, distance, memorised or not.

Translation (``pix2pix``, ``cyclegan``): per case, PSNR / SSIM / MAE inside the brain mask on the plan's
grid, of the network and of the baseline: the source contrast mapped by histogram (quantile) matching
learned on the training subjects' brains.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from medsight.data.spec import Case
from medsight.errors import ConfigError
from medsight.metrics.table import MetricTable, bootstrap_ci
from medsight.runs import Run
from medsight.tasks.contract import EvaluateRequest
from medsight.tasks.synthesize.pipeline import (
    cases_of_split,
    load_model,
    load_run_data,
    run_encoder,
    split_cases,
    stack,
)

FID_BOOT = 50
QUANTILES = 512


def evaluate_request(run: Run, request: EvaluateRequest) -> MetricTable:
    if request.input is not None or request.reference is not None:
        raise ConfigError("evaluate: --input/--reference are for segmentation; synthesis scores --split")
    return evaluate_cases(run, cases_of_split(run, request.split), request.split)


def evaluate_cases(run: Run, cases: list[Case], split: str) -> MetricTable:
    """Score ``cases`` (see the module doc); figures into ``eval/<split>/figures``."""
    model = load_model(run, "cpu")
    train = split_cases(run, load_run_data(run))[0]
    if run.plan.kind == "paired":
        return _translation(run, model, cases, train, split)
    return _pictures(run, model, cases, train, split)


def _stat(value: float, low: float | None = None, high: float | None = None, n: int | None = None) -> dict:
    return {"mean": value, "ci_low": low, "ci_high": high, "n": n}


def _pictures(
    run: Run, model: torch.nn.Module, cases: list[Case], train: list[Case], split: str
) -> MetricTable:
    from medsight.metrics.synthesis import frechet_distance, kernel_distance, memorisation, precision_recall
    from medsight.tasks.synthesize.encoder import features
    from medsight.tasks.synthesize.figures import write_picture_figures
    from medsight.tasks.synthesize.sampling import sample

    plan, seed = run.plan, run.config.train.seed
    real, tr = stack(cases, plan), stack(train, plan)
    labels = real.get("label") if plan.conditional else None
    fake = torch.from_numpy(sample(model, run, len(cases), labels, seed + 1))
    enc = run_encoder(run)
    fr, ff = features(enc, real["image"]).double().numpy(), features(enc, fake).double().numpy()
    fid = frechet_distance(fr, ff)
    rng = np.random.default_rng(seed)
    boots = [
        frechet_distance(fr[rng.integers(0, len(fr), len(fr))], ff[rng.integers(0, len(ff), len(ff))])
        for _ in range(FID_BOOT)
    ]
    kid, kid_sd = kernel_distance(fr, ff, subset_size=max(2, min(200, len(fr) // 2)), seed=seed)
    k = min(3, len(fr) - 1)
    precision, recall = precision_recall(fr, ff, k=k)
    train_px = tr["image"].numpy()
    share, idx, flags = memorisation(fake.numpy(), train_px)
    real_share, _, _ = memorisation(real["image"].numpy(), train_px)
    n = len(cases)
    metrics: dict[str, Any] = {
        "fid": _stat(fid, *np.percentile(boots, [2.5, 97.5]).tolist(), n),
        "kid": _stat(kid, kid - 1.96 * kid_sd, kid + 1.96 * kid_sd, n),
        "precision": _stat(precision, n=n),
        "recall": _stat(recall, n=n),
        "memorised_share": _stat(share, n=n),
        "real_heldout_memorised_share": _stat(real_share, n=n),
    }
    if plan.conditional:
        metrics.update(_tstr(run, model, enc, tr, real, seed))
    _, dist = _nearest(fake.numpy(), train_px, idx)
    names = plan.class_names
    rows = [
        {
            "case_id": f"sample_{i:05d}",
            "class": names[int(labels[i])] if labels is not None else "",
            "nearest_training": train[int(idx[i])].case_id,
            "distance": round(float(dist[i]), 6),
            "memorised": int(flags[i]),
        }
        for i in range(n)
    ]
    info = {
        "split": split,
        "real": n,
        "generated": n,
        "model": plan.model,
        "features": "the run's evaluation encoder (autoencoder trained on the real training split)",
    }
    write_picture_figures(
        run.eval_dir(split) / "figures", run, model, fake.numpy(), labels, train_px, idx, tr
    )
    return MetricTable(rows=rows, keys=["case_id"], info=info, pooled={"all": metrics})


def _nearest(samples: np.ndarray, train: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    diff = samples.reshape(len(samples), -1) - train[idx].reshape(len(samples), -1)
    return idx, np.sqrt((diff.astype(np.float64) ** 2).sum(1))


def _auc(y: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return math.nan
    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    return float(
        roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=list(range(probs.shape[1])))
    )


def _tstr(run: Run, model: torch.nn.Module, enc: torch.nn.Module, tr: dict, real: dict, seed: int) -> dict:
    """TSTR and TRTR AUC of a logistic regression on encoder features (see the module doc)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from medsight.tasks.synthesize.encoder import features
    from medsight.tasks.synthesize.sampling import sample

    y_train = tr["label"]
    fake = torch.from_numpy(sample(model, run, len(y_train), y_train, seed + 2))
    test_f, y_test = features(enc, real["image"]).numpy(), real["label"].numpy()
    out = {}
    for name, x, y in (
        ("tstr_auc", features(enc, fake).numpy(), y_train.numpy()),
        ("trtr_auc", features(enc, tr["image"]).numpy(), y_train.numpy()),
    ):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
        clf.fit(x, y)
        out[name] = _stat(_auc(y_test, clf.predict_proba(test_f)), n=len(y_test))
    return out


def quantile_map(src: np.ndarray, tgt: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Histogram matching learned on training brains: matching quantiles of source and target."""
    q = np.linspace(0, 1, QUANTILES)
    m = masks > 0
    return np.quantile(src[m], q), np.quantile(tgt[m], q)


def apply_map(x: np.ndarray, mapping: tuple[np.ndarray, np.ndarray], mask: np.ndarray) -> np.ndarray:
    src_q, tgt_q = mapping
    return np.where(mask > 0, np.interp(x, src_q, tgt_q), 0.0)


def _translation(
    run: Run, model: torch.nn.Module, cases: list[Case], train: list[Case], split: str
) -> MetricTable:
    from medsight.metrics.synthesis import translation_metrics
    from medsight.tasks.synthesize.figures import write_translation_panels

    plan = run.plan
    data, tr = stack(cases, plan), stack(train, plan)
    mapping = quantile_map(tr["image"].numpy(), tr["target"].numpy(), tr["mask"].numpy())
    with torch.inference_mode():
        pred = torch.cat([model.generator(data["image"][i : i + 32]) for i in range(0, len(cases), 32)])
    pred_np = pred.float().clamp(0, 1).numpy()[:, 0]
    src, tgt, mask = data["image"].numpy()[:, 0], data["target"].numpy()[:, 0], data["mask"].numpy()[:, 0]
    rows, baseline = [], []
    for i, case in enumerate(cases):
        hm = apply_map(src[i], mapping, mask[i])
        baseline.append(hm)
        ours = translation_metrics(pred_np[i], tgt[i], mask[i])
        base = translation_metrics(hm, tgt[i], mask[i])
        rows.append(
            {
                "case_id": case.case_id,
                **{k: round(v, 6) for k, v in ours.items()},
                **{f"hm_{k}": round(v, 6) for k, v in base.items()},
            }
        )
    pooled = {"all": {}}
    for key in rows[0]:
        if key == "case_id":
            continue
        mean, low, high = bootstrap_ci([r[key] for r in rows])
        pooled["all"][key] = {"mean": mean, "ci_low": low, "ci_high": high, "n": len(rows)}
    info = {
        "split": split,
        "cases": len(cases),
        "source": plan.source,
        "target": plan.target,
        "grid": list(plan.input_size),
        "baseline": "hm_*: source mapped by histogram matching",
    }
    write_translation_panels(
        run.eval_dir(split) / "figures", cases, src, pred_np, tgt, np.stack(baseline), rows
    )
    return MetricTable(rows=rows, keys=["case_id"], info=info, pooled=pooled)
