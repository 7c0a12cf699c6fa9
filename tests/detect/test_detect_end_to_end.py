"""A tiny detection run: ONNX boxes equal PyTorch's (< 1e-3 px), predict's files and resume, a DICOM
input's Comprehensive SR read back with highdicom, the served answer, fingerprint's problems, the
report's detection sections."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medsight import api
from medsight.runs import open_run
from medsight.task_registry import get_task


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("detect")
    example = get_task("detect").example(tmp / "data")
    quick = [
        *example.quick,
        "plan.score_threshold=0.0",
    ]  # an untrained-ish net still yields 100 boxes per image
    run = api.train(example.dataset, task="detect", overrides=quick, out=tmp / "runs", measure=False)
    return run, example.inputs


@pytest.fixture(scope="module")
def exported(tiny: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return api.export(tiny[0], out=tmp_path_factory.mktemp("export") / "onnx")


def test_onnx_boxes_equal_pytorch(tiny: tuple[Path, Path], exported: Path) -> None:
    from medsight.data.inputs import input_samples
    from medsight.deploy.runtime import OnnxPredictor
    from medsight.tasks.detect.pipeline import load_model, predict_cases

    run_dir, inputs = tiny
    run = open_run(run_dir)
    cases = input_samples(inputs)
    _, model = load_model(run, "cpu")
    torch_boxes = predict_cases(model, run.plan, cases)
    onnx = OnnxPredictor(exported)
    onnx_boxes = onnx.runtime.detect_arrays([c.read() for c in cases])
    for a, b in zip(torch_boxes, onnx_boxes, strict=True):
        assert len(a["boxes"]) == len(b["boxes"]) == run.plan.max_detections
        assert np.abs(a["boxes"] - b["boxes"]).max() < 1e-3
        np.testing.assert_array_equal(a["labels"], b["labels"])
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)


_BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch imported by the ONNX runtime: " + name)
sys.meta_path.insert(0, _Block())
from medsight.deploy.runtime import OnnxPredictor
out = OnnxPredictor(sys.argv[1]).predict_path(sys.argv[2], sys.argv[3])
assert "torch" not in sys.modules and "monai" not in sys.modules
print(len(out))
"""


