"""PACS round trip against a real Orthanc with DICOMweb: upload (STOW-RS), `medsight pacs` (QIDO-RS,
WADO-RS, predict, STOW-RS the SEG), read the SEG back (WADO-RS)."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_testutils import PATIENT, complete_series, ct_series, train_ct_run

from medsight.deploy.dicomweb import DicomWeb, PacsError
from medsight.deploy.orthanc import LocalOrthanc, find_orthanc
from medsight.deploy.pacs import pacs_predict
from medsight.io import read_image

AUTH = ("medsight", "s3cret")


@pytest.fixture(scope="module")
def orthanc():
    exe, plugin = find_orthanc()
    if exe is None or plugin is None:
        pytest.skip(
            f"Orthanc with DICOMweb not installed (Debian packages orthanc, orthanc-dicomweb): "
            f"executable {exe}, plugin {plugin}"
        )
    with LocalOrthanc(user=AUTH[0], password=AUTH[1]) as server:
        yield server


@pytest.fixture(scope="module")
def uploaded(orthanc: LocalOrthanc, data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    series = complete_series(ct_series(data_root), tmp_path_factory.mktemp("pacs") / "ct")
    DicomWeb(orthanc.dicomweb_url, auth=AUTH).store([pydicom.dcmread(f) for f in sorted(series.iterdir())])
    return series


@pytest.fixture(scope="module")
def ct_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_ct_run(data_root, tmp_path_factory.mktemp("ctrun"))


def test_pacs_cli_stores_a_seg_that_references_the_series(
    orthanc: LocalOrthanc, uploaded: Path, ct_run: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from medsight.cli.main import app

    source = read_image(uploaded)
    study = pydicom.dcmread(next(uploaded.iterdir()), stop_before_pixels=True).StudyInstanceUID
    args = ["pacs", "--url", orthanc.dicomweb_url, "--study", study, "--run", str(ct_run)]
    proc = CliRunner().invoke(
        app, [*args, "--user", AUTH[0], "--password", AUTH[1], "--output", str(tmp_path)]
    )
    assert proc.exit_code == 0, proc.output
    result = json.loads(proc.stdout)
    assert result["series_uid"] == source.meta["SeriesInstanceUID"] and result["instances"] == 20
    assert result["timings"]["total"] > 0 and set(result["segments"]) == {"body", "bone"}
    for value in PATIENT.values():
        assert value not in proc.output

    client = DicomWeb(orthanc.dicomweb_url, auth=AUTH)
    modalities = {s.series_uid: s.modality for s in client.search_series(study)}
    assert modalities[result["seg_series_uid"]] == "SEG"
    (stored,) = client.retrieve_series(study, result["seg_series_uid"])
    seg = hd.seg.Segmentation.from_dataset(stored)
    assert seg.SOPInstanceUID == result["seg_sop_instance_uid"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.meta["SeriesInstanceUID"]
    assert seg.FrameOfReferenceUID == source.meta["FrameOfReferenceUID"]
    pixels = seg.get_pixels_by_source_instance(source.meta["SOPInstanceUIDs"], combine_segments=True)
    assert pixels.shape == (20, 512, 512)
    # the SEG stored is the prediction kept locally
    local = read_image(tmp_path / f"{result['series_uid']}.nii.gz")
    np.testing.assert_array_equal(np.asarray(pixels).transpose(2, 1, 0), local.array[0])


def test_pacs_errors_name_url_and_status(orthanc: LocalOrthanc, uploaded: Path, ct_run: Path) -> None:
    study = pydicom.dcmread(next(uploaded.iterdir()), stop_before_pixels=True).StudyInstanceUID
    with pytest.raises(PacsError, match=r"HTTP 401") as err:
        pacs_predict(orthanc.dicomweb_url, study, ct_run, auth=("medsight", "wrong"))
    assert orthanc.dicomweb_url in str(err.value)
    with pytest.raises(PacsError, match="no image series"):
        pacs_predict(orthanc.dicomweb_url, "1.2.3.4.5", ct_run, auth=AUTH)
    with pytest.raises(PacsError, match="series 9.9.9 not found"):
        pacs_predict(orthanc.dicomweb_url, study, ct_run, series_uid="9.9.9", auth=AUTH)
    with pytest.raises(PacsError, match="127.0.0.1:9/dicom-web"):
        pacs_predict("http://127.0.0.1:9/dicom-web", study, ct_run, timeout=2)
