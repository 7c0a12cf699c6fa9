"""Is an input unlike the training data? A profile of the training images, and a flag with its reason.

At the end of training the run's training images are described (size and spacing per axis, and per
channel the 0.5th, 50th and 99.5th intensity percentiles, the standard deviation and the fine detail:
the log of the mean absolute Laplacian, which sensor noise raises and blur or heavy compression move)
and the profile is saved as ``RUN/input_profile.json``: per descriptor the training median and a robust
spread (the larger of 1.4826 x the median absolute deviation and the 10-90% inter-quantile range / 2.563,
both robust estimates of one standard deviation; the second still sees the spread of a descriptor that is
saturated in most images, such as the 99.5th percentile of a photograph's red channel), floored so that
identical training images still allow small changes: a tenth in size, spacing or detail, 2% of the
intensity span or level. An input's score is its largest robust z over the descriptors; the flag's
threshold is the 99th percentile of the scores of the validation images (where the run has no validation
split, of each training image against the profile of the others: leave-one-out), and never below
``MIN_THRESHOLD``, so about 1% of inputs like the validation images are flagged. The reason names the
descriptor furthest out: ``"intensity 99.5th percentile of channel 0 3.1x the training median"``.

Where the run's family puts images on its network's grid, the network's own view is checked too
(:mod:`medsight.deploy.feature_profile`: a Mahalanobis distance on its features, ``feature_score``), and an
input is flagged when either check flags it (:class:`InputCheck`).

What it does not promise: an input that passes is not thereby like the training data in every way that
matters (the descriptors see sizes and intensity statistics, not anatomy), and a flagged input may still
be predicted well. It is a warning to look, not a verdict.

Example::

    profile = fit_profile(train_images, val_images)
    result = profile.check(image)         # OODResult(score=5.2, flagged=True, reason="size along ...")
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from medsight.errors import ConfigError

if TYPE_CHECKING:
    from medsight.data.spec import Case
    from medsight.deploy.feature_profile import FeatureCheck
    from medsight.io import Image
    from medsight.io.batch import ShardLike
    from medsight.runs import Run

log = logging.getLogger(__name__)

PROFILE_FILE = "input_profile.json"
FLAG_QUANTILE = 0.99  # of the calibration scores: about 1% of in-distribution inputs flagged
MIN_THRESHOLD = 3.5  # robust z: never flag closer than this, however tight the calibration
GEOMETRY_FLOOR = math.log(1.1)  # a tenth in size, spacing or detail is one robust unit at least
INTENSITY_FLOOR = 0.02  # of the training intensity span (median p99.5 - median p0.5)
MAX_VALUES = 4_000_000  # voxels per channel the intensity statistics (and the detail) are taken over
DECILE_SD = 2.563  # the 10-90% inter-quantile range of a normal distribution, in standard deviations
PERCENTILES = {"p0.5": 0.5, "p50": 50.0, "p99.5": 99.5}
WORDS = {
    "p0.5": "0.5th percentile",
    "p50": "median",
    "p99.5": "99.5th percentile",
    "std": "standard deviation",
}
LOG_KINDS = ("size", "spacing", "detail")  # descriptors stored as logs: compared as ratios


@dataclass
class OODResult:
    """One input against the profile: its score, whether it is flagged, and why."""

    score: float
    flagged: bool
    reason: str
    feature_score: float | None = None  # the network's features (:mod:`medsight.deploy.feature_profile`)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_features(self, score: float, threshold: float) -> OODResult:
        """This image-statistics result and the network's feature score together: flagged when either is
        beyond its threshold, the reason naming the features when they alone flag it."""
        score = round(score, 3) if math.isfinite(score) else float("inf")
        beyond = not score <= threshold
        if beyond and not self.flagged:
            ratio = score / threshold if threshold > 0 else float("inf")
            reason = f"the network's features {ratio:.1f}x the flag threshold (Mahalanobis); {self.reason}"
        elif beyond:
            reason = f"{self.reason}; the network's features too"
        else:
            reason = self.reason
        return OODResult(self.score, self.flagged or beyond, reason, score)


class InputCheck:
    """What ``predict`` and ``serve`` check each input with: the image profile of a run or an export, and
    the network's feature profile where a run (not an export) has one."""

    def __init__(self, profile: InputProfile, features: FeatureCheck | None = None) -> None:
        self.profile, self.features = profile, features

    @classmethod
    def load(cls, folder: Path, run: Run | None = None) -> InputCheck | None:
        """The check saved in ``folder`` (a run, given as ``run`` too, or an export); None without one."""
        from medsight.deploy.feature_profile import FeatureCheck

        profile = InputProfile.load(folder)
        if profile is None:
            return None
        return cls(profile, FeatureCheck.load(run) if run is not None else None)

    def check(self, image: Image) -> OODResult:
        from medsight.errors import MedsightError

        result = self.profile.check(image)
        if self.features is None or not math.isfinite(result.score):
            return result
        try:
            score = self.features.score(image)
        except MedsightError as exc:  # an image the network cannot take: its statistics still speak
            log.warning("network features not checked: %s", exc)
            return result
        return result.with_features(score, self.features.threshold)