def test_onnx_runtime_never_imports_torch(tiny: tuple[Path, Path], exported: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    args = [sys.executable, "-c", _BLOCK_TORCH, str(exported), str(tiny[1]), str(tmp_path / "out")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "detections.json").is_file()


def test_predict_files_formats_and_resume(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, inputs = tiny
    out = tmp_path / "pred"
    written = api.predict(run_dir, inputs, out)
    assert written[:3] == [out / "detections.csv", out / "detections.json", out / "images.csv"]
    with (out / "detections.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "class", "score", "x0", "y0", "x1", "y1"]
    assert len(rows) == 3 * 100 and {r["class"] for r in rows} <= {"square", "bar"}
    results = json.loads((out / "detections.json").read_text())
    first = results[0]
    x0, y0, x1, y1 = (float(rows[0][k]) for k in ("x0", "y0", "x1", "y1"))
    assert first["image_id"] == 1 and first["category_id"] in (1, 2)
    assert first["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=2e-3)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["img032.png", "img033.png", "img034.png"]
    before = (out / "detections.csv").read_text()
    (out / "overlays" / "img033.png").unlink()
    api.predict(run_dir, inputs, out)  # every input done: nothing is redone
    assert not (out / "overlays" / "img033.png").exists() and (out / "detections.csv").read_text() == before
    from medsight.tasks.detect.predictor import predict_path

    run = open_run(run_dir)
    part = predict_path(run, inputs, tmp_path / "shards", shard="0/2")
    assert part[0].name == "images.part-0-of-2.csv"
    merged = predict_path(run, inputs, tmp_path / "shards", shard="1/2")
    assert merged[0].name == "detections.csv"
    _assert_same_detections(tmp_path / "shards" / "detections.csv", before)


def _assert_same_detections(path: Path, expected: str) -> None:
    """The same rows (file, class) with the same numbers up to one unit of their last written digit: the
    shards batch other images together, which moves a float's 7th digit and can flip a written 6th."""
    import io

    got, want = (list(csv.DictReader(io.StringIO(text))) for text in (path.read_text(), expected))
    assert [(r["file"], r["class"]) for r in got] == [(r["file"], r["class"]) for r in want]
    for key, tol in (("score", 1.5e-6), ("x0", 1.5e-3), ("y0", 1.5e-3), ("x1", 1.5e-3), ("y1", 1.5e-3)):
        np.testing.assert_allclose([float(r[key]) for r in got], [float(r[key]) for r in want], atol=tol)


def _dicom(path: Path, pixels: np.ndarray) -> Path:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = (
        SecondaryCaptureImageStorage,
        generate_uid(),
    )
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = (
        "P1",
        "Test^P",
        "OT",
        "1",
        1,
        1,
    )
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "20240101", "120000", "A1", ""
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_dicom_input_gets_a_comprehensive_sr(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    import highdicom as hd
    from PIL import Image

    run_dir, inputs = tiny
    (tmp_path / "in").mkdir()
    source = _dicom(tmp_path / "in" / "xray.dcm", np.asarray(Image.open(inputs / "img032.png")))
    written = api.predict(run_dir, source, tmp_path / "out", dicom=True)
    target = tmp_path / "out" / "xray.sr.dcm"
    assert target in written
    sr = hd.sr.srread(target)
    import pydicom

    assert sr.Modality == "SR" and sr.StudyInstanceUID == pydicom.dcmread(source).StudyInstanceUID
    groups = sr.content.get_planar_roi_measurement_groups()
    with (tmp_path / "out" / "detections.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(groups) == len(rows) == 100
    region = groups[0].roi
    x0, y0, x1, y1 = (float(rows[0][k]) for k in ("x0", "y0", "x1", "y1"))
    np.testing.assert_allclose(region.value[:4], [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], atol=1e-3)
    assert groups[0].finding_type.meaning == rows[0]["class"]


def test_served_answer_and_preview(tiny: tuple[Path, Path]) -> None:
    from medsight.deploy.serving import load_service_model
    from medsight.io import read_image

    run_dir, inputs = tiny
    model = load_service_model(run_dir)
    image = read_image(inputs / "img032.png")
    model.check(image)
    body = model.predict(image, "json", preview=True)
    assert body["task"] == "detect" and body["classes"] == ["square", "bar"] and len(body["boxes"]) == 100
    assert set(body["boxes"][0]) == {"label", "score", "box"} and body["preview"]["image"]


def test_report_has_detection_figures(tiny: tuple[Path, Path]) -> None:
    run_dir, _ = tiny
    html = (run_dir / "report.html").read_text()
    assert "Best and worst images (val)" in html and "precision recall" in html and "froc" in html
    summary = json.loads((run_dir / "eval" / "val" / "summary.json").read_text())
    assert {"map_50", "map_50_95", "cpm", "sens_at_fp_1"} <= set(summary["all"])
    assert set(summary["per_class"]) == {"square", "bar"}


def test_fingerprint_lists_every_problem(tmp_path: Path) -> None:
    from medsight.config import load_config

    example = get_task("detect").example(tmp_path / "data")
    content = json.loads((example.dataset / "annotations.json").read_text())
    content["annotations"][0]["bbox"][2] = -3
    content["annotations"][1]["category_id"] = 99
    (example.dataset / "annotations.json").write_text(json.dumps(content))
    family = get_task("detect")
    from medsight.data.boxes import load_boxes

    data = load_boxes(example.dataset, strict=False)
    lines = family.fingerprint(data, load_config(None, task="detect")).summary_lines()
    assert "  problems: 2" in lines
    assert any("annotation 1: bbox: expected width and height > 0" in line for line in lines)
    assert any("annotation 2: category_id: expected one of [1, 2], found 99" in line for line in lines)
