"""Dataset fingerprint: what planning needs to know, from one pass over the data (cached on disk).

Per case: shape, spacing, channels, the shape after cropping to the non-zero region, voxels per
class. Per channel, as nnU-Net does: intensities sampled from voxels inside the label foreground,
pooled over cases, summarised as mean, std, median, min, max and the 0.5 / 99.5 percentiles.
Dataset level: median shape and spacing, anisotropy, dimensionality, modality per channel, class
presence, and the validation issues met on the way.

Example::

    fp = fingerprint_dataset(load_dataset("drive"))
    fp.intensity[1].percentile_99_5, fp.median_spacing, fp.issues
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from medsight.data.loader import load_dataset
from medsight.data.spec import Case, DatasetSpec
from medsight.data.validate import DataIssue, dataset_issues, inspect_all, inspect_case
from medsight.errors import ConfigError, DataError
from medsight.utils import atomic_write_text, shared_data_root

FINGERPRINT_VERSION = 1
TOTAL_SAMPLES_PER_CHANNEL = 1_000_000
MAX_SAMPLES_PER_CASE = 10_000
MIN_SAMPLES_PER_CASE = 200

_MR_NAMES = {
    "MR",
    "MRI",
    "T1",
    "T1C",
    "T1CE",
    "T1GD",
    "T1N",
    "T2",
    "T2W",
    "T2F",
    "FLAIR",
    "ADC",
    "DWI",
    "PD",
    "SWI",
}
_RGB_NAMES = {"R", "G", "B", "RGB", "RED", "GREEN", "BLUE", "RGB_TO_0_1"}


def channel_modality(name: str) -> str:
    """The modality family of a channel name: "CT", "MR", "RGB", "EM", or the name itself."""
    key = name.strip().upper()
    if key == "CT":
        return "CT"
    if key in _RGB_NAMES:
        return "RGB"
    if key in _MR_NAMES or key.startswith(("T1", "T2")):
        return "MR"
    return key if key else "unknown"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntensityStats(_Model):
    """Intensity summary of one channel over the sampled voxels."""

    mean: float
    std: float
    median: float
    min: float
    max: float
    percentile_00_5: float
    percentile_99_5: float
    n_samples: int


class CaseFingerprint(_Model):
    """What one training case looks like."""

    case_id: str
    shape: list[int]
    spacing: list[float]
    channels: int
    cropped_shape: list[int]
    class_voxels: dict[int, int]


class ClassStats(_Model):
    """How often and how large one class is across training cases."""

    name: str
    value: int
    cases_present: int
    fraction_present: float
    mean_voxel_fraction: float


class IssueRecord(_Model):
    case_id: str
    field: str
    message: str


class Fingerprint(_Model):
    """The dataset fingerprint (see the module doc); ``to_json`` / ``from_json`` round-trip it."""

    version: int = FINGERPRINT_VERSION
    name: str
    dim: int
    num_train: int
    num_test: int
    num_channels: int
    channel_names: dict[int, str]
    modality: dict[int, str]
    labels: dict[str, int]
    regions: dict[str, list[int]] | None = None
    median_shape: list[float]
    min_shape: list[int]
    max_shape: list[int]
    median_spacing: list[float]
    anisotropy: float
    intensity: dict[int, IntensityStats]
    intensity_source: Literal["foreground", "all"]
    classes: list[ClassStats]
    cases: list[CaseFingerprint]
    issues: list[IssueRecord]
    cache_key: str = ""

    @property
    def data_issues(self) -> list[DataIssue]:
        return [DataIssue(i.case_id, i.field, i.message) for i in self.issues]

    def summary_lines(self) -> list[str]:
        """What ``medsight fingerprint`` prints: sizes, spacing, intensities, classes, every problem."""
        lines = [
            f"dataset {self.name}: {self.num_train} training / {self.num_test} test cases, {self.dim}D, "
            f"{self.num_channels} channel(s) {self.channel_names}",
            f"  shape median {self.median_shape} (min {self.min_shape}, max {self.max_shape})",
            f"  spacing median {self.median_spacing}, anisotropy {self.anisotropy:.2f}",
        ]
        for c, st in self.intensity.items():
            lines.append(
                f"  channel {c} ({self.modality[c]}): {self.intensity_source} intensities mean {st.mean:.4g} "
                f"std {st.std:.4g} p0.5 {st.percentile_00_5:.4g} p99.5 {st.percentile_99_5:.4g}"
            )
        for cl in self.classes:
            lines.append(
                f"  class {cl.value} {cl.name}: in {cl.cases_present} cases, "
                f"{100 * cl.mean_voxel_fraction:.2f}% of voxels"
            )
        lines.append(f"  {len(self.issues)} problem(s) found" + (":" if self.issues else ""))
        return lines + [f"    {issue}" for issue in self.data_issues]

    def to_json(self, path: str | Path | None = None) -> str:
        """The JSON text; also written atomically to ``path`` when given."""
        text = self.model_dump_json(indent=1)
        if path is not None:
            atomic_write_text(Path(path), text + "\n")
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> Fingerprint:
        """Parse JSON text or a file path (DataError when malformed)."""
        text = source
        if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
            try:
                text = Path(source).read_text()
            except OSError as exc:
                raise DataError(f"{source}: cannot read fingerprint ({exc})") from exc
        try:
            return cls.model_validate_json(str(text))
        except ValidationError as exc:
            raise DataError(f"fingerprint JSON is malformed: {exc.errors()[0]['msg']}") from exc


class _CaseResult:
    """Per-case output of the worker: small arrays only, the images are dropped."""

    def __init__(self) -> None:
        self.issues: list[DataIssue] = []
        self.ndim: int | None = None
        self.fp: CaseFingerprint | None = None
        self.fg: list[np.ndarray] = []
        self.all: list[np.ndarray] = []


def _seed(case_id: str) -> int:
    return zlib.crc32(case_id.encode())


def _sample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """All of ``values`` when there are at most ``n``, else ``n`` drawn without replacement."""
    if values.shape[-1] <= n:
        return values.astype(np.float64)
    idx = np.sort(rng.choice(values.shape[-1], size=n, replace=False))
    return values[..., idx].astype(np.float64)


def _cropped_shape(arr: np.ndarray) -> list[int]:
    """Spatial shape of the bounding box of voxels that are non-zero in any channel."""
    nz = np.any(arr != 0, axis=0)
    out = []
    for ax in range(nz.ndim):
        hit = np.flatnonzero(nz.any(axis=tuple(a for a in range(nz.ndim) if a != ax)))
        out.append(int(hit[-1] - hit[0] + 1) if hit.size else 0)
    return out


def _case_worker(spec: DatasetSpec, n_samples: int, n_classes: int) -> Callable[[Case, bool], _CaseResult]:
    def work(case: Case, is_train: bool) -> _CaseResult:
        rep = inspect_case(spec, case, is_train=is_train)
        out = _CaseResult()
        out.issues = rep.issues
        if rep.image is None:
            return out
        out.ndim = rep.image.ndim
        if not is_train or rep.issues:
            return out
        arr = rep.image.array
        flat = arr.reshape(arr.shape[0], -1)
        rng = np.random.default_rng(_seed(case.case_id))
        counts: dict[int, int] = {}
        if rep.label is not None:
            lab = rep.label.reshape(-1)
            bc = np.bincount(lab.astype(np.int64), minlength=n_classes)
            counts = {int(v): int(c) for v, c in enumerate(bc)}
            fg = flat[:, lab > 0]
            if fg.shape[1]:
                out.fg = list(_sample(fg, n_samples, rng))
        out.all = list(_sample(flat, n_samples, rng))
        out.fp = CaseFingerprint(
            case_id=case.case_id,
            shape=list(rep.image.shape),
            spacing=list(rep.image.spacing),
            channels=int(arr.shape[0]),
            cropped_shape=_cropped_shape(arr),
            class_voxels=counts,
        )
        return out

    return work


def _stats(samples: np.ndarray) -> IntensityStats:
    p = np.percentile(samples, [0.5, 50.0, 99.5])
    return IntensityStats(
        mean=float(samples.mean()),
        std=float(samples.std()),
        median=float(p[1]),
        min=float(samples.min()),
        max=float(samples.max()),
        percentile_00_5=float(p[0]),
        percentile_99_5=float(p[2]),
        n_samples=int(samples.size),
    )


def _class_stats(spec: DatasetSpec, cases: list[CaseFingerprint]) -> list[ClassStats]:
    out = []
    labelled = [c for c in cases if c.class_voxels]
    for name, value in sorted(spec.labels.items(), key=lambda kv: kv[1]):
        present = [c for c in labelled if c.class_voxels.get(value, 0) > 0]
        fractions = [c.class_voxels.get(value, 0) / max(1, sum(c.class_voxels.values())) for c in labelled]
        out.append(
            ClassStats(
                name=name,
                value=value,
                cases_present=len(present),
                fraction_present=len(present) / max(1, len(labelled)),
                mean_voxel_fraction=float(np.mean(fractions)) if fractions else 0.0,
            )
        )
    return out


def _summarise(spec: DatasetSpec, results: list[_CaseResult], key: str) -> Fingerprint:
    issues = [i for r in results for i in r.issues]
    dims = {c.case_id: r.ndim for c, r in zip(spec.cases, results, strict=True) if r.ndim is not None}
    issues += dataset_issues(spec, dims)
    cases = [r.fp for r in results if r.fp is not None]
    if not cases:
        detail = "; ".join(str(i) for i in issues[:5])
        raise DataError(f"dataset {spec.name!r}: no training case could be read without issues ({detail})")
    n_ch = cases[0].channels
    use_fg = any(r.fg for r in results)
    pooled = [
        np.concatenate([r.fg[c] if use_fg else r.all[c] for r in results if (r.fg if use_fg else r.all)])
        for c in range(n_ch)
    ]
    shapes = np.array([c.shape for c in cases])
    spacing = np.median(np.array([c.spacing for c in cases]), axis=0)
    return Fingerprint(
        name=spec.name,
        dim=int(shapes.shape[1]),
        num_train=len(spec.train),
        num_test=len(spec.test),
        num_channels=spec.num_channels,
        channel_names=dict(spec.channel_names),
        modality={k: channel_modality(v) for k, v in spec.channel_names.items()},
        labels=dict(spec.labels),
        regions=spec.regions,
        median_shape=[float(v) for v in np.median(shapes, axis=0)],
        min_shape=shapes.min(axis=0).tolist(),
        max_shape=shapes.max(axis=0).tolist(),
        median_spacing=[float(s) for s in spacing],
        anisotropy=float(spacing.max() / spacing.min()),
        intensity={c: _stats(pooled[c]) for c in range(n_ch)},
        intensity_source="foreground" if use_fg else "all",
        classes=_class_stats(spec, cases),
        cases=cases,
        issues=[IssueRecord(case_id=i.case_id, field=i.field, message=i.message) for i in issues],
        cache_key=key,
    )


def fingerprint_key(spec: DatasetSpec) -> str:
    """A hash of what the fingerprint depends on: the spec's meaning and every file's path, size and mtime."""
    h = hashlib.sha256()
    head: dict[str, Any] = {
        "v": FINGERPRINT_VERSION,
        "name": spec.name,
        "labels": spec.labels,
        "map": sorted((spec.label_map or {}).items()),
        "channels": spec.channel_names,
    }
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    for split, cases in (("train", spec.train), ("test", spec.test)):
        for c in cases:
            h.update(f"|{split}|{c.case_id}".encode())
            for p in (*c.images, c.label, c.roi):
                h.update(_file_stamp(p).encode())
    return h.hexdigest()


def _file_stamp(path: Path | None) -> str:
    if path is None:
        return ";-"
    try:
        st = os.stat(path)
    except OSError:
        return f";{path}:missing"
    return f";{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}"


def default_cache_dir() -> Path:
    """``$MEDSIGHT_CACHE/fingerprints``, else ``~/.cache/medsight/fingerprints``."""
    base = os.environ.get("MEDSIGHT_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "medsight") / "fingerprints"


def _check_cache_dir(cache_dir: Path) -> Path:
    shared = shared_data_root()
    resolved = cache_dir.expanduser().resolve()
    if shared is not None and resolved.is_relative_to(shared.resolve()):
        raise ConfigError(f"cache_dir {cache_dir}: must not be inside the read-only data folder {shared}")
    return resolved


def _samples_per_case(n_train: int) -> int:
    return int(
        min(MAX_SAMPLES_PER_CASE, max(MIN_SAMPLES_PER_CASE, TOTAL_SAMPLES_PER_CHANNEL // max(1, n_train)))
    )


def fingerprint_dataset(
    spec: DatasetSpec | str | Path,
    *,
    cache_dir: str | Path | None = None,
    max_workers: int | None = None,
    use_cache: bool = True,
) -> Fingerprint:
    """Compute (or load from the cache) the fingerprint of a dataset.

    Args:
        spec: a loaded spec, or anything :func:`load_dataset` accepts.
        cache_dir: where fingerprints are cached (default :func:`default_cache_dir`); the key is a
            hash of the spec and of every file's path, size and modification time.
        max_workers: reader threads (default: from the number of cores).
        use_cache: False recomputes and overwrites the cached copy.

    Raises:
        DataError: no training case is readable. Cases with issues are listed in ``issues`` and
            left out of the statistics.
    """
    spec = load_dataset(spec)
    key = fingerprint_key(spec)
    cache = _check_cache_dir(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    path = cache / f"{''.join(ch if ch.isalnum() or ch in '-_' else '_' for ch in spec.name)}-{key[:20]}.json"
    if use_cache and path.is_file():
        try:
            return Fingerprint.from_json(path)
        except DataError:
            pass  # a stale or damaged cache entry is recomputed
    worker = _case_worker(spec, _samples_per_case(len(spec.train)), len(spec.labels))
    fp = _summarise(spec, inspect_all(spec, worker, max_workers), key)
    fp.to_json(path)
    return fp
