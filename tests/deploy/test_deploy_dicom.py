"""DICOM round trip: zip input, DICOM SEG out (read back voxel for voxel with highdicom), SR for
classification, and no patient identifiers in logs."""

from __future__ import annotations

import csv
import logging
import zipfile
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_testutils import PATIENT, complete_series, ct_series, thresholds, train_ct_run

from medsight import api
from medsight.deploy.dicom_seg import write_dicom_seg
from medsight.deploy.dicom_sr import classification_srs, write_classification_sr
from medsight.errors import DataError
from medsight.io import read_image
from medsight.io.dicom import dicom_folder


@pytest.fixture(scope="module")
def series(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return complete_series(ct_series(data_root), tmp_path_factory.mktemp("dicom") / "ct")


@pytest.fixture(scope="module")
def series_zip(series: Path) -> Path:
    path = series.parent / "ct.zip"
    with zipfile.ZipFile(path, "w") as z:
        for f in sorted(series.iterdir()):
            z.write(f, f"study/series/{f.name}")
    return path


@pytest.fixture(scope="module")
def ct_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_ct_run(data_root, tmp_path_factory.mktemp("ctrun"))


def _seg_labels(seg_path: Path, source_uids: list[str]) -> np.ndarray:
    """A SEG read back with highdicom alone: (columns, rows, slices) label values (1 body, 2 bone)."""
    seg = hd.seg.segread(seg_path)
    pixels = seg.get_pixels_by_source_instance(source_uids, combine_segments=True, relabel=False)
    return np.asarray(pixels).transpose(2, 1, 0)  # segment numbers = label values here


# ----------------------------------------------------------------------------- zip input


def test_zip_reads_like_the_folder(series: Path, series_zip: Path) -> None:
    folder, zipped = read_image(series), read_image(series_zip)
    np.testing.assert_array_equal(zipped.array, folder.array)
    np.testing.assert_allclose(zipped.affine, folder.affine)
    assert zipped.meta["source"] == str(series_zip)
    assert zipped.meta["SOPInstanceUIDs"] == folder.meta["SOPInstanceUIDs"]


def test_zip_with_two_series_names_both(series: Path, tmp_path: Path) -> None:
    other = complete_series(series, tmp_path / "other", tag="second")
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as z:
        for f in sorted(series.iterdir())[:3]:
            z.write(f, f"a/{f.name}")
        for f in sorted(other.iterdir())[:2]:
            z.write(f, f"b/{f.name}")
    with pytest.raises(DataError, match="2 DICOM series found") as err:
        read_image(path)
    assert "3 file(s)" in str(err.value) and "2 file(s)" in str(err.value)


@pytest.mark.parametrize("member", ["../evil.dcm", "/abs/evil.dcm", "a/../../evil.dcm"])
def test_zip_refuses_unsafe_paths(tmp_path: Path, member: str) -> None:
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, b"x" * 10)
    with pytest.raises(DataError, match="unsafe path"):
        read_image(path)
    assert not (tmp_path.parent / "evil.dcm").exists()


def test_zip_size_limit_and_links(tmp_path: Path) -> None:
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.dcm", b"\0" * 5000)
    with pytest.raises(DataError, match="more than the limit 1000"), dicom_folder(big, max_bytes=1000):
        pass
    link = tmp_path / "link.zip"
    info = zipfile.ZipInfo("a.dcm")
    info.external_attr = 0o120777 << 16  # a symbolic link
    with zipfile.ZipFile(link, "w") as z:
        z.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="symbolic link"):
        read_image(link)
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable zip"):
        read_image(corrupt)


# ----------------------------------------------------------------------------- SEG from known labels


def test_seg_of_known_labels_matches_voxel_for_voxel(series: Path, tmp_path: Path) -> None:
    ct = read_image(series)
    labels = ct.with_array(thresholds(ct.array[0])[None])
    path = write_dicom_seg(
        labels,
        series,
        tmp_path / "ct.seg.dcm",
        class_names=["body", "bone"],
        label_values=[1, 2],
        run_name="r7",
    )
    uids = ct.meta["SOPInstanceUIDs"]
    back = _seg_labels(path, uids)
    assert back.shape == labels.array.shape[1:]
    np.testing.assert_array_equal(back, labels.array[0])
    assert (back == 2).sum() > 1000 and (back == 1).sum() > 1000  # both masks are substantial

    ds = pydicom.dcmread(path)
    source = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == PATIENT["PatientID"]
    ref = ds.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == source.SeriesInstanceUID
    assert {item.ReferencedSOPInstanceUID for item in ref.ReferencedInstanceSequence} == set(uids)
    body, bone = ds.SegmentSequence
    assert (body.SegmentLabel, bone.SegmentLabel) == ("body", "bone")
    assert bone.SegmentedPropertyTypeCodeSequence[0].CodeValue == "272673000"  # SCT Bone
    assert body.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Tissue"  # generic code
    assert body.SegmentAlgorithmName == "medsight r7"


def test_seg_with_absent_segments_and_bad_labels(series: Path, tmp_path: Path) -> None:
    ct = read_image(series)
    only_bone = np.where(ct.array > 300, 2, 0).astype(np.uint8)
    path = write_dicom_seg(
        ct.with_array(only_bone), series, tmp_path / "a.seg.dcm", class_names=["body", "bone"]
    )
    np.testing.assert_array_equal(_seg_labels(path, ct.meta["SOPInstanceUIDs"]), only_bone[0])
    empty = write_dicom_seg(
        ct.with_array(np.zeros_like(only_bone)), series, tmp_path / "e.seg.dcm", class_names=["body", "bone"]
    )
    assert _seg_labels(empty, ct.meta["SOPInstanceUIDs"]).max() == 0
    with pytest.raises(DataError, match=r"values \[7\] not in label_values"):
        write_dicom_seg(ct.with_array(only_bone * 0 + 7), series, tmp_path / "b.dcm", class_names=["a", "b"])
    with pytest.raises(DataError, match="does not fit the source series"):
        write_dicom_seg(
            replace(ct, array=only_bone[:, :, :, :5]), series, tmp_path / "b.dcm", class_names=["a", "b"]
        )
    assert not (tmp_path / "b.dcm").exists()


