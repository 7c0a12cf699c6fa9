"""Export (ONNX, TorchScript) and the torch-free ONNX runtime: the same outputs as the PyTorch path."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medsight import api
from medsight.data import make_phantom_dataset
from medsight.errors import ConfigError, DataError
from medsight.io import read_image
from medsight.runs import open_run
from testkit import CLASSIFY_QUICK, SEGMENT_QUICK

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "classify"))

from classify_testutils import medmnist_like  # noqa: E402
from deploy_testutils import bar_pngs  # noqa: E402

SEG_QUICK = [*SEGMENT_QUICK, "train.max_iterations=2", "data.fold=all"]
CLS_QUICK = [*CLASSIFY_QUICK, "train.max_iterations=12", "train.iterations_per_epoch=6"]
PROB_TOL = 1e-4
BOUNDARY_BAND = 1e-4  # real data: at most this fraction of pixels within PROB_TOL of a decision boundary


def _torch_probabilities(run_dir: Path, image: object) -> np.ndarray:
    """Full-size probabilities of the PyTorch path (what SegmentTask.predict turns into labels)."""
    import torch

    from medsight.tasks.segment.pipeline import load_model
    from medsight.transforms.segmentation import preprocess, restore

    task, model = load_model(open_run(run_dir), "cpu")
    pre = preprocess(image, None, task.plan)
    with torch.inference_mode():
        probs = task._predict_grid(
            model, pre.image, torch.device("cpu"), tta=task.plan.tta, probabilities=True
        )
    return restore(probs.numpy(), pre, background=0.0 if task.plan.regions else 1.0)


def _same_label_maps(a: list[Path], b: list[Path], undecided: list[np.ndarray] | None = None) -> None:
    """Same names, geometry and labels; with ``undecided`` (a mask per map), labels only elsewhere."""
    assert [p.name for p in a] == [p.name for p in b] and a
    for n, (pa, pb) in enumerate(zip(a, b, strict=True)):
        ia, ib = read_image(pa), read_image(pb)
        keep = np.ones(ia.shape, bool) if undecided is None else ~undecided[n]
        assert ia.array.shape == ib.array.shape
        np.testing.assert_array_equal(ia.array[0][keep], ib.array[0][keep])
        np.testing.assert_allclose(ia.spacing, ib.spacing)
        np.testing.assert_allclose(ia.origin, ib.origin)
        np.testing.assert_allclose(ia.direction, ib.direction)


def _undecided_pixels(*probabilities: np.ndarray, regions: bool = False) -> np.ndarray:
    """Where a label may differ between two backends whose probabilities agree within PROB_TOL: a
    probability within PROB_TOL of the decision boundary in any of ``probabilities`` ``(C, *spatial)``
    (softmax: the two largest within 2 * PROB_TOL; sigmoid regions: any within PROB_TOL of 0.5)."""
    near = []
    for probs in probabilities:
        if regions:
            near.append((np.abs(probs - 0.5) <= PROB_TOL).any(axis=0))
        else:
            top = np.sort(probs, axis=0)
            near.append(top[-1] - top[-2] <= 2 * PROB_TOL)
    return np.logical_or.reduce(near)


def _undecided_rows(p1: np.ndarray, p2: np.ndarray, plan: object) -> np.ndarray:
    """Rows of two probability tables ``(N, K)`` with a probability within PROB_TOL (+ the CSV's
    rounding) of the plan's decision threshold: binary / multilabel thresholds, or the argmax."""
    tol = PROB_TOL + 1e-6
    if plan.problem in ("multiclass", "ordinal"):
        tops = [np.sort(p, axis=1) for p in (p1, p2)]
        return np.logical_or.reduce([t[:, -1] - t[:, -2] <= 2 * tol for t in tops])
    if plan.problem == "binary":
        thr = (plan.thresholds or [0.5])[0]
        return np.logical_or.reduce([np.abs(p[:, 1] - thr) <= tol for p in (p1, p2)])
    thr = np.asarray(plan.thresholds or [0.5] * p1.shape[1])
    return np.logical_or.reduce([(np.abs(p - thr) <= tol).any(axis=1) for p in (p1, p2)])


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fundus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom_dataset(
        tmp_path_factory.mktemp("data") / "fundus", kind="fundus2d", n_train=3, n_test=2, seed=3, size=64
    )


