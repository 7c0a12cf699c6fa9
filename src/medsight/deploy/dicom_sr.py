"""Classification results as a DICOM Comprehensive SR (TID 1500 Measurement Report, highdicom).

The report belongs to the source study (patient and study modules copied from the source, as the
standard requires) and lists the source instances as evidence. One measurement group holds a
probability (UCUM unit ``1``) per class and a "Finding" whose value is the predicted class; class
codes use the private coding scheme ``99MEDSIGHT`` (value ``class-<index>``, meaning the class name).

Example::

    write_classification_sr("scan.dcm", {"normal": 0.1, "pneumonia": 0.9}, ["pneumonia"], "scan.sr.dcm")
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medsight.errors import DataError
from medsight.utils import atomic_write

log = logging.getLogger(__name__)

SR_SERIES_NUMBER = 9902
CODING_SCHEME = "99MEDSIGHT"
_LO = 64


def _source_datasets(source: str | Path | Sequence[Any]) -> list[Any]:
    """Headers of the source: a DICOM file, a series folder or zip, or datasets as given."""
    from medsight.deploy.dicom_seg import repair_uids
    from medsight.io.dicom import is_zip, read_series_datasets

    if isinstance(source, str | Path):
        p = Path(source)
        datasets = read_series_datasets([p] if p.is_file() and not is_zip(p) else p)
    else:
        datasets = list(source)
    repair_uids(datasets, required=("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"), what="SR")
    return datasets


def build_classification_sr(
    source: str | Path | Sequence[Any],
    probabilities: Mapping[str, float],
    predicted: Sequence[str],
    *,
    run_name: str = "model",
) -> Any:
    """The highdicom ``ComprehensiveSR`` of one classification (see :func:`write_classification_sr`)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    import medsight

    names = list(probabilities)
    unknown = [p for p in predicted if p not in probabilities]
    if unknown:
        raise DataError(f"classification SR: predicted class(es) {unknown} not among the classes {names}")
    concept = hd.sr.CodedConcept
    algorithm = hd.sr.AlgorithmIdentification(name=f"medsight {run_name}"[:_LO], version=medsight.__version__)
    measurements = [
        hd.sr.Measurement(
            name=concept(f"prob-{i}", CODING_SCHEME, f"Probability of {name}"[:_LO]),
            value=float(probabilities[name]),
            unit=concept("1", "UCUM", "no units"),
            algorithm_id=algorithm,
        )
        for i, name in enumerate(names)
    ]
    findings = [
        hd.sr.QualitativeEvaluation(
            name=codes.DCM.Finding, value=concept(f"class-{names.index(p)}", CODING_SCHEME, p[:_LO])
        )
        for p in predicted
    ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="medsight classification"),
        measurements=measurements,
        qualitative_evaluations=findings or None,
        algorithm_id=algorithm,
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=concept("363679005", "SCT", "Imaging procedure"),
        imaging_measurements=[group],
        title=codes.cid7021.ImagingMeasurementReport,
    )
    return hd.sr.ComprehensiveSR(
        evidence=_source_datasets(source),
        content=report,
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medsight",
        series_description=f"medsight classification {run_name}"[:_LO],
    )


def write_classification_sr(
    source: str | Path | Sequence[Any],
    probabilities: Mapping[str, float],
    predicted: Sequence[str],
    out_path: str | Path,
    *,
    run_name: str = "model",
) -> Path:
    """Write a classification result as a Comprehensive SR, atomically.

    Args:
        source: the classified DICOM: a file, a series folder or zip, or pydicom datasets.
        probabilities: class name -> probability, in class order.
        predicted: the predicted class name(s) (several for multi-label, none allowed).
        out_path: the ``.dcm`` file to write.
        run_name: named in the algorithm identification.

    Raises:
        DataError: unknown predicted class, or the source lacks the UIDs an SR must reference.
    """
    sr = build_classification_sr(source, probabilities, predicted, run_name=run_name)
    path = atomic_write(Path(out_path), lambda tmp: sr.save_as(tmp))
    log.info("classification SR %s for study %s", sr.SOPInstanceUID, sr.StudyInstanceUID)
    return path


def classification_srs(
    csv_path: Path, run_name: str, *, required: bool, overwrite: bool = False
) -> list[Path]:
    """An SR beside ``csv_path`` (``<input stem>.sr.dcm``) for every DICOM input row of a prediction CSV.

    With ``required`` an input that cannot get an SR is an error; otherwise it is skipped with a warning.
    """
    from medsight.io.readers import detect_format, split_suffix

    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, written = rows[0], []
    names = header[1:-1]
    for row in rows[1:]:
        source = Path(row[0])
        if ";" in row[0] or not source.exists() or detect_format(source) != "dicom":
            continue
        target = csv_path.parent / f"{split_suffix(source)[0]}.sr.dcm"
        written.append(target)
        if target.exists() and not overwrite:
            continue
        predicted = [] if row[-1] == "-" else row[-1].split(";")
        probs = {n: float(v) for n, v in zip(names, row[1:-1], strict=True)}
        try:
            write_classification_sr(source, probs, predicted, target, run_name=run_name)
        except DataError as exc:
            if required:
                raise
            written.pop()
            log.warning("no DICOM SR for %s: %s", target.name, exc)
    return written
