"""Is an input unlike the training data as the network sees it? A Mahalanobis distance on its features.

The image profile (:mod:`medsight.deploy.ood`) compares sizes and intensity statistics; this one compares
what the trained network makes of the image. At the end of training the run's training images are put on
the network's grid (the family's own preprocessing, as ``medsight attack`` puts them: the family's file
attacker offers ``network_input(image)``), their features taken at up to six layers (the inputs of evenly
spaced convolutions up to the penultimate layer, global-average-pooled; the layers of
:func:`medsight.robustness.detectors.default_layers`) and a Gaussian fitted to them: the mean and a
Ledoit-Wolf covariance, which stays invertible with fewer images than features. An input's score is its
Mahalanobis distance at each layer, divided by the layer's median distance on the training images and
averaged over the layers. The flag's threshold is the 99th percentile of the scores of the validation
images, or without a validation split of each training image against the fit on the others (leave-one-out).

Saved as ``RUN/input_features.npz``. Runs of families without ``network_input`` (detection, enhancement,
registration, synthesis) have no feature profile and are checked on image statistics only; so are exports
(ONNX Runtime has no hooks on the network's layers).

Example::

    check = FeatureCheck.load(run)          # None when the run has no feature profile
    check.score(image)                      # 1.3 (the flag threshold is check.threshold)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsight.errors import ConfigError, MedsightError

if TYPE_CHECKING:
    from medsight.io import Image
    from medsight.robustness.detectors import MahalanobisDetector
    from medsight.runs import Run

log = logging.getLogger(__name__)

FEATURES_FILE = "input_features.npz"
FLAG_QUANTILE = 0.99  # of the calibration scores: about 1% of in-distribution inputs flagged
MIN_THRESHOLD = 1.5  # in units of the training images' median distance: never flag closer than this


@dataclass
class FeatureProfile:
    """The training images' features per layer (mean, precision, median distance) and the threshold."""

    layers: list[str]
    means: dict[str, np.ndarray]
    precisions: dict[str, np.ndarray]
    scale: dict[str, float]
    threshold: float
    calibration: str  # "validation" or "training, leave-one-out (no validation split)"

    def detector(self, model: Any) -> MahalanobisDetector:
        from medsight.robustness.detectors import MahalanobisDetector

        detector = MahalanobisDetector(model, self.layers)
        detector.means, detector.precisions, detector.scale = self.means, self.precisions, self.scale
        return detector

    def save(self, folder: Path) -> Path:
        from medsight.utils import atomic_write

        arrays: dict[str, Any] = {
            "threshold": np.float64(self.threshold),
            "calibration": np.str_(self.calibration),
        }
        for i, layer in enumerate(self.layers):
            arrays |= {f"layer{i}": np.str_(layer), f"mean{i}": self.means[layer]}
            arrays |= {f"precision{i}": self.precisions[layer], f"scale{i}": np.float64(self.scale[layer])}
        path = Path(folder) / FEATURES_FILE
        return atomic_write(path, lambda tmp: _save_npz(tmp, arrays))

    @classmethod
    def load(cls, folder: Path) -> FeatureProfile | None:
        """The profile saved in ``folder``, None when there is none."""
        path = Path(folder) / FEATURES_FILE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                count = sum(1 for k in z.files if k.startswith("layer"))
                layers = [str(z[f"layer{i}"]) for i in range(count)]
                return cls(
                    layers=layers,
                    means={layer: z[f"mean{i}"] for i, layer in enumerate(layers)},
                    precisions={layer: z[f"precision{i}"] for i, layer in enumerate(layers)},
                    scale={layer: float(z[f"scale{i}"]) for i, layer in enumerate(layers)},
                    threshold=float(z["threshold"]),
                    calibration=str(z["calibration"]),
                )
        except (ValueError, KeyError, OSError) as exc:
            raise ConfigError(f"{path}: not a feature profile ({exc})") from exc


def _save_npz(path: Path, arrays: dict[str, Any]) -> None:
    with path.open("wb") as f:
        np.savez(f, **arrays)


