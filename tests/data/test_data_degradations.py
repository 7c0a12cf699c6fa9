"""The degradations of the enhance task family: parsing, k-space masks and data consistency, noise
statistics, low-dose CT and super-resolution, and their errors. Small seeded arrays, torch-free."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.data.degradations import (
    ACCEPTED_FORMS,
    Degradation,
    GaussianNoise,
    KSpaceUndersampling,
    LowDoseCT,
    RicianNoise,
    SuperResolution,
    data_consistency,
    fft2c,
    hu_to_attenuation,
    line_mask,
    parse_degradation,
    undersample,
    upsample_baseline,
    zero_filled,
)
from medsight.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return resize(shepp_logan_phantom(), (64, 64), anti_aliasing=True)


def smooth_image(h: int = 64, w: int = 64) -> np.ndarray:
    return np.add.outer(np.sin(np.linspace(0, 3, h)), np.cos(np.linspace(0, 2, w)))


# ---------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "cls", "settings"),
    [
        (
            "kspace:4x",
            KSpaceUndersampling,
            {"acceleration": 4, "center_fraction": 0.08, "pattern": "equispaced"},
        ),
        ("kspace:8x", KSpaceUndersampling, {"acceleration": 8, "center_fraction": 0.04, "axis": -1}),
        (
            "kspace:4x,pattern=random,center=0.06",
            KSpaceUndersampling,
            {"pattern": "random", "center_fraction": 0.06},
        ),
        ("KSPACE : 8x , axis=-2", KSpaceUndersampling, {"acceleration": 8, "axis": -2}),
        (
            "lowdose-ct:0.25",
            LowDoseCT,
            {"dose": 0.25, "i0": 1e5, "angles": 180, "input": "mu", "spacing": "image"},
        ),
        (
            "lowdose-ct:1,i0=1e6,angles=90,input=hu,spacing=0.7",
            LowDoseCT,
            {"i0": 1e6, "angles": 90, "input": "hu"},
        ),
        ("rician:0.05", RicianNoise, {"sigma": 0.05}),
        ("gaussian:0.1", GaussianNoise, {"sigma": 0.1}),
        ("sr:2x", SuperResolution, {"factor": 2, "axis": None, "order": 3}),
        ("sr:4x,axis=0,order=1", SuperResolution, {"factor": 4, "axis": 0, "order": 1}),
    ],
)
def test_every_form_parses_records_its_settings_and_round_trips(
    text: str, cls: type[Degradation], settings: dict
) -> None:
    deg = parse_degradation(text)
    assert type(deg) is cls
    record = deg.to_dict()
    assert record["kind"] == cls.kind
    assert settings.items() <= record.items()
    assert parse_degradation(record["spec"]) == deg
    with pytest.raises(AttributeError):
        deg.sigma = 1.0  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(
    "text",
    [
        "",
        "kspace",
        "kspace:4",
        "kspace:x4",
        "blur:2",
        "rician:abc",
        "kspace:4x,foo=1",
        "kspace:4x,center=0.1,center=0.1",
        "rician:0.05,axis=1",
        "kspace:1x",
        "kspace:4x,center=0.25",
        "kspace:4x,pattern=poisson",
        "kspace:4x,axis=0",
        "lowdose-ct:0",
        "lowdose-ct:1.5",
        "lowdose-ct:0.5,input=kev",
        "gaussian:-0.1",
        "gaussian:nan",
        "sr:1x",
        "sr:2x,order=7",
    ],
)
def test_bad_strings_raise_config_error_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_degradation(text)
    message = str(info.value)
    assert repr(text) in message
    assert all(form in message for form in ACCEPTED_FORMS)


def test_centre_rule_and_option_messages() -> None:
    with pytest.raises(ConfigError, match=r"0 < center < 1/8"):
        parse_degradation("kspace:8x,center=0.125")
    with pytest.raises(ConfigError, match=r"kspace accepts center, pattern, axis"):
        parse_degradation("kspace:4x,centre=0.08")
    with pytest.raises(ConfigError, match="center"):
        KSpaceUndersampling(4, center_fraction=0.3)


# ---------------------------------------------------------------------------------------------- k-space


@pytest.mark.parametrize(
    ("text", "n"), [("kspace:4x", 256), ("kspace:8x,pattern=random", 320), ("kspace:4x", 97)]
)
def test_mask_keeps_one_line_in_n_and_the_whole_centre(text: str, n: int) -> None:
    deg = parse_degradation(text)
    lines = line_mask(n, deg.acceleration, deg.center_fraction, deg.pattern, np.random.default_rng(1))
    assert abs(int(lines.sum()) - n / deg.acceleration) <= 1
    n_center = round(n * deg.center_fraction)
    start = (n - n_center + 1) // 2
    assert lines[start : start + n_center].all()
    assert lines[n // 2]  # DC


def test_mask_lines_run_along_the_phase_encoding_axis(phantom: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    columns = parse_degradation("kspace:4x").apply(phantom, rng).mask
    assert columns.shape == (64, 64) and (columns == columns[:1]).all() and columns.sum() == 16 * 64
    rows = parse_degradation("kspace:4x,axis=-2").apply(phantom, rng).mask
    assert (rows == rows[:, :1]).all() and rows.sum() == 16 * 64


def test_random_mask_follows_the_seed(phantom: np.ndarray) -> None:
    deg = parse_degradation("kspace:4x,pattern=random")
    first = deg.apply(phantom, np.random.default_rng(7)).mask
    assert np.array_equal(first, deg.apply(phantom, np.random.default_rng(7)).mask)
    assert not np.array_equal(first, deg.apply(phantom, np.random.default_rng(8)).mask)


def test_kspace_outputs_and_data_consistency_keeps_acquired_samples(phantom: np.ndarray) -> None:
    stack = np.stack([phantom, phantom.T, 0.5 * phantom])
    out = parse_degradation("kspace:8x,pattern=random").apply(stack, np.random.default_rng(3))
    assert out.image.shape == out.kspace.shape == stack.shape and out.mask.shape == (64, 64)
    assert np.iscomplexobj(out.kspace) and not out.kspace[:, ~out.mask].any()
    np.testing.assert_allclose(out.image, zero_filled(out.kspace), atol=1e-12)
    assert np.abs(out.image - stack).max() > 0.05  # undersampling is visible
    pred = fft2c(np.random.default_rng(4).normal(size=stack.shape))
    fixed = data_consistency(pred, out.kspace, out.mask)
    assert np.array_equal(fixed[:, out.mask], out.kspace[:, out.mask])
    assert np.array_equal(fixed[:, ~out.mask], pred[:, ~out.mask])


def test_fully_sampled_mask_returns_the_image(phantom: np.ndarray) -> None:
    full = np.ones((64, 64), dtype=bool)
    kspace, zf = undersample(phantom, full)
    np.testing.assert_allclose(zf, phantom, atol=1e-6)
    np.testing.assert_allclose(
        zero_filled(data_consistency(np.zeros_like(kspace), kspace, full)), phantom, atol=1e-6
    )
    complex_image = phantom * np.exp(1j * phantom)
    np.testing.assert_allclose(zero_filled(fft2c(complex_image), magnitude=False), complex_image, atol=1e-6)


# -------------------------------------------------------------------------------------------------- noise


def test_rician_background_mean_is_sigma_sqrt_pi_over_2() -> None:
    image = np.zeros((512, 512))
    image[:, 256:] = 1.0  # range 1: sigma is absolute here
    noisy = parse_degradation("rician:0.05").apply(image, np.random.default_rng(0)).image
    assert noisy.shape == image.shape and (noisy >= 0).all()
    assert noisy[:, :256].mean() == pytest.approx(0.05 * np.sqrt(np.pi / 2), rel=0.02)
    assert noisy[:, 256:].mean() == pytest.approx(1.0, abs=0.01)


def test_gaussian_noise_std_is_sigma_times_range() -> None:
    image = np.random.default_rng(1).uniform(-1.0, 3.0, size=(256, 256)).astype(np.float32)
    span = float(image.max() - image.min())
    out = parse_degradation("gaussian:0.05").apply(image, np.random.default_rng(2)).image
    assert out.dtype == np.float32
    assert (out - image).std() == pytest.approx(0.05 * span, rel=0.02)
    again = parse_degradation("gaussian:0.05").apply(image, np.random.default_rng(2)).image
    assert np.array_equal(out, again)


# ---------------------------------------------------------------------------------------------- low-dose CT


def test_lowdose_ct_noise_grows_as_the_dose_falls(phantom: np.ndarray) -> None:
    mu = 0.05 * phantom  # attenuation per pixel, line integrals up to ~2.5

    def error(text: str) -> float:
        out = parse_degradation(text).apply(mu, np.random.default_rng(0))
        assert out.image.shape == out.reference.shape == mu.shape
        return float(np.sqrt(np.mean((out.image - out.reference) ** 2)))

    ref = parse_degradation("lowdose-ct:1,angles=90").apply(mu, np.random.default_rng(0)).reference
    assert np.sqrt(np.mean((ref - mu) ** 2)) < 0.1 * mu.max()  # the FBP reference resembles the image
    assert error("lowdose-ct:1,i0=1e12,angles=90") < 1e-4 * mu.max()
    assert error("lowdose-ct:0.25,angles=90") > 1.5 * error("lowdose-ct:1,angles=90")


def test_lowdose_ct_in_hounsfield_units_and_stacks(phantom: np.ndarray) -> None:
    hu = 1000.0 * phantom[:40, :56] - 1000.0  # non-square, air to bone-like
    out = (
        parse_degradation("lowdose-ct:0.5,angles=60,input=hu")
        .at_pixel_size(1.0)
        .apply(hu[None].repeat(2, 0), np.random.default_rng(5))
    )
    assert out.image.shape == (2, 40, 56) and out.sinogram.shape[::2] == (2, 60)
    assert np.abs(np.median(out.reference - hu)) < 50.0
    np.testing.assert_allclose(hu_to_attenuation(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.0192, 0.0384])


def test_lowdose_ct_line_integrals_follow_the_physical_pixel_size(phantom: np.ndarray) -> None:
    """spacing=image: one body at 1 mm (48 pixels) and at 2 mm (24 pixels) meets the rays with the same
    attenuation, so the same dose is the same number of photons; a fixed pixel size of 1 mm would halve
    it at 2 mm. Without a pixel size, an array in HU is refused rather than given a guessed one."""
    fine = 1000.0 * phantom[:48, :48] - 1000.0
    coarse = fine.reshape(24, 2, 24, 2).mean(axis=(1, 3))
    deg = parse_degradation("lowdose-ct:1,i0=1e12,angles=90,input=hu")
    assert deg.at_pixel_size(2.0) == parse_degradation("lowdose-ct:1,i0=1e12,angles=90,input=hu,spacing=2")
    assert parse_degradation(deg.spec) == deg and "spacing=image" in deg.spec

    def attenuation(image: np.ndarray, mm: float, d: Degradation = deg) -> float:
        """The line integrals over the detector (bins of one pixel), in mm: the body's total attenuation."""
        return float(d.at_pixel_size(mm).apply(image, np.random.default_rng(0)).sinogram.sum()) * mm

    assert attenuation(coarse, 2.0) == pytest.approx(attenuation(fine, 1.0), rel=0.01)
    fixed = parse_degradation("lowdose-ct:1,i0=1e12,angles=90,input=hu,spacing=1")  # a fixed size wins
    assert attenuation(coarse, 2.0, fixed) == pytest.approx(attenuation(fine, 1.0) / 2, rel=0.01)
    with pytest.raises(DataError, match=r"spacing=image needs the image's pixel size.*spacing=<mm>"):
        deg.apply(fine, np.random.default_rng(0))


