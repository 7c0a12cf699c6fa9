"""The report's figures of a synthesis run (matplotlib, Agg canvas), into ``eval/<split>/figures``:
a sample grid per class, a few samples beside their nearest training picture, latent interpolations
(VAE), and translation panels (source, ours, histogram matching, reference, error)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.utils import atomic_write

GRID = 16  # samples per class grid
NEAREST = 6
STEPS = 8  # interpolation steps
PANELS = 2  # best and worst translations each


def _show(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """A ``(C, H, W)`` picture as imshow wants it (grey for one channel, RGB for three, else channel 0)."""
    if img.shape[0] == 3:
        return np.moveaxis(np.clip(img, 0, 1), 0, -1), None
    return img[0], "gray"


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _grid(images: list[np.ndarray], titles: list[str], cols: int, title: str, path: Path) -> None:
    from matplotlib.figure import Figure

    rows = max(1, -(-len(images) // cols))
    fig = Figure(figsize=(1.3 * cols, 1.4 * rows + 0.4), dpi=90, layout="constrained")
    for i, (img, t) in enumerate(zip(images, titles, strict=True)):
        ax = fig.add_subplot(rows, cols, i + 1)
        arr, cmap = _show(img)
        ax.imshow(arr, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(t, fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def write_picture_figures(
    folder: Path,
    run: Any,
    model: torch.nn.Module,
    fake: np.ndarray,
    labels: torch.Tensor | None,
    train: np.ndarray,
    nearest: np.ndarray,
    tr: dict[str, torch.Tensor],
) -> None:
    """Sample grids, nearest training pictures and (VAE) interpolations of generated pictures."""
    plan = run.plan
    groups = (
        {name: np.flatnonzero(labels.numpy() == k) for k, name in enumerate(plan.class_names)}
        if labels is not None
        else {"all": np.arange(len(fake))}
    )
    for name, idx in groups.items():
        picks = idx[:GRID]
        if len(picks):
            _grid(
                [fake[i] for i in picks],
                [f"#{i}" for i in picks],
                8,
                f"generated: {name}",
                folder / f"samples-{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-')}.png",
            )
    picks = np.arange(min(NEAREST, len(fake)))
    images, titles = [], []
    for i in picks:
        images += [fake[i], train[nearest[i]]]
        titles += [f"sample #{i}", "nearest training"]
    _grid(
        images,
        titles,
        4,
        "generated pictures beside their nearest training picture (pixels)",
        folder / "nearest-training.png",
    )
    if plan.model == "vae" and len(tr["image"]) >= 2:
        _interpolation(folder, model, tr["image"])


@torch.inference_mode()
def _interpolation(folder: Path, model: torch.nn.Module, x: torch.Tensor) -> None:
    rows = min(3, len(x) // 2)
    images, titles = [], []
    for r in range(rows):
        mu, _ = model.net.encode_forward(x[[2 * r, 2 * r + 1]])
        for t in np.linspace(0, 1, STEPS):
            z = (1 - float(t)) * mu[:1] + float(t) * mu[1:]
            images.append(model.net.decode_forward(z)[0].float().numpy())
            titles.append(f"t={t:.2f}")
    _grid(
        images,
        titles,
        STEPS,
        "VAE latent interpolation between two training pictures",
        folder / "interpolation.png",
    )


def write_translation_panels(
    folder: Path,
    cases: list[Any],
    src: np.ndarray,
    pred: np.ndarray,
    tgt: np.ndarray,
    baseline: np.ndarray,
    rows: list[dict[str, Any]],
) -> None:
    """Panels of the best and worst translated slices by SSIM."""
    from matplotlib.figure import Figure

    order = np.argsort([-(r["ssim"] if np.isfinite(r["ssim"]) else -1) for r in rows])
    picks = [("best", i) for i in order[:PANELS]] + [("worst", i) for i in order[::-1][:PANELS]]
    for kind, i in dict.fromkeys(picks):
        fig = Figure(figsize=(11, 2.6), dpi=90, layout="constrained")
        panels = {
            "source": src[i],
            "ours": pred[i],
            "histogram matching": baseline[i],
            "reference": tgt[i],
            "|ours - reference|": np.abs(pred[i] - tgt[i]),
        }
        for j, (name, img) in enumerate(panels.items()):
            ax = fig.add_subplot(1, len(panels), j + 1)
            ax.imshow(img, cmap="inferno" if name.startswith("|") else "gray", vmin=0, vmax=1)
            ax.set_title(name, fontsize=9)
            ax.axis("off")
        fig.suptitle(
            f"{kind}: {cases[i].case_id} (SSIM {rows[i]['ssim']:.3f}, PSNR {rows[i]['psnr']:.1f} dB)",
            fontsize=10,
        )
        _save(fig, folder / f"{kind}-{cases[i].case_id}.png")