def describe_image(image: Image) -> dict[str, float]:
    """The descriptors of one image: ``size i`` / ``spacing i`` (logs) per axis, and per channel ``c``
    ``p0.5 c``, ``p50 c``, ``p99.5 c`` and ``std c`` of its intensities and ``detail c`` (a log)."""
    out = {f"size {i}": math.log(s) for i, s in enumerate(image.shape)}
    out |= {f"spacing {i}": math.log(max(s, 1e-6)) for i, s in enumerate(image.spacing)}
    for c in range(image.channels):
        values = np.asarray(image.array[c], dtype=np.float32).ravel()
        values = values[:: max(1, values.size // MAX_VALUES)]  # a regular subsample of big volumes
        values = values[np.isfinite(values)]
        if values.size == 0:
            values = np.zeros(1, dtype=np.float32)
        for name, q in PERCENTILES.items():
            out[f"{name} {c}"] = float(np.percentile(values, q))
        out[f"std {c}"] = float(values.std())
        out[f"detail {c}"] = fine_detail(np.asarray(image.array[c], dtype=np.float32))
    return out


def fine_detail(channel: np.ndarray) -> float:
    """The log of the mean absolute Laplacian of one channel (its central block of at most MAX_VALUES
    voxels, so big volumes cost no more): high-frequency energy, raised by noise, lowered by blur."""
    from scipy import ndimage

    side = max(3, int(MAX_VALUES ** (1 / channel.ndim)))
    block = tuple(slice(max(0, (n - side) // 2), max(0, (n - side) // 2) + side) for n in channel.shape)
    values = np.nan_to_num(channel[block], nan=0.0, posinf=0.0, neginf=0.0)
    return math.log(float(np.mean(np.abs(ndimage.laplace(values)))) + 1e-6)


class InputProfile(BaseModel):
    """The training images' descriptors (median and robust spread each) and the flag's threshold."""

    model_config = ConfigDict(extra="forbid")
    names: list[str]
    median: list[float]
    spread: list[float]
    threshold: float
    fitted_on: int
    calibrated_on: int
    calibration: str  # "validation" or "training, leave-one-out (no validation split)"

    def scores(self, descriptors: dict[str, float]) -> np.ndarray:
        missing = [n for n in self.names if n not in descriptors]
        if missing:  # another dimensionality or channel count: as far out as it gets
            return np.full(len(self.names), np.inf)
        values = np.array([descriptors[n] for n in self.names])
        return np.abs(values - np.array(self.median)) / np.array(self.spread)

    def check(self, image: Image) -> OODResult:
        """Score one image and say why it is (or is not) flagged."""
        descriptors = describe_image(image)
        z = self.scores(descriptors)
        worst = int(np.argmax(z))
        score = float(z[worst])
        if not np.isfinite(score):
            reason = f"shape {list(image.shape)} with {image.channels} channel(s) unlike every training image"
            return OODResult(score=float("inf"), flagged=True, reason=reason)
        reason = self._reason(self.names[worst], descriptors[self.names[worst]], self.median[worst], score)
        return OODResult(score=round(score, 3), flagged=score > self.threshold, reason=reason)

    def _reason(self, name: str, value: float, median: float, z: float) -> str:
        kind, _, index = name.partition(" ")
        if kind in ("size", "spacing"):
            what = f"{kind} along axis {index}"
            return f"{what} {math.exp(value - median):.2f}x the training median (robust z {z:.1f})"
        if kind == "detail":
            what = f"fine detail (mean absolute Laplacian) of channel {index}"
            return f"{what} {math.exp(value - median):.2f}x the training median (robust z {z:.1f})"
        what = f"intensity {WORDS[kind]} of channel {index}"
        if abs(median) > 1e-6 and value / median > 0:
            return f"{what} {value / median:.2f}x the training median (robust z {z:.1f})"
        return f"{what} {value:.4g} vs the training median {median:.4g} (robust z {z:.1f})"

    def save(self, folder: Path) -> Path:
        from medsight.utils import atomic_write_text

        path = Path(folder) / PROFILE_FILE
        atomic_write_text(path, json.dumps(self.model_dump(), indent=2))
        return path

    @classmethod
    def load(cls, folder: Path) -> InputProfile | None:
        """The profile saved in ``folder`` (a run or an export), None when there is none."""
        path = Path(folder) / PROFILE_FILE
        if not path.is_file():
            return None
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{path}: not an input profile ({exc})") from exc


def fit_profile(fit: Iterable[Image], calibration: Iterable[Image] | None = None) -> InputProfile:
    """The profile of the ``fit`` images, its threshold from the ``calibration`` images (default: ``fit``).

    Raises:
        ConfigError: no images to fit on.
    """
    rows = [describe_image(im) for im in fit]
    if not rows:
        raise ConfigError("input profile: no training images to describe")
    names = sorted(set.intersection(*(set(r) for r in rows)))
    table = np.array([[r[n] for n in names] for r in rows])
    profile = _profile_of(names, table)
    held_out = [describe_image(im) for im in calibration] if calibration is not None else []
    if held_out:
        scores = [float(profile.scores(r).max()) for r in held_out]
    else:
        scores = _leave_one_out_scores(names, table, rows)
    threshold = max(MIN_THRESHOLD, float(np.quantile(scores, FLAG_QUANTILE)))
    source = "validation" if held_out else "training, leave-one-out (no validation split)"
    return profile.model_copy(
        update={"threshold": threshold, "calibrated_on": len(scores), "calibration": source}
    )


def _leave_one_out_scores(names: list[str], table: np.ndarray, rows: list[dict[str, float]]) -> list[float]:
    """The score of each training image against the profile of the others (0 for a lone image)."""
    if len(rows) < 2:
        return [0.0]
    return [
        float(_profile_of(names, np.delete(table, i, axis=0)).scores(r).max()) for i, r in enumerate(rows)
    ]


def _profile_of(names: list[str], table: np.ndarray) -> InputProfile:
    """Median and robust spread of each descriptor (a column of ``table``), not yet calibrated."""
    median = np.median(table, axis=0)
    mad = 1.4826 * np.median(np.abs(table - median), axis=0)
    low, high = np.quantile(table, [0.1, 0.9], axis=0) if len(table) > 1 else (median, median)
    spread = np.maximum.reduce([mad, (high - low) / DECILE_SD, _floors(names, median)])
    return InputProfile(
        names=names,
        median=median.tolist(),
        spread=spread.tolist(),
        threshold=MIN_THRESHOLD,
        fitted_on=len(table),
        calibrated_on=0,
        calibration="",
    )


def _floors(names: list[str], median: np.ndarray) -> np.ndarray:
    """The smallest spread of each descriptor: GEOMETRY_FLOOR for sizes and spacings, INTENSITY_FLOOR of
    its channel's training intensity span (or median level, for constant images) for intensities."""
    by_name = dict(zip(names, median, strict=True))
    floors = []
    for name in names:
        kind, _, channel = name.partition(" ")
        if kind in LOG_KINDS:
            floors.append(GEOMETRY_FLOOR)
            continue
        span = abs(by_name.get(f"p99.5 {channel}", 1.0) - by_name.get(f"p0.5 {channel}", 0.0))
        level = abs(by_name.get(f"p50 {channel}", 0.0))  # constant training images have no span
        floors.append(INTENSITY_FLOOR * max(span, level, 1e-6))
    return np.array(floors)


# --------------------------------------------------------------------------- runs and predictions
MAX_FIT_IMAGES = 300  # training (and validation) images described for a profile, evenly spaced beyond


def fit_run_profile(run: Run) -> Path | None:
    """Describe the run's training images (calibrated on its validation cases) into
    ``RUN/input_profile.json``, and the network's features of them into ``RUN/input_features.npz``;
    None, logged, when the run's family gives no training cases."""
    from medsight.deploy.feature_profile import fit_feature_profile
    from medsight.task_registry import get_task

    train, val = get_task(run.config.task).fit_cases(run)
    if not train:
        log.info("%s: no training cases to profile; predictions are not checked against them", run.path.name)
        return None
    fit = [case_image(c) for c in _every_nth(train, MAX_FIT_IMAGES)]
    calibration = [case_image(c) for c in _every_nth(val, MAX_FIT_IMAGES)] or None
    profile = fit_profile(fit, calibration)
    log.info(
        "input profile: %d training images, threshold %.2f (%s)",
        len(fit),
        profile.threshold,
        profile.calibration,
    )
    fit_feature_profile(run, fit, calibration)  # RUN/input_features.npz, where the family has a network view
    return profile.save(run.path)


def case_image(case: Case) -> Image:
    """The image of a dataset case: its in-memory array, or its channel files stacked."""
    from medsight.data.inputs import stack_channels
    from medsight.io import Image, read_image

    if case.array is not None:
        return Image.from_array(np.asarray(case.array, dtype=np.float32))
    return stack_channels([read_image(p) for p in case.images])


def flag_inputs(
    folder: Path,
    input: Path,
    output: Path,
    in_channels: int,
    shard: ShardLike = None,
    run: Run | None = None,
) -> Path | None:
    """Check every input of a prediction against the profile in ``folder`` (a run, given as ``run`` too
    for its network's features, or an export): a log line for each flagged input, and ``ood.csv`` (case,
    score, flagged, reason, feature_score) in the output folder (beside an output file:
    ``<name>.ood.csv``; a shard I/N: ``ood-I-of-N.csv``). None without a profile."""
    from medsight.errors import MedsightError
    from medsight.io.batch import resolve_shard

    profile = InputCheck.load(folder, run)
    if profile is None:
        return None
    part = resolve_shard(shard)
    rows = []
    try:
        images = dict(_input_images(input, in_channels))
    except MedsightError as exc:  # the prediction itself succeeded: say so, do not fail it
        log.warning("inputs not checked against the training images: %s", exc)
        return None
    for case_id in part.select(images):
        result = profile.check(images[case_id])
        if result.flagged:
            log.warning("%s: unlike the training images: %s", case_id, result.reason)
        rows.append({"case": case_id, **result.to_dict()})
    path = _write_rows(rows, _csv_path(output, part.index, part.count))
    flagged = sum(r["flagged"] for r in rows)
    log.info("inputs against the training images: %d of %d unlike them (%s)", flagged, len(rows), path)
    return path


def _input_images(source: Path, in_channels: int) -> Iterator[tuple[str, Image]]:
    """(case id, image) of every input of a prediction: channel files grouped by case (a DICOM series
    folder is one case), or the samples of a CSV manifest or of a folder with class subfolders."""
    from medsight.data.inputs import group_inputs, input_samples, is_dicom_folder, stack_channels
    from medsight.io import read_image

    nested = source.is_dir() and any(p.is_dir() and not is_dicom_folder(p) for p in source.iterdir())
    if nested or source.suffix.lower() == ".csv":
        groups = {case.case_id: list(case.images) for case in input_samples(source)}
    else:
        groups = group_inputs(source, in_channels)
    for case_id, files in groups.items():
        yield case_id, stack_channels([read_image(p) for p in files])


def _csv_path(output: Path, index: int, count: int) -> Path:
    from medsight.io.readers import split_suffix

    stem, suffix = split_suffix(output)
    name = "ood.csv" if count == 1 else f"ood-{index + 1}-of-{count}.csv"
    if suffix:  # one output file
        return output.parent / f"{Path(stem).name}.{name}"
    return output / name


def _write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    import csv
    import io

    from medsight.utils import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=["case", "score", "flagged", "reason", "feature_score"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    if (
        not path.is_file() or path.read_text(encoding="utf-8") != buffer.getvalue()
    ):  # a resumed run: as it was
        atomic_write_text(path, buffer.getvalue())
    return path


def _every_nth(items: list[Any], limit: int) -> list[Any]:
    return items[:: max(1, math.ceil(len(items) / limit))]