# ------------------------------------------------------------------------------------------ super-resolution


def test_sr_shapes_and_bicubic_baseline_is_close_on_smooth_images() -> None:
    image = smooth_image()
    out = parse_degradation("sr:2x").apply(image, np.random.default_rng(0))
    assert out.low_res.shape == (32, 32) and out.image.shape == image.shape
    np.testing.assert_allclose(out.low_res[0, 0], image[:2, :2].mean())
    assert np.abs(out.image - image).max() < 0.03 * np.ptp(image)
    odd = parse_degradation("sr:4x").apply(image[:63, :61], np.random.default_rng(0))
    assert odd.low_res.shape == (16, 16) and odd.image.shape == (63, 61)
    volume = np.stack([image] * 3, axis=-1)
    thick = parse_degradation("sr:4x,axis=0").apply(volume, np.random.default_rng(0))
    assert thick.low_res.shape == (16, 64, 3) and thick.image.shape == volume.shape
    up = upsample_baseline(out.low_res, 2, order=1, shape=(63, 64))
    assert up.shape == (63, 64)


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("text", ["kspace:4x", "lowdose-ct:0.5", "rician:0.05", "gaussian:0.05", "sr:2x"])
def test_non_finite_input_is_a_data_error(text: str) -> None:
    image = smooth_image(16, 16)
    image[3, 4] = np.nan
    with pytest.raises(DataError, match=r"image: 1 NaN/Inf"):
        parse_degradation(text).apply(image, np.random.default_rng(0))


