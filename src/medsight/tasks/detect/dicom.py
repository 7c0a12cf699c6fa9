"""Detections of DICOM inputs as a DICOM Comprehensive SR (TID 1500 Measurement Report, highdicom):
one planar-ROI measurement group per box, its region a SCOORD rectangle (POLYLINE, closed) on the
source image, its finding the class and a "score" measurement (unit ``1``). Class codes use the
private coding scheme ``99MEDSIGHT`` (``class-<index>``), as the classification SR does.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import DataError
from medsight.utils import atomic_write

log = logging.getLogger(__name__)
CODING_SCHEME = "99MEDSIGHT"
SR_SERIES_NUMBER = 9903


def build_detection_sr(
    source: Path, boxes: list[tuple[str, int, float, list[float]]], *, run_name: str = "model"
) -> Any:
    """The highdicom ``ComprehensiveSR`` of one 2D DICOM image's boxes
    ``(class, index, score, [x0, y0, x1, y1])``."""
    import highdicom as hd
    from highdicom.sr import (
        CodedConcept,
        ImageRegion,
        MeasurementReport,
        ObservationContext,
        PlanarROIMeasurementsAndQualitativeEvaluations,
        QualitativeEvaluation,
        SourceImageForRegion,
        TrackingIdentifier,
    )
    from pydicom.sr.codedict import codes

    import medsight
    from medsight.deploy.dicom_sr import _source_datasets

    datasets = _source_datasets(source)
    ds = datasets[0]
    groups = []
    for k, (name, index, score, (x0, y0, x1, y1)) in enumerate(boxes):
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)
        region = ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=corners,
            source_image=SourceImageForRegion(ds.SOPClassUID, ds.SOPInstanceUID),
        )
        finding = CodedConcept(f"class-{index}", CODING_SCHEME, name[:64])
        score_item = hd.sr.Measurement(
            name=CodedConcept("score", CODING_SCHEME, "Detection score"),
            value=float(score),
            unit=codes.UCUM.NoUnits
            if hasattr(codes.UCUM, "NoUnits")
            else CodedConcept("1", "UCUM", "no units"),
        )
        groups.append(
            PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=f"box {k + 1}"),
                referenced_region=region,
                finding_type=finding,
                measurements=[score_item],
                qualitative_evaluations=[
                    QualitativeEvaluation(CodedConcept("class", CODING_SCHEME, "Class"), finding)
                ],
            )
        )
    device = hd.sr.DeviceObserverIdentifyingAttributes(uid=hd.UID(), name=f"medsight {run_name}"[:64])
    context = ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    report = MeasurementReport(
        observation_context=context,
        procedure_reported=CodedConcept("detection", CODING_SCHEME, "Automated detection"),
        imaging_measurements=groups,
    )
    return hd.sr.ComprehensiveSR(
        evidence=[ds],
        content=report,
        series_number=SR_SERIES_NUMBER,
        series_instance_uid=hd.UID(),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medsight",
        manufacturer_model_name=f"medsight {medsight.__version__}"[:64],
        software_versions=str(medsight.__version__),
        device_serial_number="0",
    )


def detection_srs(
    source: Path, output: Path, run: Any, *, required: bool, overwrite: bool = False
) -> list[Path]:
    """An SR (``<input stem>.sr.dcm`` in ``output``) for every 2D DICOM input in output/detections.csv;
    with ``required`` an input that cannot get one is an error, else it is skipped with a warning."""
    from medsight.io.readers import detect_format, split_suffix
    from medsight.tasks.detect.outputs import corners_of_row

    table, images = output / "detections.csv", output / "images.csv"
    if not table.is_file() or not images.is_file():
        return []
    names = list(run.plan.class_names)
    with table.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    with images.open(newline="", encoding="utf-8") as f:
        inputs = [r[0] for r in list(csv.reader(f))[1:]]
    written = []
    for key in inputs:
        path = Path(key)
        if ";" in key or not path.exists() or detect_format(path) != "dicom":
            continue
        target = output / f"{split_suffix(path)[0]}.sr.dcm"
        if target.exists() and not overwrite:
            written.append(target)
            continue
        boxes = [(r[1], names.index(r[1]), float(r[2]), corners_of_row(r, 2)) for r in rows if r[0] == key]
        try:
            if run.plan.dim != 2:
                raise DataError(f"{path}: SR boxes are written for 2D images only")
            sr = build_detection_sr(path, boxes, run_name=run.path.name)
        except (DataError, ValueError) as exc:
            if required:
                raise DataError(f"{path}: no DICOM SR ({exc})") from exc
            log.warning("no DICOM SR for %s: %s", path.name, exc)
            continue
        atomic_write(target, lambda tmp, sr=sr: sr.save_as(tmp))
        written.append(target)
    return written
