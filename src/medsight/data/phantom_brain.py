"""A synthetic head MRI in four contrasts (T1, T1c, T2, FLAIR) with a BraTS-like glioma.

Tissues (scalp, skull, CSF, grey matter with folded boundary, white matter, ventricles) are nested
deformed ellipsoids; each contrast gives them its own intensity (CSF dark in T1 and FLAIR, bright in
T2; the enhancing rim bright only after contrast). A smooth bias field, partial-volume blur and
Rician noise differ per case. The tumour has a necrotic core (label 1), edema (2) and an enhancing
rim (3, BraTS's 4), placed at random inside the white matter.
"""

from __future__ import annotations

import numpy as np

CHANNELS = ("T1", "T1c", "T2", "FLAIR")
# tissue:        bg    scalp  skull  CSF   GM    WM    necro  edema  enh
_CONTRAST = np.array(
    [
        [0.00, 0.90, 0.10, 0.20, 0.55, 0.75, 0.25, 0.45, 0.55],  # T1
        [0.00, 0.90, 0.10, 0.22, 0.57, 0.76, 0.25, 0.47, 1.00],  # T1c
        [0.00, 0.55, 0.08, 1.00, 0.70, 0.50, 0.90, 0.85, 0.65],  # T2
        [0.00, 0.60, 0.08, 0.10, 0.60, 0.45, 0.30, 0.95, 0.70],  # FLAIR
    ]
)
BG, SCALP, SKULL, CSF, GM, WM, NECRO, EDEMA, ENH = range(9)


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: int = 5) -> np.ndarray:
    """Smooth random field, zero mean and unit std: coarse Gaussian noise upsampled by cubic splines."""
    from scipy import ndimage

    low = rng.normal(size=(coarse,) * len(shape))
    field = ndimage.zoom(low, [s / coarse for s in shape], order=3, mode="reflect")[
        tuple(slice(0, s) for s in shape)
    ]
    return (field - field.mean()) / (field.std() + 1e-8)


def _tissues(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Tissue index map and the normalised head radius (1 at the scalp surface)."""
    ax = np.linspace(-1, 1, size)
    x, y, z = np.meshgrid(ax, ax, ax, indexing="ij")
    radii = np.array([0.72, 0.86, 0.76]) * rng.uniform(0.92, 1.05, size=3)
    shift = rng.normal(0, 0.03, size=3)
    e = np.sqrt(
        ((x - shift[0]) / radii[0]) ** 2 + ((y - shift[1]) / radii[1]) ** 2 + ((z - shift[2]) / radii[2]) ** 2
    )
    e = e + 0.02 * smooth_field(rng, e.shape, 4)
    folds = 0.035 * smooth_field(rng, e.shape, max(6, size // 4))
    t = np.full(e.shape, BG, dtype=np.uint8)
    t[e <= 1.0] = SCALP
    t[e <= 0.92] = SKULL
    t[e <= 0.84] = CSF
    t[e <= 0.80 + 0.3 * folds] = GM
    t[e <= 0.68 + folds] = WM
    vent = np.zeros(e.shape, dtype=bool)
    for side in (-1.0, 1.0):
        vx, vy, vz = side * 0.12 * radii[0] + shift[0], 0.05 + shift[1], 0.08 + shift[2]
        vent |= ((x - vx) / 0.09) ** 2 + ((y - vy) / (0.35 * radii[1])) ** 2 + ((z - vz) / 0.16) ** 2 <= 1
    t[vent & (e < 0.6)] = CSF
    return t, e


def _tumour(rng: np.random.Generator, tissue: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Paint necrosis / edema / enhancing rim into ``tissue``; return the label map (0..3)."""
    size = tissue.shape[0]
    inside = np.argwhere((tissue == WM) & (e < 0.5))
    centre = inside[rng.integers(len(inside))] if len(inside) else np.array([size // 2] * 3)
    idx = np.indices(tissue.shape).astype(np.float64)
    dist = np.sqrt(sum((idx[i] - centre[i]) ** 2 for i in range(3))) / size * 2  # in head units
    r = rng.uniform(0.12, 0.22)
    d_t = dist / r + 0.25 * smooth_field(rng, tissue.shape, 6)
    d_e = dist / (r * rng.uniform(1.6, 2.3)) + 0.3 * smooth_field(rng, tissue.shape, 6)
    brain = np.isin(tissue, (GM, WM))
    label = np.zeros(tissue.shape, dtype=np.uint8)
    label[(d_e <= 1.0) & brain] = 2
    core = rng.uniform(0.35, 0.7)
    label[d_t <= 1.0] = 3
    label[d_t <= core] = 1
    tissue[label == 2] = EDEMA
    tissue[label == 3] = ENH
    tissue[label == 1] = NECRO
    return label


def brain_case(rng: np.random.Generator, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic case: ``(float32 (4, S, S, S) T1/T1c/T2/FLAIR, uint8 (S, S, S) labels 0..3)``."""
    from scipy import ndimage

    tissue, e = _tissues(rng, size)
    label = _tumour(rng, tissue, e)
    table = _CONTRAST * rng.uniform(0.95, 1.05, size=_CONTRAST.shape)
    table[:, BG] = 0.0
    bias = np.exp(0.12 * smooth_field(rng, tissue.shape, 3))
    out = np.empty((len(CHANNELS), *tissue.shape), dtype=np.float32)
    for c in range(len(CHANNELS)):
        img = ndimage.gaussian_filter(table[c][tissue], 0.6) * bias
        sigma = rng.uniform(0.015, 0.035)
        noisy = np.hypot(img + rng.normal(0, sigma, img.shape), rng.normal(0, sigma, img.shape))  # Rician
        out[c] = noisy * rng.uniform(700, 1100)
    return out, label