@pytest.mark.parametrize("text", ["lowdose-ct:0.5", "rician:0.05", "sr:2x"])
def test_complex_input_where_magnitude_is_expected(text: str) -> None:
    with pytest.raises(DataError, match=r"image: expected a real \(magnitude\) image, got complex"):
        parse_degradation(text).apply(np.ones((16, 16), complex), np.random.default_rng(0))


def test_other_data_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(
        DataError, match=r"kspace: expected k-space of shape \(\.\.\., H, W\), got 1 dimension"
    ):
        zero_filled(np.ones(8, complex))
    with pytest.raises(DataError, match="kspace_pred: shape"):
        data_consistency(np.ones((8, 8)), np.ones((4, 8, 8)), np.ones((8, 8), bool))
    with pytest.raises(DataError, match="mask: shape"):
        data_consistency(np.ones((8, 8)), np.ones((8, 8)), np.ones((8, 4), bool))
    with pytest.raises(DataError, match=r"image: 8 phase-encoding lines are too few for 8x"):
        parse_degradation("kspace:8x").apply(np.ones((32, 8)), rng)
    with pytest.raises(DataError, match="image: expected at least 2 dimensions"):
        parse_degradation("kspace:4x").apply(np.ones(64), rng)
    with pytest.raises(DataError, match="linear attenuation must be >= 0"):
        parse_degradation("lowdose-ct:0.5").apply(-np.ones((16, 16)), rng)
    with pytest.raises(DataError, match="intensity range is 0"):
        parse_degradation("rician:0.05").apply(np.zeros((16, 16)), rng)
    with pytest.raises(DataError, match="fewer than factor 4"):
        parse_degradation("sr:4x").apply(np.ones((16, 3)), rng)
    with pytest.raises(DataError, match="axis 3 is out of range"):
        parse_degradation("sr:2x,axis=3").apply(np.ones((16, 16)), rng)
    with pytest.raises(ConfigError, match="rng: expected a numpy.random.Generator"):
        parse_degradation("gaussian:0.05").apply(np.ones((4, 4)), 0)  # type: ignore[arg-type]
