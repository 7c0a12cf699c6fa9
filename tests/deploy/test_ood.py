"""The out-of-distribution flag: an input profile of the training images, calibrated so that about 1% of
similar inputs are flagged, with the reason for each flag; fitted after training and used by predict,
predict --model and the service."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from medsight import api
from medsight.deploy.feature_profile import FEATURES_FILE
from medsight.deploy.ood import MIN_THRESHOLD, PROFILE_FILE, InputProfile, fit_profile
from medsight.io import Image
from testkit import CLASSIFY_QUICK

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "classify"))
from classify_testutils import class_folders, medmnist_like  # noqa: E402


def scans(n: int, seed: int, size: int = 48, gain: float = 1.0) -> list[Image]:
    """Grey images of slightly varying size and brightness, like one scanner's."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = size + rng.integers(-2, 3, size=2)
        level = rng.normal(100, 5)
        array = np.clip(rng.normal(level, 20, (1, h, w)) * gain, 0, None).astype(np.float32)
        out.append(Image.from_array(array))
    return out


def ratio(reason: str) -> float:
    """The ``N.NNx`` a reason states."""
    return float(re.search(r"(\d+\.\d+)x", reason).group(1))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def profile() -> InputProfile:
    return fit_profile(scans(200, seed=0), scans(200, seed=1))


def test_about_one_percent_of_similar_inputs_are_flagged(profile: InputProfile) -> None:
    assert profile.threshold >= MIN_THRESHOLD and profile.calibration == "validation"
    flagged = np.mean([profile.check(im).flagged for im in scans(500, seed=2)])
    assert flagged <= 0.03  # calibrated at the 99th percentile of held-out scores


def test_a_larger_image_and_a_brighter_one_are_flagged_with_the_reason(profile: InputProfile) -> None:
    big = Image.from_array(np.repeat(np.repeat(scans(1, seed=3)[0].array, 2, axis=1), 2, axis=2))
    result = profile.check(big)
    assert (
        result.flagged
        and "size along axis" in result.reason
        and ratio(result.reason) == pytest.approx(2, 0.05)
    )
    bright = profile.check(scans(1, seed=4, gain=3.0)[0])
    assert bright.flagged and "intensity" in bright.reason and ratio(bright.reason) == pytest.approx(3, 0.05)
    rgb = profile.check(Image.from_array(np.zeros((3, 48, 48), dtype=np.float32)))
    assert rgb.flagged and "channel" in rgb.reason  # another channel count: unlike every training image


def smooth_scans(n: int, seed: int) -> list[Image]:
    """Textured grey images of varying brightness, like photographs of one camera."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = ndimage.gaussian_filter(rng.normal(0, 1, (64, 64)), 1.5) * 150 + rng.normal(120, 5)
        out.append(Image.from_array(np.clip(base, 0, 255)[None].astype(np.float32)))
    return out


def test_sensor_noise_and_blur_are_flagged_by_fine_detail() -> None:
    from scipy import ndimage

    profile = fit_profile(smooth_scans(60, seed=0), smooth_scans(60, seed=1))
    clean = smooth_scans(20, seed=2)
    assert not any(profile.check(im).flagged for im in clean[:5])
    rng = np.random.default_rng(3)
    noisy = Image.from_array(clean[0].array + rng.normal(0, 8, clean[0].array.shape).astype(np.float32))
    blurred = Image.from_array(ndimage.gaussian_filter(clean[1].array, (0, 2, 2)))
    for image, direction in ((noisy, 1), (blurred, -1)):
        result = profile.check(image)
        assert result.flagged and "fine detail" in result.reason
        assert (ratio(result.reason) - 1) * direction > 0  # more detail for noise, less for blur


def test_without_validation_the_threshold_comes_from_leave_one_out() -> None:
    profile = fit_profile(scans(40, seed=5))
    assert profile.calibration.startswith("training, leave-one-out") and profile.calibrated_on == 40
    assert np.mean([profile.check(im).flagged for im in scans(200, seed=6)]) <= 0.05


def test_identical_training_images_still_allow_small_changes() -> None:
    same = [Image.from_array(np.full((1, 32, 32), 50.0, dtype=np.float32)) for _ in range(5)]
    profile = fit_profile(same)
    assert profile.calibration.startswith("training")
    assert not profile.check(Image.from_array(np.full((1, 33, 33), 50.5, dtype=np.float32))).flagged
    assert profile.check(Image.from_array(np.full((1, 64, 64), 50.0, dtype=np.float32))).flagged


def test_profile_round_trip(profile: InputProfile, tmp_path: Path) -> None:
    profile.save(tmp_path)
    assert InputProfile.load(tmp_path) == profile
    assert InputProfile.load(tmp_path / "nowhere") is None


def test_a_trained_run_flags_unusual_inputs_in_predict_and_after_export(tmp_path: Path) -> None:
    data = medmnist_like(tmp_path / "bars.npz", n=(96, 48, 16))
    run = api.train(data, task="classify", overrides=CLASSIFY_QUICK, out=tmp_path / "runs", measure=False)
    assert (run / PROFILE_FILE).is_file() and (run / FEATURES_FILE).is_file()
    pics = class_folders(tmp_path / "pics", n=4, size=28)
    from PIL import Image as PILImage

    odd = np.asarray(PILImage.open(next(pics.rglob("*.png"))).resize((84, 84)))
    PILImage.fromarray(odd).save(pics / "horizontal" / "zoomed.png")
    for name, kwargs in (("run", {"run_dir": run}), ("onnx", {"model": api.export(run, "onnx")})):
        written = api.predict(input=pics, output=tmp_path / name, **kwargs)
        assert (tmp_path / name / "ood.csv").is_file() and tmp_path / name / "ood.csv" not in written
        rows = {r["case"]: r for r in csv.DictReader((tmp_path / name / "ood.csv").open())}
        assert len(rows) == 5
        zoomed = next(r for case, r in rows.items() if "zoomed" in case)
        assert (
            zoomed["flagged"] == "True"
        )  # 3x the pixels, each spread over 9: its fine detail is what stands out
        assert "fine detail" in zoomed["reason"] and ratio(zoomed["reason"]) < 0.5
        assert sum(r["flagged"] == "True" for r in rows.values()) == 1
        # the network's features are read from a run; ONNX Runtime has no hooks on its layers
        assert all((r["feature_score"] != "") == (name == "run") for r in rows.values())