def test_seg_needs_the_uids_it_references(data_root: Path, tmp_path: Path) -> None:
    raw = ct_series(data_root)  # the anonymised example: StudyInstanceUID blanked
    ct = read_image(raw)
    with pytest.raises(DataError, match="lack StudyInstanceUID"):
        write_dicom_seg(
            ct.with_array(np.zeros(ct.array.shape, np.uint8)), raw, tmp_path / "x.dcm", class_names=["a"]
        )


# ----------------------------------------------------------------------------- predict end to end


def test_predict_series_folder_writes_seg_equal_to_nifti(
    ct_run: Path,
    series: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    written = api.predict(ct_run, series, tmp_path / "out")
    assert written == [tmp_path / "out" / "ct.nii.gz", tmp_path / "out" / "ct.seg.dcm"]
    nifti = read_image(written[0])
    source = read_image(series)
    np.testing.assert_allclose(nifti.affine, source.affine, atol=1e-4)
    np.testing.assert_array_equal(_seg_labels(written[1], source.meta["SOPInstanceUIDs"]), nifti.array[0])
    seg = pydicom.dcmread(written[1])
    assert seg.PatientName == PATIENT["PatientName"]  # the SEG carries the patient module, as required
    out = capsys.readouterr()
    logs = caplog.text + out.out + out.err
    assert "medsight" in logs  # logging was captured
    for value in (*PATIENT.values(), "Doe", "Jane"):
        assert value not in logs, f"patient identifier {value!r} in the logs"


def test_predict_zip_through_the_cli(ct_run: Path, series_zip: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medsight.cli.main import app

    out = tmp_path / "out"
    args = ["predict", "--run", str(ct_run), "--input", str(series_zip), "--output", str(out), "--dicom"]
    proc = CliRunner().invoke(app, args)
    assert proc.exit_code == 0, proc.output
    assert proc.stdout.split() == [str(out / "ct.nii.gz"), str(out / "ct.seg.dcm")]
    for value in PATIENT.values():
        assert value not in proc.output
    seg = hd.seg.segread(out / "ct.seg.dcm")
    assert seg.NumberOfFrames >= 1 and seg.Rows == 512 and seg.Columns == 512
    assert (
        seg.ReferencedSeriesSequence[0].SeriesInstanceUID == read_image(series_zip).meta["SeriesInstanceUID"]
    )


# ----------------------------------------------------------------------------- classification SR


def _sr_items(path: Path) -> dict[str, object]:
    """Concept name -> value of the NUM and CODE items of an SR's measurement group."""
    ds = pydicom.dcmread(path)
    imaging = next(i for i in ds.ContentSequence if i.ValueType == "CONTAINER")
    group = imaging.ContentSequence[0]
    items: dict[str, object] = {}
    for item in group.ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "NUM":
            items[name] = float(item.MeasuredValueSequence[0].NumericValue)
        elif item.ValueType == "CODE":
            items[name] = item.ConceptCodeSequence[0].CodeMeaning
    return items


def test_classification_sr_reads_back(series: Path, series_zip: Path, tmp_path: Path) -> None:
    one_file = next(series.iterdir())
    path = write_classification_sr(
        one_file, {"normal": 0.25, "pneumonia": 0.75}, ["pneumonia"], tmp_path / "x.sr.dcm", run_name="c1"
    )
    sr = hd.sr.srread(path)
    source = pydicom.dcmread(one_file, stop_before_pixels=True)
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.Modality == "SR"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    items = _sr_items(path)
    assert items["Probability of normal"] == pytest.approx(0.25)
    assert items["Probability of pneumonia"] == pytest.approx(0.75)
    assert items["Finding"] == "pneumonia"
    # from a prediction CSV (the format predict writes), a zipped series as input
    table = tmp_path / "predictions.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows(
            [["input", "normal", "pneumonia", "predicted"], [str(series_zip), "0.9", "0.1", "normal"]]
        )
    written = classification_srs(table, "c1", required=True)
    assert written == [tmp_path / "ct.sr.dcm"]
    assert _sr_items(written[0])["Finding"] == "normal"
    with pytest.raises(DataError, match="not among the classes"):
        write_classification_sr(one_file, {"a": 1.0}, ["b"], tmp_path / "y.dcm")


def test_classify_a_dicom_file_writes_an_sr(classify_run: Path, series: Path, tmp_path: Path) -> None:
    one_file = sorted(series.iterdir())[10]
    written = api.predict(classify_run, one_file, tmp_path / "out")
    table, sr_path = written
    assert sr_path == tmp_path / "out" / f"{one_file.name[:-4]}.sr.dcm"
    with open(table, newline="") as f:
        header, row = list(csv.reader(f))
    items = _sr_items(sr_path)
    for name, value in zip(header[1:-1], row[1:-1], strict=True):
        assert items[f"Probability of {name}"] == pytest.approx(float(value))
    assert items["Finding"] == row[-1]
    assert hd.sr.srread(sr_path).StudyInstanceUID == pydicom.dcmread(one_file).StudyInstanceUID