@pytest.fixture(scope="module")
def fundus_run(fundus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    quick = [*SEG_QUICK, "plan.patch_size=[32,32]"]  # several overlapping windows per image
    return api.train(fundus, overrides=quick, out=tmp_path_factory.mktemp("runs"), measure=False)


@pytest.fixture(scope="module")
def fundus_onnx(fundus_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return api.export(fundus_run, "onnx", tmp_path_factory.mktemp("exports") / "fundus")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = medmnist_like(tmp_path_factory.mktemp("data") / "bars.npz", n=(48, 16, 16))
    return api.train(
        data, task="classify", overrides=CLS_QUICK, out=tmp_path_factory.mktemp("runs"), measure=False
    )


@pytest.fixture(scope="module")
def classifier_onnx(classifier: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return api.export(classifier, "onnx", tmp_path_factory.mktemp("exports") / "bars")


# ------------------------------------------------------------------------------------ segmentation
def test_export_writes_model_and_complete_spec(fundus_run: Path, fundus_onnx: Path) -> None:
    import onnx

    assert sorted(p.name for p in fundus_onnx.iterdir()) == [
        "deploy.json",
        "input_profile.json",
        "model.onnx",
    ]
    onnx.checker.check_model(str(fundus_onnx / "model.onnx"))
    graph = onnx.load(str(fundus_onnx / "model.onnx")).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[2:]] == [32, 32]
    spec = json.loads((fundus_onnx / "deploy.json").read_text())
    plan = open_run(fundus_run).plan
    assert spec["task"] == "segment" and spec["dim"] == 2 and spec["in_channels"] == plan.in_channels
    assert spec["runtime"] == "medsight.tasks.segment.runtime"  # the task's torch-free half
    assert spec["patch_size"] == [32, 32] and spec["overlap"] == plan.sliding_window_overlap
    assert spec["label_values"] == plan.label_values and spec["class_names"] == plan.class_names
    assert spec["target_spacing"] == plan.target_spacing and spec["tta_flip_axes"] == [[0], [1], [0, 1]]
    assert spec["source_run"] == fundus_run.name and spec["opset"] == 17 and spec["medsight_version"]
    assert spec["normalization"] == [n.model_dump(mode="json") for n in plan.normalization]


def test_onnx_segmentation_equals_pytorch_2d(
    fundus_run: Path, fundus_onnx: Path, fundus: Path, tmp_path: Path
) -> None:
    from medsight.deploy.runtime import OnnxPredictor

    case = sorted((fundus / "imagesTs").iterdir())[0]
    image = read_image(case)
    want = _torch_probabilities(fundus_run, image)
    got = OnnxPredictor(fundus_onnx).runtime.probabilities(image)
    assert got.shape == want.shape == (2, *image.shape)
    assert float(np.abs(got - want).max()) <= PROB_TOL
    by_torch = api.predict(fundus_run, fundus / "imagesTs", tmp_path / "torch")
    by_onnx = api.predict(input=fundus / "imagesTs", output=tmp_path / "onnx", model=fundus_onnx)
    _same_label_maps(by_torch, by_onnx)
    assert by_onnx[0].suffix == case.suffix  # the input's format


def test_onnx_segmentation_equals_pytorch_3d_regions_lcc(tmp_path: Path) -> None:
    brain = make_phantom_dataset(tmp_path / "brain", kind="brain3d", n_train=3, n_test=1, seed=3, size=32)
    quick = [*SEG_QUICK, "plan.patch_size=[16,16,16]", "plan.postprocess_lcc=true", "plan.tta=false"]
    run = api.train(brain, overrides=quick, out=tmp_path / "runs", measure=False)
    plan = open_run(run).plan
    assert plan.dim == 3 and plan.postprocess_lcc
    export = api.export(run, "onnx", tmp_path / "export")
    from medsight.data.inputs import stack_channels
    from medsight.deploy.runtime import OnnxPredictor

    channels = sorted((brain / "imagesTs").iterdir())  # one file per MRI sequence
    image = stack_channels([read_image(p) for p in channels])
    got = OnnxPredictor(export).runtime.probabilities(image)
    assert got.shape == (len(plan.regions), *image.shape)
    assert float(np.abs(got - _torch_probabilities(run, image)).max()) <= PROB_TOL
    by_torch = api.predict(run, brain / "imagesTs", tmp_path / "torch", dicom=False)
    by_onnx = api.predict(input=brain / "imagesTs", output=tmp_path / "onnx", model=export)
    _same_label_maps(by_torch, by_onnx)
    assert by_onnx[0].name.endswith(".nii.gz")


def test_torchscript_export_predicts_the_same(
    fundus_run: Path, fundus_onnx: Path, fundus: Path, tmp_path: Path
) -> None:
    ts = api.export(fundus_run, "torchscript", tmp_path / "ts")
    assert (ts / "model.ts").is_file() and json.loads((ts / "deploy.json").read_text())[
        "format"
    ] == "torchscript"
    by_ts = api.predict(input=fundus / "imagesTs", output=tmp_path / "ts-out", model=ts)
    by_onnx = api.predict(input=fundus / "imagesTs", output=tmp_path / "onnx-out", model=fundus_onnx)
    _same_label_maps(by_ts, by_onnx)


# ---------------------------------------------------------------------------------- classification
def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_onnx_classification_equals_pytorch(classifier: Path, classifier_onnx: Path, tmp_path: Path) -> None:
    pngs = bar_pngs(tmp_path / "in", 6)
    by_torch = api.predict(classifier, tmp_path / "in", tmp_path / "torch.csv")[0]
    by_onnx = api.predict(input=tmp_path / "in", output=tmp_path / "onnx.csv", model=classifier_onnx)[0]
    (h1, r1), (h2, r2) = _read_csv(by_torch), _read_csv(by_onnx)
    names = open_run(classifier).plan.class_names
    assert h1 == h2 == ["input", *names, "predicted"] and len(r1) == len(r2) == len(pngs)
    assert [r[0] for r in r1] == [r[0] for r in r2] and [r[-1] for r in r1] == [r[-1] for r in r2]
    p1 = np.array([[float(v) for v in r[1:-1]] for r in r1])
    p2 = np.array([[float(v) for v in r[1:-1]] for r in r2])
    assert float(np.abs(p1 - p2).max()) <= PROB_TOL + 1e-6  # CSV keeps 6 decimals


def test_classification_spec_and_probabilities(classifier: Path, classifier_onnx: Path) -> None:
    from medsight.data.classification import load_classification
    from medsight.deploy.runtime import OnnxPredictor
    from medsight.tasks.classify.pipeline import load_model, predict_probabilities, stack_inputs

    spec = json.loads((classifier_onnx / "deploy.json").read_text())
    plan = open_run(classifier).plan
    assert spec["task"] == "classify" and spec["input_size"] == plan.input_size
    assert spec["runtime"] == "medsight.tasks.classify.runtime"
    assert spec["problem"] == plan.problem and spec["thresholds"] == plan.thresholds
    samples = load_classification(open_run(classifier).config.data.dataset).splits["test"][:10]
    task, model = load_model(open_run(classifier), "cpu")
    want = predict_probabilities(task, model, stack_inputs(samples, task.plan))
    got = OnnxPredictor(classifier_onnx).runtime.probabilities(samples)
    assert got.shape == want.shape and float(np.abs(got - want).max()) <= PROB_TOL


# ------------------------------------------------------------------------------------ torch-free
_BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch imported by the ONNX runtime: " + name)
sys.meta_path.insert(0, _Block())
from medsight import api
out = api.predict(input=sys.argv[2], output=sys.argv[3], model=sys.argv[1])
assert "torch" not in sys.modules and "monai" not in sys.modules
print(len(out))
"""


def test_onnx_runtime_never_imports_torch(
    fundus_onnx: Path, classifier_onnx: Path, fundus: Path, tmp_path: Path
) -> None:
    bar_pngs(tmp_path / "pngs", 3)
    for model, source, out in (
        (fundus_onnx, fundus / "imagesTs", tmp_path / "seg"),
        (classifier_onnx, tmp_path / "pngs", tmp_path / "cls.csv"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", _BLOCK_TORCH, str(model), str(source), str(out)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert int(done.stdout.strip()) >= 1


# ------------------------------------------------------------------------------------ CLI, errors
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medsight.cli.main", *args], capture_output=True, text=True)


def test_cli_export_and_predict_with_model(classifier: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    done = _cli("export", "--run", str(classifier), "--format", "onnx", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "model.onnx").is_file() and (out / "deploy.json").is_file()
    again = _cli("export", "--run", str(classifier), "--out", str(out))
    assert again.returncode == 2 and str(out) in again.stderr and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    bar_pngs(tmp_path / "in", 2)
    done = _cli(
        "predict", "--model", str(out), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "p")
    )
    assert done.returncode == 0, done.stderr
    header, rows = _read_csv(tmp_path / "p" / "predictions.csv")
    assert header[0] == "input" and header[-1] == "predicted" and len(rows) == 2
    both = _cli("predict", "--run", str(classifier), "--model", str(out), "--input", "x", "--output", "y")
    assert both.returncode == 2 and "exactly one of --run" in both.stderr and "both" in both.stderr
    with pytest.raises(ConfigError, match="exactly one of --run .* got neither"):
        api.predict(input="x", output="y")


def test_export_never_overwrites_unless_forced(classifier: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=f"--out: {out} exists and is not empty"):
        api.export(classifier, "onnx", out)
    assert (out / "notes.txt").read_text() == "keep me"
    assert api.export(classifier, "onnx", out, force=True) == out
    assert sorted(p.name for p in out.iterdir()) == ["deploy.json", "input_profile.json", "model.onnx"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_bad_exports_give_clear_errors(classifier: Path, classifier_onnx: Path, tmp_path: Path) -> None:
    from medsight.deploy.runtime import OnnxPredictor

    with pytest.raises(ConfigError, match="--format: expected one of onnx, torchscript, got 'tflite'"):
        api.export(classifier, "tflite", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="deploy.json is missing"):
        OnnxPredictor(empty)
    with pytest.raises(DataError, match="folder not found"):
        OnnxPredictor(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    spec = json.loads((classifier_onnx / "deploy.json").read_text())
    (broken / "deploy.json").write_text(json.dumps({**spec, "format": "tflite"}))
    with pytest.raises(DataError, match="format: expected 'onnx' or 'torchscript', found 'tflite'"):
        OnnxPredictor(broken)
    (broken / "deploy.json").write_text(json.dumps(spec))
    with pytest.raises(DataError, match="model.onnx: model file missing"):
        OnnxPredictor(broken)
    (broken / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a loadable ONNX model"):
        OnnxPredictor(broken)
    (broken / "deploy.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        OnnxPredictor(broken)


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        ("os", r"runtime: expected a module under medsight.tasks .*found 'os'"),
        ("medsight.tasksx.evil", "expected a module under medsight.tasks"),
        ("medsight.tasks.segment.runtime; import os", "expected a module under medsight.tasks"),
        ("medsight.tasks.nowhere.runtime", "module medsight.tasks.nowhere.runtime not found"),
        ("medsight.tasks.contract", "defines no Runtime class"),
    ],
)
def test_deploy_json_names_a_task_runtime_or_is_refused(
    classifier_onnx: Path, tmp_path: Path, runtime: str, message: str
) -> None:
    from medsight.deploy.runtime import OnnxPredictor

    spec = json.loads((classifier_onnx / "deploy.json").read_text())
    (tmp_path / "model.onnx").symlink_to(classifier_onnx / "model.onnx")
    (tmp_path / "deploy.json").write_text(json.dumps({**spec, "runtime": runtime}))
    with pytest.raises(DataError, match=message) as err:
        OnnxPredictor(tmp_path)
    assert "deploy.json" in str(err.value)


def test_an_export_without_runtime_field_uses_its_task_runtime(classifier_onnx: Path, tmp_path: Path) -> None:
    """Exports written before deploy.json named its runtime still run."""
    from medsight.deploy.runtime import OnnxPredictor

    spec = json.loads((classifier_onnx / "deploy.json").read_text())
    del spec["runtime"]
    (tmp_path / "model.onnx").symlink_to(classifier_onnx / "model.onnx")
    (tmp_path / "deploy.json").write_text(json.dumps(spec))
    assert type(OnnxPredictor(tmp_path).runtime).__module__ == "medsight.tasks.classify.runtime"
    plan = dict(spec["plan"], input_size="big")
    (tmp_path / "deploy.json").write_text(json.dumps({**spec, "plan": plan}))
    with pytest.raises(DataError, match="deploy.json: invalid plan"):
        OnnxPredictor(tmp_path)


# ------------------------------------------------------------------------------------- real images
@pytest.mark.realdata
@pytest.mark.slow
def test_onnx_equals_pytorch_on_real_drive_fundus_images(data_root: Path, tmp_path: Path) -> None:
    """A 2D segmenter trained a few steps on DRIVE, on 2 real DRIVE test images (565x584 RGB TIF)."""
    quick = [*SEG_QUICK, "plan.patch_size=[128,128]", "plan.batch_size=4", "plan.tta=false"]
    run = api.train("drive", overrides=quick, out=tmp_path / "runs", measure=False)
    export = api.export(run, "onnx", tmp_path / "export")
    images = sorted((data_root / "drive" / "testing" / "images").glob("*.tif"))[:2]
    (tmp_path / "in").mkdir()
    for p in images:
        (tmp_path / "in" / p.name).symlink_to(p)
    from medsight.deploy.runtime import OnnxPredictor

    runtime = OnnxPredictor(export).runtime
    undecided = []
    for path in images:
        image = read_image(path)
        got, want = runtime.probabilities(image), _torch_probabilities(run, image)
        assert got.shape == want.shape == (2, *image.shape)
        assert float(np.abs(got - want).max()) <= PROB_TOL
        undecided.append(_undecided_pixels(got, want))
        assert undecided[-1].mean() < BOUNDARY_BAND, f"{path.name}: {undecided[-1].sum()} pixels near 0.5"
    by_torch = api.predict(run, tmp_path / "in", tmp_path / "torch")
    by_onnx = api.predict(input=tmp_path / "in", output=tmp_path / "onnx", model=export)
    _same_label_maps(by_torch, by_onnx, undecided)  # a label at the 0.5 boundary may go either way
    assert [p.suffix for p in by_onnx] == [".tif", ".tif"]
    assert read_image(by_onnx[0]).shape == read_image(images[0]).shape


@pytest.mark.realdata
@pytest.mark.slow
def test_onnx_equals_pytorch_on_real_breastmnist_images(data_root: Path, tmp_path: Path) -> None:
    """A classifier trained a few steps on BreastMNIST, on 8 real test images written as PNG."""
    from PIL import Image as PILImage

    run = api.train("breastmnist", task="classify", overrides=CLS_QUICK, out=tmp_path / "runs", measure=False)
    export = api.export(run, "onnx", tmp_path / "export")
    images = np.load(data_root / "medmnist" / "breastmnist.npz")["test_images"][:8]
    (tmp_path / "in").mkdir()
    for i, img in enumerate(images):
        PILImage.fromarray(img).save(tmp_path / "in" / f"breast{i}.png")
    (h1, r1), (h2, r2) = (
        _read_csv(api.predict(run, tmp_path / "in", tmp_path / "torch.csv", dicom=False)[0]),
        _read_csv(api.predict(input=tmp_path / "in", output=tmp_path / "onnx.csv", model=export)[0]),
    )
    assert h1 == h2 and [r[0] for r in r1] == [r[0] for r in r2] and len(r1) == 8
    p1, p2 = (np.array([[float(v) for v in r[1:-1]] for r in rows]) for rows in (r1, r2))
    assert float(np.abs(p1 - p2).max()) <= PROB_TOL + 1e-6
    undecided = _undecided_rows(p1, p2, open_run(run).plan)  # at the threshold: either label
    assert undecided.sum() <= 1
    assert [r[-1] for r, u in zip(r1, undecided, strict=True) if not u] == [
        r[-1] for r, u in zip(r2, undecided, strict=True) if not u
    ]


# --------------------------------------------------- the shared numpy pre/post-processing vs torch
@pytest.mark.parametrize(
    ("shape", "target"),
    [((3, 37, 50), (80, 23)), ((2, 40, 30, 20), (15, 11, 8)), ((1, 5, 9, 5), (9, 3, 12))],
)
def test_numpy_resize_equals_torch_interpolate(shape: tuple, target: tuple) -> None:
    import torch
    import torch.nn.functional as F

    from medsight.transforms.segmentation import resize

    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    mode = "bilinear" if len(target) == 2 else "trilinear"
    want = F.interpolate(torch.from_numpy(x)[None], size=target, mode=mode, align_corners=False)[0]
    np.testing.assert_allclose(resize(x, target), want.numpy(), atol=2e-5)
    lab = rng.integers(0, 5, size=shape).astype(np.int16)
    want_lab = F.interpolate(torch.from_numpy(lab)[None].float(), size=target, mode="nearest-exact")[0]
    np.testing.assert_array_equal(resize(lab, target, labels=True), want_lab.to(torch.int16).numpy())


@pytest.mark.parametrize(
    ("size", "roi", "overlap"), [((70, 41), (32, 32), 0.5), ((20, 33, 9), (16, 16, 8), 0.25)]
)
def test_numpy_windows_and_gaussian_equal_monai(size: tuple, roi: tuple, overlap: float) -> None:
    from monai.data.utils import compute_importance_map, dense_patch_slices

    from medsight.engine.windows import importance_map, plan_windows

    plan = plan_windows(size, roi, overlap)
    interval = [max(int(r * (1 - overlap)), 1) for r in roi]
    want = dense_patch_slices(plan.size, roi, interval)
    assert sorted(plan.windows, key=lambda w: [s.start for s in w]) == sorted(
        want, key=lambda w: [s.start for s in w]
    )
    np.testing.assert_allclose(
        importance_map(roi), compute_importance_map(roi, mode="gaussian").numpy(), rtol=1e-6
    )
