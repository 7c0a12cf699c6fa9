"""DICOM SEG out: a label map in a source series' geometry as a highdicom BINARY Segmentation.

The SEG references the source series (its instances, frame of reference, study and the patient module
copied from them, as the standard requires), has one segment per foreground label (segment numbers
1..N in the order of ``label_values``) with coded category / type terms, and names the algorithm
(``medsight <run name>``). Frames map to source instances one to one: ``labels.array[0, :, :, k]``
(ITK order, ``(column, row)``) is the transposed pixel matrix of the ``k``-th slice along the normal.

Example::

    labels = read_image("case.nii.gz")                  # a prediction on the series' grid
    write_dicom_seg(labels, series_dir, "case.seg.dcm", class_names=["liver"], label_values=[1])
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import DataError
from medsight.io.image import Image
from medsight.utils import atomic_write

log = logging.getLogger(__name__)

SEG_SERIES_NUMBER = 9901
_LO = 64  # the length limit of DICOM LO strings (labels, names, versions)
_TUMOUR_WORDS = ("tumor", "tumour", "lesion", "cancer", "neoplasm", "mass", "metasta", "nodule")


def segment_codes(name: str) -> tuple[Any, Any]:
    """Coded (category, type) for a class name: a SNOMED CT anatomical structure when pydicom's code
    dictionary knows the name (``liver`` -> SCT Liver), a neoplasm for tumour-like names, else the generic
    SCT "Tissue" / "Tissue"."""
    from pydicom.sr.codedict import codes

    keyword = "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", name) if part)
    lowered = name.lower()
    if any(word in lowered for word in _TUMOUR_WORDS):
        return codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm
    known = getattr(codes.SCT, keyword, None) if keyword else None
    if known is not None:
        return codes.SCT.AnatomicalStructure, known
    return codes.SCT.Tissue, codes.SCT.Tissue


def _source_datasets(source: str | Path | Sequence[Any], series_uid: str | None) -> list[Any]:
    """Headers of the source series in volume slice order (datasets are taken as given, then sorted)."""
    from medsight.io.dicom import read_series_datasets, sort_slices

    if isinstance(source, str | Path) or (source and isinstance(source[0], str | Path)):
        return read_series_datasets(source, series_uid=series_uid)  # type: ignore[arg-type]
    datasets = [ds for ds in source if series_uid is None or str(ds.SeriesInstanceUID) == series_uid]
    if not datasets:
        raise DataError(f"DICOM SEG: no source dataset of series {series_uid}")
    return sort_slices(datasets)


_REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")


def repair_uids(datasets: list[Any], required: Sequence[str] = _REQUIRED, what: str = "SEG") -> None:
    """Fill an empty SOPClassUID / SOPInstanceUID from the file meta; raise DataError when a UID the
    DICOM ``what`` must reference is missing."""
    for ds in datasets:
        for keyword in ("SOPClassUID", "SOPInstanceUID"):
            media = getattr(getattr(ds, "file_meta", None), f"MediaStorage{keyword}", None)
            if not ds.get(keyword) and media:
                setattr(ds, keyword, media)
    for keyword in (*required, "SOPClassUID"):
        missing = [ds for ds in datasets if not ds.get(keyword)]
        if missing:
            raise DataError(
                f"DICOM {what}: {len(missing)} of {len(datasets)} source instance(s) of series "
                f"{datasets[0].get('SeriesInstanceUID') or '?'} lack {keyword}, which a {what} must reference"
            )


def _check_geometry(labels: Image, datasets: list[Any], where: str) -> None:
    """Raise DataError unless ``labels`` lies on the source slices' voxel grid."""
    ds0 = datasets[0]
    expected = (int(ds0.Columns), int(ds0.Rows), len(datasets))
    if labels.array.ndim != 4 or labels.array.shape[0] != 1 or tuple(labels.array.shape[1:]) != expected:
        raise DataError(
            f"{where}: label map shape {tuple(labels.array.shape)} does not fit the source series, "
            f"expected (1, {expected[0]}, {expected[1]}, {expected[2]}) (1 channel, columns, rows, slices)"
        )
    ipp = ds0.get("ImagePositionPatient")
    if ipp is not None and not np.allclose(labels.origin, [float(x) for x in ipp], atol=1e-2):
        raise DataError(
            f"{where}: label map origin {tuple(np.round(labels.origin, 3))} is not the first source slice's "
            f"position {tuple(float(x) for x in ipp)}; predictions must be in the source geometry"
        )
    iop = ds0.get("ImageOrientationPatient")
    if iop is not None:
        row = np.asarray([float(x) for x in iop[:3]])
        col = np.asarray([float(x) for x in iop[3:]])
        if not (
            np.allclose(labels.direction[:, 0], row, atol=1e-3)
            and np.allclose(labels.direction[:, 1], col, atol=1e-3)
        ):
            raise DataError(f"{where}: label map direction does not match the source ImageOrientationPatient")
    uids = labels.meta.get("SOPInstanceUIDs")
    if uids and all(uids) and list(uids) != [str(ds.SOPInstanceUID) for ds in datasets]:
        raise DataError(f"{where}: the label map was made from other instances than the source series")


def _segment_frames(labels: Image, label_values: Sequence[int]) -> np.ndarray:
    """``(slices, rows, columns)`` segment numbers: label value ``label_values[s]`` -> ``s + 1``."""
    volume = np.asarray(labels.array[0])
    frames = np.zeros(volume.shape[::-1], dtype=np.uint16)
    transposed = volume.transpose(2, 1, 0)
    for number, value in enumerate(label_values, start=1):
        frames[transposed == value] = number
    unknown = np.setdiff1d(np.unique(transposed), [0, *label_values])
    if unknown.size:
        raise DataError(
            f"DICOM SEG: label map holds values {unknown.tolist()} not in label_values {list(label_values)}"
        )
    return frames


