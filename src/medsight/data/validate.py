"""Dataset validation: read every case once and list every problem, not just the first.

Each problem is a :class:`DataIssue` printed as ``case_003 label: shape (64, 64, 30) does not match
image (64, 64, 31)``; :func:`raise_on_issues` turns a list of them into one DataError.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from medsight.data.reading import channel_field, geometry_difference, label_array, label_values
from medsight.data.spec import Case, DatasetSpec
from medsight.errors import DataError
from medsight.io import Image, read_image
from medsight.utils import cpu_count

T = TypeVar("T")


@dataclass(frozen=True)
class DataIssue:
    """One problem of one case: which case, which field (image, image_0001, label, roi), what."""

    case_id: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.case_id} {self.field}: {self.message}"


@dataclass
class CaseReport:
    """What inspecting one case found: its issues and, when readable, its arrays."""

    case: Case
    issues: list[DataIssue] = field(default_factory=list)
    image: Image | None = None
    label: np.ndarray | None = None  # (1, *spatial), class values (label_map applied)
    roi: np.ndarray | None = None

    def add(self, field_name: str, message: str) -> None:
        self.issues.append(DataIssue(self.case.case_id, field_name, message))


def default_workers() -> int:
    """Reader threads: reading is mostly I/O and decompression, so twice the cores, at most 16."""
    return max(1, min(16, 2 * cpu_count()))


def _read(report: CaseReport, field_name: str, path: object) -> Image | None:
    if not path:
        return None
    try:
        return read_image(path)  # type: ignore[arg-type]
    except DataError as exc:
        report.add(field_name, str(exc))
    return None


def _check_images(spec: DatasetSpec, report: CaseReport) -> Image | None:
    case = report.case
    images = [_read(report, channel_field(case, i), p) for i, p in enumerate(case.images)]
    if not images or any(im is None for im in images):
        return None
    first = images[0]
    for i, other in enumerate(images[1:], start=1):
        diff = geometry_difference(first, other, what_a=channel_field(case, 0))
        if diff:
            report.add(channel_field(case, i), diff)
            return None
    arr = np.concatenate([im.array for im in images], axis=0) if len(images) > 1 else first.array
    if arr.shape[0] != spec.num_channels:
        names = ", ".join(spec.channel_names.values())
        report.add("image", f"{arr.shape[0]} channel(s) found, expected {spec.num_channels} ({names})")
    _check_values(report, arr, spec)
    return Image(arr, first.spacing, first.origin, first.direction, first.meta)


def _check_values(report: CaseReport, arr: np.ndarray, spec: DatasetSpec) -> None:
    if np.issubdtype(arr.dtype, np.inexact):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            report.add("image", f"{bad} NaN/Inf value(s) out of {arr.size}")
            return
    for c in range(arr.shape[0]):
        ch = arr[c]
        lo, hi = ch.min(), ch.max()
        if lo == hi:
            name = spec.channel_names.get(c, str(c))
            where = "image is" if arr.shape[0] == 1 else f"channel {c} ({name}) is"
            report.add("image", f"{where} empty: every value is {lo.item()!r}")


def _check_label(spec: DatasetSpec, report: CaseReport, image: Image | None, is_train: bool) -> None:
    case = report.case
    if case.label is None:
        if is_train:
            report.add("label", "training case has no label file")
        return
    lab = _read(report, "label", case.label)
    if lab is None:
        return
    if lab.channels != 1:
        report.add("label", f"expected a one-channel label map, found {lab.channels} channels")
        return
    if image is not None:
        diff = geometry_difference(image, lab)
        if diff:
            report.add("label", diff)
            return
    try:
        raw = label_array(lab.array, str(case.label), None)
    except DataError as exc:
        report.add("label", str(exc))
        return
    declared = set(spec.label_map) if spec.label_map is not None else set(spec.labels.values())
    found = set(label_values(raw))
    if found - declared:
        report.add(
            "label",
            f"values {sorted(found - declared)} are not declared in labels (declared: {sorted(declared)})",
        )
        return
    report.label = label_array(raw, case.case_id, spec.label_map)


def _check_roi(report: CaseReport, image: Image | None) -> None:
    roi = _read(report, "roi", report.case.roi)
    if roi is None:
        return
    diff = image is not None and geometry_difference(image, roi)
    if diff:
        report.add("roi", diff)
        return
    report.roi = np.any(roi.array != 0, axis=0, keepdims=True)


def inspect_case(spec: DatasetSpec, case: Case, *, is_train: bool = True) -> CaseReport:
    """Read one case and check it; the report keeps the arrays that could be read."""
    report = CaseReport(case)
    report.image = _check_images(spec, report)
    _check_label(spec, report, report.image, is_train)
    _check_roi(report, report.image)
    return report


def dataset_issues(spec: DatasetSpec, dims: dict[str, int]) -> list[DataIssue]:
    """Issues across cases: duplicate ids, no training cases, mixed 2D/3D (``dims``: case -> ndim)."""
    issues: list[DataIssue] = []
    if not spec.train:
        issues.append(DataIssue("dataset", "train", "no training cases"))
    for cid, n in Counter(c.case_id for c in spec.cases).items():
        if n > 1:
            issues.append(DataIssue(cid, "case_id", f"used by {n} cases"))
    counts = Counter(dims.values())
    if len(counts) > 1:
        majority, n_major = counts.most_common(1)[0]
        for cid, d in dims.items():
            if d != majority:
                issues.append(
                    DataIssue(
                        cid,
                        "image",
                        f"{d}D image in a dataset of {majority}D images "
                        f"({n_major} of {len(dims)} cases are {majority}D)",
                    )
                )
    return issues


def inspect_all(
    spec: DatasetSpec, worker: Callable[[Case, bool], T], max_workers: int | None = None
) -> list[T]:
    """Run ``worker(case, is_train)`` over every case with a thread pool, in case order."""
    jobs = [(c, True) for c in spec.train] + [(c, False) for c in spec.test]
    n = max_workers or default_workers()
    if n <= 1 or len(jobs) <= 1:
        return [worker(c, t) for c, t in jobs]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda job: worker(*job), jobs))


def validate_dataset(spec: DatasetSpec, *, max_workers: int | None = None) -> list[DataIssue]:
    """Check every case of ``spec`` and return all issues found (empty list: the dataset is sound).

    Checks: missing, unreadable or truncated files; channel files of different shape or geometry;
    the channel count; NaN/Inf and constant images; label shape, spacing, origin and direction
    against the image; label values not declared; roi geometry; mixed 2D/3D; duplicate case ids.
    """

    def worker(case: Case, is_train: bool) -> tuple[list[DataIssue], int | None]:
        rep = inspect_case(spec, case, is_train=is_train)
        return rep.issues, (rep.image.ndim if rep.image is not None else None)

    results = inspect_all(spec, worker, max_workers)
    issues = [i for found, _ in results for i in found]
    dims = {c.case_id: d for c, (_, d) in zip(spec.cases, results, strict=True) if d is not None}
    return issues + dataset_issues(spec, dims)


def raise_on_issues(issues: Sequence[DataIssue], *, limit: int = 50) -> None:
    """Raise one DataError listing ``issues`` (the first line gives the count); do nothing if none."""
    if not issues:
        return
    lines = [f"{len(issues)} data issue(s) found:"] + [f"  {i}" for i in issues[:limit]]
    if len(issues) > limit:
        lines.append(f"  ... and {len(issues) - limit} more")
    raise DataError("\n".join(lines))
