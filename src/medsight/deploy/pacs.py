"""Label a study on a PACS: QIDO-RS search, WADO-RS retrieve, predict, DICOM SEG, STOW-RS store.

Any run whose task family serves a label map (its served model is a
:class:`~medsight.deploy.serving.LabelMapModel`) can be used; others are refused with the reason.

Example::

    result = pacs_predict("http://pacs:8042/dicom-web", study_uid, "runs/RUN")
    print(result.seg_sop_instance_uid, result.timings["total"])
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsight.errors import ConfigError

if TYPE_CHECKING:
    from medsight.deploy.serving import LabelMapModel
    from medsight.runs import Run

log = logging.getLogger(__name__)


@dataclass
class PacsResult:
    """What :func:`pacs_predict` did: the UIDs involved, the SEG stored and seconds per step."""

    study_uid: str
    series_uid: str
    instances: int
    seg_series_uid: str
    seg_sop_instance_uid: str
    segments: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    seg_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _save(datasets: list[Any], folder: Path) -> None:
    for n, ds in enumerate(datasets):
        ds.save_as(folder / f"{n:05d}.dcm", enforce_file_format=True)


def label_map_model(run: Run) -> LabelMapModel:
    """The run's served model (from its task family), when it answers label maps.

    Raises:
        ConfigError: the family's served model is no :class:`~medsight.deploy.serving.LabelMapModel`.
    """
    from medsight.deploy.serving import LabelMapModel
    from medsight.task_registry import get_task

    model = get_task(run.config.task).served_model(run)
    if not isinstance(model, LabelMapModel):
        raise ConfigError(
            f"{run.path}: pacs stores a DICOM SEG, which needs a model that answers label maps; "
            f"this {run.config.task} run's served model ({type(model).__name__}) has no label_map"
        )
    return model


def pacs_predict(
    url: str,
    study_uid: str,
    run_dir: str | Path,
    series_uid: str | None = None,
    auth: tuple[str, str] | None = None,
    *,
    token: str | None = None,
    output: str | Path | None = None,
    tta: bool | None = None,
    timeout: float = 60,
) -> PacsResult:
    """Predict the label map of one series of a study on a DICOMweb server and store it back as a DICOM SEG.

    Args:
        url: the DICOMweb root (``http://host:8042/dicom-web``).
        study_uid: the StudyInstanceUID.
        run_dir: a run folder whose model answers label maps.
        series_uid: the series to label (default: the CT/MR series with most instances).
        auth: ``(user, password)``; ``token``: a bearer token instead.
        output: a folder that also gets ``<series_uid>.seg.dcm`` and ``<series_uid>.nii.gz``.
        tta: override the run's test-time augmentation.
        timeout: seconds per HTTP request.

    Raises:
        PacsError: a request failed (URL and HTTP status named) or the study has no image series.
        ConfigError: the run's model does not answer label maps.
    """
    from medsight.deploy.dicom_seg import build_dicom_seg
    from medsight.deploy.dicomweb import DicomWeb, choose_image_series
    from medsight.io import write_image
    from medsight.io.dicom import read_dicom_series
    from medsight.runs import open_run
    from medsight.utils import atomic_write

    run = open_run(run_dir)
    if tta is not None:
        run = replace(run, plan=run.plan.model_copy(update={"tta": tta}))
    timings: dict[str, float] = {}
    start = clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    model = label_map_model(run)  # refuses a run without label maps before any request is sent
    lap("load_model")
    client = DicomWeb(url, auth=auth, token=token, timeout=timeout)
    chosen = choose_image_series(client.search_series(study_uid), study_uid, series_uid)
    lap("search")
    datasets = client.retrieve_series(study_uid, chosen.series_uid)
    lap("retrieve")
    with tempfile.TemporaryDirectory(prefix="medsight-pacs-") as tmp:
        _save(datasets, Path(tmp))
        image = read_dicom_series(tmp, series_uid=chosen.series_uid)
    lap("read")
    labels = model.label_map(image, case_id=chosen.series_uid)
    lap("predict")
    segments = model.segments()
    names = list(segments)
    seg = build_dicom_seg(
        labels,
        datasets,
        class_names=names,
        label_values=list(segments.values()),
        run_name=run.path.name,
        series_uid=chosen.series_uid,
    )
    lap("make_seg")
    client.store([seg], study_uid=study_uid)
    lap("store")
    seg_path = None
    if output is not None:
        out = Path(output)
        seg_path = str(atomic_write(out / f"{chosen.series_uid}.seg.dcm", lambda p: seg.save_as(p)))
        write_image(labels, out / f"{chosen.series_uid}.nii.gz")
    timings["total"] = round(time.perf_counter() - start, 4)
    log.info(
        "study %s series %s: SEG %s stored in %.2f s",
        study_uid,
        chosen.series_uid,
        seg.SOPInstanceUID,
        timings["total"],
    )
    return PacsResult(
        study_uid=study_uid,
        series_uid=chosen.series_uid,
        instances=len(datasets),
        seg_series_uid=str(seg.SeriesInstanceUID),
        seg_sop_instance_uid=str(seg.SOPInstanceUID),
        segments=names,
        timings=timings,
        seg_path=seg_path,
    )
