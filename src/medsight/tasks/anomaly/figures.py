"""PNG figures of an anomaly evaluation: the score histogram of normal vs anomalous cases
(``eval/<split>/score-histogram.png``) and the most anomalous cases beside their maps
(``eval/<split>/maps/``). Drawn with matplotlib's object API on the Agg canvas, imported inside the
functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medsight.data.spec import Case
from medsight.report.plots import _png_bytes
from medsight.utils import atomic_write

N_SHOWN = 4


def _save(path: Path, png: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(png))


def histogram_png(scores: np.ndarray, y: np.ndarray) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2))
    ax = fig.add_subplot()
    bins = np.histogram_bin_edges(scores, bins=30)
    for label, name in ((0, "normal"), (1, "anomalous")):
        if (y == label).any():
            ax.hist(scores[y == label], bins=bins, alpha=0.6, label=f"{name} ({int((y == label).sum())})")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("cases")
    ax.legend()
    fig.tight_layout()
    return _png_bytes(fig)


def case_png(image: np.ndarray, heat: np.ndarray, title: str) -> bytes:
    """The image (first channel; 3D: middle slice) beside its anomaly map."""
    from matplotlib.figure import Figure

    img, hm = image[0], heat[0]
    if img.ndim == 3:
        img, hm = img[..., img.shape[-1] // 2], hm[..., hm.shape[-1] // 2]
    fig = Figure(figsize=(5, 2.8))
    for k, (arr, cmap, name) in enumerate(((img, "gray", "image"), (hm, "inferno", "anomaly map"))):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.imshow(arr, cmap=cmap)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    return _png_bytes(fig)


def write_figures(
    folder: Path, x: torch.Tensor, maps: np.ndarray, scores: np.ndarray, y: np.ndarray, cases: list[Case]
) -> None:
    """The histogram and the N_SHOWN highest-scoring cases of one evaluation."""
    _save(folder / "score-histogram.png", histogram_png(scores, y))
    for rank, i in enumerate(np.argsort(-scores)[:N_SHOWN]):
        kind = "anomalous" if y[i] else "normal"
        title = f"{cases[i].case_id} ({kind}): score {scores[i]:.4g}"
        name = f"{rank + 1}-{cases[i].case_id}".replace("/", "_")
        _save(folder / "maps" / f"{name}.png", case_png(x[i].numpy(), maps[i], title))