def build_dicom_seg(
    labels: Image,
    source: str | Path | Sequence[Any],
    *,
    class_names: Sequence[str],
    label_values: Sequence[int] | None = None,
    run_name: str = "model",
    series_uid: str | None = None,
) -> Any:
    """The highdicom ``Segmentation`` of ``labels`` (see :func:`write_dicom_seg`)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    import medsight

    values = list(label_values) if label_values is not None else list(range(1, len(class_names) + 1))
    if len(values) != len(class_names) or 0 in values or len(set(values)) != len(values):
        raise DataError(
            f"DICOM SEG: class_names {list(class_names)} and label_values {values} must pair one to one, "
            "foreground only (no 0), no repeats"
        )
    series_uid = series_uid or labels.meta.get("SeriesInstanceUID")
    datasets = _source_datasets(source, series_uid)
    repair_uids(datasets)
    where = f"DICOM SEG for series {datasets[0].get('SeriesInstanceUID', '?')}"
    _check_geometry(labels, datasets, where)
    frames = _segment_frames(labels, values)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"medsight {run_name}"[:_LO],
        family=codes.cid7162.ArtificialIntelligence,
        version=medsight.__version__,
        source="medsight",
        parameters={"run": run_name[:_LO]},
    )
    descriptions = []
    for number, name in enumerate(class_names, start=1):
        category, kind = segment_codes(name)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=str(name)[:_LO],
                segmented_property_category=category,
                segmented_property_type=kind,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_uid=hd.UID(),
                tracking_id=f"{name} (label {values[number - 1]})"[:_LO],
            )
        )
    return hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medsight",
        manufacturer_model_name=run_name[:_LO],
        software_versions=medsight.__version__,
        device_serial_number="0",
        content_description=f"medsight segmentation, run {run_name}"[:_LO],
        series_description=f"medsight SEG {run_name}"[:_LO],
        omit_empty_frames=bool(frames.any()),  # an all-empty SEG keeps its frames: it must have some
    )


def write_dicom_seg(
    labels: Image,
    source: str | Path | Sequence[Any],
    out_path: str | Path,
    *,
    class_names: Sequence[str],
    label_values: Sequence[int] | None = None,
    run_name: str = "model",
    series_uid: str | None = None,
) -> Path:
    """Write ``labels`` (a label map in the source series' geometry) as a DICOM SEG, atomically.

    Args:
        labels: ``(1, columns, rows, slices)`` label map on the source grid (what the predictor returns
            for a DICOM series).
        source: the source series: a folder, a zip, a list of files, or pydicom datasets.
        out_path: the ``.dcm`` file to write.
        class_names: one name per foreground label (segment labels; coded terms from them).
        label_values: the label value of each class (default 1..N); absent labels give empty segments.
        run_name: named in the algorithm identification (``medsight <run_name>``).
        series_uid: the source series when ``source`` holds several (default: ``labels.meta``).

    Returns:
        The path written.

    Raises:
        DataError: labels not on the source grid, unknown label values, unreadable source.
    """
    seg = build_dicom_seg(
        labels,
        source,
        class_names=class_names,
        label_values=label_values,
        run_name=run_name,
        series_uid=series_uid,
    )
    path = atomic_write(Path(out_path), lambda tmp: seg.save_as(tmp))
    log.info(
        "DICOM SEG %s (series %s, %d segments) for source series %s",
        seg.SOPInstanceUID,
        seg.SeriesInstanceUID,
        len(class_names),
        seg.ReferencedSeriesSequence[0].SeriesInstanceUID,
    )
    return path


def dicom_segs(
    run_dir: str | Path, input: Path, outputs: Sequence[Path], *, required: bool, overwrite: bool = False
) -> list[Path]:
    """A SEG beside each label map that ``predict`` wrote for a DICOM series input (folder or zip):
    ``<case>.seg.dcm`` next to ``<case>.nii.gz``, made from the written label map.

    With ``required`` an input that cannot get a SEG (a single DICOM file, missing UIDs) is an error;
    otherwise it is skipped with a warning. Existing SEGs are kept unless ``overwrite``.
    """
    from medsight.data.inputs import group_inputs
    from medsight.io import read_image
    from medsight.io.readers import detect_format, split_suffix
    from medsight.runs import open_run

    run = open_run(run_dir)
    plan = run.plan
    groups = group_inputs(Path(input), plan.in_channels)
    by_case = {split_suffix(o)[0]: o for o in outputs}
    if len(groups) == 1 and len(outputs) == 1:
        by_case = {next(iter(groups)): outputs[0]}
    foreground = {n: v for n, v in plan.label_names().items() if v != 0}
    names, values = list(foreground), list(foreground.values())
    written = []
    for case_id, files in groups.items():
        nifti = by_case.get(case_id)
        if nifti is None or not nifti.exists() or len(files) != 1 or detect_format(files[0]) != "dicom":
            continue
        target = nifti.parent / f"{split_suffix(nifti)[0]}.seg.dcm"
        if target.exists() and not overwrite:
            written.append(target)
            continue
        try:
            if files[0].is_file() and not files[0].name.lower().endswith(".zip"):
                raise DataError(f"{files[0].name}: DICOM SEG output needs a series (a folder or a zip)")
            labels = read_image(nifti)
            write_dicom_seg(
                labels, files[0], target, class_names=names, label_values=values, run_name=run.path.name
            )
        except DataError as exc:
            if required:
                raise
            log.warning("case %s: no DICOM SEG written: %s", case_id, exc)
            continue
        written.append(target)
    return written