class FeatureCheck:
    """A run's network and feature profile, loaded once: ``score(image)``, ``threshold``."""

    def __init__(self, view: Any, profile: FeatureProfile) -> None:
        self.view, self.profile = view, profile
        self.threshold = profile.threshold
        self._detector = profile.detector(view.model)

    @classmethod
    def load(cls, run: Run) -> FeatureCheck | None:
        """The check of ``run``, None when it has no feature profile (or its family no network view)."""
        profile = FeatureProfile.load(run.path)
        if profile is None:
            return None
        view = network_view(run)
        return None if view is None else cls(view, profile)

    def score(self, image: Image) -> float:
        """The image's mean scaled Mahalanobis distance over the profile's layers."""
        feats = image_features(self.view, self.profile.layers, [image])
        return float(self._detector.score_features(feats)[0])


def network_view(run: Run) -> Any | None:
    """The family's file attacker of ``run`` where it puts images on the network's grid
    (``network_input``), else None."""
    from medsight.task_registry import get_task

    try:
        view = get_task(run.config.task).file_attacker(run)
    except MedsightError:
        return None
    return view if hasattr(view, "network_input") and hasattr(view, "model") else None


def image_features(view: Any, layers: list[str], images: list[Image]) -> dict[str, np.ndarray]:
    """{layer: (len(images), D)}: each image's features, averaged over the tiles its network input has."""
    import torch

    from medsight.robustness.detectors import extract_features

    rows: list[dict[str, np.ndarray]] = []
    with torch.inference_mode():
        for image in images:
            x = view.network_input(image).float()
            feats = extract_features(view.model, view.model, layers, x)[1]
            rows.append({k: v.mean(axis=0) for k, v in feats.items()})
    return {k: np.stack([r[k] for r in rows]) for k in layers}


def fit_feature_profile(run: Run, fit: list[Image], calibration: list[Image] | None) -> Path | None:
    """Fit the feature profile of ``run`` (:func:`feature_profile`) into ``RUN/input_features.npz``;
    None, logged, when the family has no network view or the network no layers to read."""
    view = network_view(run)
    profile = feature_profile(view, fit, calibration) if view is not None else None
    if profile is None:
        log.info("%s: no network features to profile; inputs are checked on image statistics", run.path.name)
        return None
    log.info(
        "feature profile: %d layers, threshold %.2f (%s)",
        len(profile.layers),
        profile.threshold,
        profile.calibration,
    )
    return profile.save(run.path)


def feature_profile(view: Any, fit: list[Image], calibration: list[Image] | None) -> FeatureProfile | None:
    """The features of the ``fit`` images through ``view`` (``model``, ``network_input``), the threshold
    from the ``calibration`` images (None or empty: leave-one-out); None for fewer than two images or a
    network whose forward reaches no convolution or linear layer."""
    from medsight.robustness.detectors import MahalanobisDetector, default_layers

    if len(fit) < 2:
        return None
    try:
        layers = default_layers(view.model, multi=True)
        feats = image_features(view, layers, fit)
    except ConfigError:  # no such layers, or a forward that skips them (an anomaly model's frozen encoder)
        return None
    detector = MahalanobisDetector(view.model, layers).fit_features(feats, None)
    if calibration:
        scores = detector.score_features(image_features(view, layers, calibration))
    else:
        scores = np.array([_left_out_score(view.model, layers, feats, i) for i in range(len(fit))])
    threshold = max(MIN_THRESHOLD, float(np.quantile(scores, FLAG_QUANTILE)))
    source = "validation" if calibration else "training, leave-one-out (no validation split)"
    return FeatureProfile(layers, detector.means, detector.precisions, detector.scale, threshold, source)


def _left_out_score(model: Any, layers: list[str], feats: dict[str, np.ndarray], i: int) -> float:
    """Image ``i``'s score against the fit on the other images."""
    from medsight.robustness.detectors import MahalanobisDetector

    others = {k: np.delete(v, i, axis=0) for k, v in feats.items()}
    detector = MahalanobisDetector(model, layers).fit_features(others, None)
    score = detector.score_features({k: v[i : i + 1] for k, v in feats.items()})[0]
    return float(score) if math.isfinite(score) else 0.0
