"""A synthetic colour fundus photograph with a branching vessel tree (for demos and tests).

The picture has what makes DRIVE hard, in small: a circular field of view, uneven illumination, an
optic disc and a darker macula, vessels from ~4 px down to ~1 px wide whose contrast fades with
their width, a camera blur and noise. Vessels are darkest in the green channel, as in real fundi.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class _Segment:
    x0: float
    y0: float
    x1: float
    y1: float
    radius: float
    contrast: float


def _grow(
    rng: np.random.Generator,
    start: tuple[float, float],
    angle: float,
    width: float,
    size: int,
    target: float,
    contrast: float,
    out: list[_Segment],
    budget: int = 900,
) -> None:
    """Grow one vessel from ``start``: a curving walk that thins, branches and stops at the edge."""
    stack = [(start[0], start[1], angle, width)]
    step = max(1.5, size * 0.025)
    centre = (size - 1) / 2
    while stack and len(out) < budget:
        x, y, a, w = stack.pop()
        for _ in range(400):
            if w < 0.9 or np.hypot(x - centre, y - centre) > size * 0.47 or len(out) >= budget:
                break
            a += rng.normal(0.0, 0.1) + 0.07 * np.sin(target - a)  # wander, drift towards the target heading
            nx, ny = x + step * np.cos(a), y + step * np.sin(a)
            out.append(_Segment(x, y, nx, ny, w / 2, contrast * min(1.0, (w / 3.0) ** 0.5)))
            if rng.random() < 0.10:
                side = rng.choice([-1.0, 1.0])
                stack.append((nx, ny, a + side * rng.uniform(0.5, 1.1), w * rng.uniform(0.55, 0.75)))
                w *= 0.92
            x, y, w = nx, ny, w * 0.99


def _vessel_maps(segments: list[_Segment], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Darkening (0..1) and label (bool) maps: label where a pixel centre is within a vessel's radius."""
    dark = np.zeros((size, size))
    label = np.zeros((size, size), dtype=bool)
    for s in segments:
        r = s.radius
        lo_x, hi_x = int(max(0, min(s.x0, s.x1) - 2 * r - 2)), int(min(size, max(s.x0, s.x1) + 2 * r + 3))
        lo_y, hi_y = int(max(0, min(s.y0, s.y1) - 2 * r - 2)), int(min(size, max(s.y0, s.y1) + 2 * r + 3))
        if lo_x >= hi_x or lo_y >= hi_y:
            continue
        yy, xx = np.mgrid[lo_y:hi_y, lo_x:hi_x].astype(np.float64)
        dx, dy = s.x1 - s.x0, s.y1 - s.y0
        t = np.clip(((xx - s.x0) * dx + (yy - s.y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
        d = np.hypot(xx - (s.x0 + t * dx), yy - (s.y0 + t * dy))
        profile = s.contrast * np.exp(-0.5 * (d / max(0.6 * r, 0.35)) ** 2)
        dark[lo_y:hi_y, lo_x:hi_x] = np.maximum(dark[lo_y:hi_y, lo_x:hi_x], profile)
        label[lo_y:hi_y, lo_x:hi_x] |= d <= max(r, 0.5)
    return dark, label


def _tree(rng: np.random.Generator, size: int, disc: tuple[float, float], temporal: float) -> list[_Segment]:
    """Arcades from the optic disc: two temporal pairs arching round the macula, nasal branches."""
    segments: list[_Segment] = []
    w0 = size / 128 * rng.uniform(3.2, 4.2)
    for vertical in (-1.0, 1.0):
        for kind, contrast in (("artery", rng.uniform(0.45, 0.6)), ("vein", rng.uniform(0.6, 0.8))):
            a = temporal + vertical * rng.uniform(1.2, 1.5)
            width = w0 * (0.8 if kind == "artery" else 1.0)
            _grow(rng, disc, a, width, size, temporal + vertical * 0.35, contrast, segments)
        for _ in range(2):
            a = (temporal + np.pi) + vertical * rng.uniform(0.2, 1.2)
            _grow(rng, disc, a, w0 * rng.uniform(0.5, 0.75), size, a, rng.uniform(0.4, 0.7), segments)
    return segments


def fundus_case(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic fundus: ``(rgb uint8 (3, H, W), vessel label uint8 (H, W), fov uint8 (H, W))``."""
    from scipy import ndimage

    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r = np.hypot(xx - c, yy - c) / (size / 2)
    fov = r < rng.uniform(0.9, 0.96)
    side = rng.choice([-1.0, 1.0])  # left or right eye
    disc = (c + side * size * rng.uniform(0.2, 0.27), c + size * rng.normal(0, 0.03))
    temporal = 0.0 if side < 0 else np.pi  # the macula lies on the other side of the centre
    macula = (c - side * size * 0.12, c + size * rng.normal(0, 0.02))
    base = np.array([rng.uniform(0.7, 0.9), rng.uniform(0.3, 0.45), rng.uniform(0.1, 0.18)])
    tilt = rng.normal(0, 0.15, size=2)
    light = 1.0 - rng.uniform(0.25, 0.45) * r**2 + tilt[0] * (xx - c) / size + tilt[1] * (yy - c) / size
    d_disc = np.hypot(xx - disc[0], yy - disc[1]) / (size * 0.06)
    d_mac = np.hypot(xx - macula[0], yy - macula[1]) / (size * 0.1)
    img = base[:, None, None] * light[None] * (1 - 0.35 * np.exp(-(d_mac**2)))[None]
    img = img + np.array([0.25, 0.4, 0.3])[:, None, None] * np.exp(-(d_disc**4))[None]
    dark, label = _vessel_maps(_tree(rng, size, disc, temporal), size)
    img = img * (1 - dark[None] * np.array([0.4, 0.8, 0.5])[:, None, None])
    img = ndimage.gaussian_filter(img, sigma=(0, 0.6, 0.6))
    img = img + rng.normal(0, rng.uniform(0.01, 0.03), size=img.shape)
    img = np.where(fov[None], img, 0.02 + rng.normal(0, 0.005, size=img.shape))
    rgb = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    return rgb, (label & fov).astype(np.uint8), fov.astype(np.uint8)
