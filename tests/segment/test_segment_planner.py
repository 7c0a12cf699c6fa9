"""Planning from a fingerprint: spacing, normalisation, patch size, batch, overrides."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.data.fingerprint import CaseFingerprint, ClassStats, Fingerprint, IntensityStats
from medsight.errors import ConfigError
from medsight.models import build_model
from medsight.planning import CPU_BUDGET, search
from medsight.planning.search import StepProbe
from medsight.tasks.segment.planning import plan_segmentation


def _fingerprint(
    dim: int, shapes: list[list[int]], spacings: list[list[float]], modality: str = "MR", channels: int = 1
) -> Fingerprint:
    stats = IntensityStats(
        mean=40.0,
        std=100.0,
        median=30.0,
        min=-1000.0,
        max=2000.0,
        percentile_00_5=-900.0,
        percentile_99_5=1500.0,
        n_samples=1000,
    )
    cases = [
        CaseFingerprint(
            case_id=f"c{i}",
            shape=s,
            spacing=sp,
            channels=channels,
            cropped_shape=s,
            class_voxels={0: 100, 1: 10},
        )
        for i, (s, sp) in enumerate(zip(shapes, spacings, strict=True))
    ]
    arr_sp = np.array(spacings)
    return Fingerprint(
        name="synthetic",
        dim=dim,
        num_train=len(cases),
        num_test=0,
        num_channels=channels,
        channel_names={c: modality for c in range(channels)},
        modality={c: modality for c in range(channels)},
        labels={"background": 0, "organ": 1},
        median_shape=list(np.median(shapes, axis=0)),
        min_shape=list(np.min(shapes, axis=0)),
        max_shape=list(np.max(shapes, axis=0)),
        median_spacing=list(np.median(arr_sp, axis=0)),
        anisotropy=float(arr_sp.max() / arr_sp.min()),
        intensity={c: stats for c in range(channels)},
        intensity_source="foreground",
        classes=[
            ClassStats(
                name="organ", value=1, cases_present=len(cases), fraction_present=1.0, mean_voxel_fraction=0.1
            )
        ],
        cases=cases,
        issues=[],
    )


def test_anisotropic_ct_volume_gets_tenth_percentile_spacing_and_ct_normalisation() -> None:
    spacings = [[0.8, 0.8, s] for s in (2.5, 3.0, 5.0, 5.0, 5.0)]
    fp = _fingerprint(3, [[64, 64, 20]] * 5, spacings, modality="CT")
    plan = plan_segmentation(fp, measure=False)
    assert plan.target_spacing[2] == pytest.approx(np.percentile([2.5, 3.0, 5.0, 5.0, 5.0], 10))
    assert plan.normalization[0].scheme == "ct"
    assert plan.normalization[0].clip_low == -900.0 and plan.normalization[0].clip_high == 1500.0
    assert "anisotropic" in plan.reasons["target_spacing"]
    assert plan.dim == 3 and len(plan.patch_size) == 3


def test_large_volume_is_coarsened_and_patch_fits_cpu_budget() -> None:
    fp = _fingerprint(3, [[240, 240, 155]] * 3, [[1.0, 1.0, 1.0]] * 3)
    plan = plan_segmentation(fp, measure=False)
    assert min(plan.target_spacing) > 1.0  # 240x240x155 does not fit the CPU case budget at 1 mm
    assert np.prod(plan.patch_size) <= CPU_BUDGET.patch_voxels[3] * 1.01
    assert plan.normalization[0].scheme == "zscore"
    assert plan.batch_size >= 2


def test_2d_rgb_plan_keeps_resolution_and_scales_rgb() -> None:
    fp = _fingerprint(2, [[584, 565]] * 4, [[1.0, 1.0]] * 4, modality="RGB", channels=3)
    plan = plan_segmentation(fp, measure=False)
    assert plan.target_spacing == [1.0, 1.0]
    assert all(n.scheme == "rgb" for n in plan.normalization)
    assert plan.in_channels == 3 and plan.out_channels == 2
    assert all(p % 16 == 0 for p in plan.patch_size)
    assert np.prod(plan.patch_size) <= CPU_BUDGET.patch_voxels[2]


def test_measured_planning_records_step_times() -> None:
    fp = _fingerprint(2, [[64, 64]] * 4, [[1.0, 1.0]] * 4)
    plan = plan_segmentation(fp, measure=True)
    assert "base_filters=8: " in plan.reasons["width"] and "s per step" in plan.reasons["width"]


def test_overrides_apply_and_unknown_field_is_named() -> None:
    fp = _fingerprint(2, [[64, 64]] * 4, [[1.0, 1.0]] * 4)
    plan = plan_segmentation(fp, measure=False).with_overrides({"batch_size": 3, "tta": False})
    assert plan.batch_size == 3 and plan.tta is False
    assert plan.reasons["batch_size"] == "set by the user"
    with pytest.raises(ConfigError, match="plan.patch_sise.*did you mean 'patch_size'"):
        plan.with_overrides({"patch_sise": [32, 32]})
    with pytest.raises(ConfigError, match="plan.batch_size"):
        plan.with_overrides({"batch_size": "many"})


def _machine_of_constant_throughput(monkeypatch: pytest.MonkeyPatch, voxels_per_second: float) -> None:
    """Replace the measured step with a machine that processes a fixed number of voxels per second."""

    def step_seconds(probe: StepProbe) -> float:
        width = probe.options["base_filters"]
        return probe.batch_size * float(np.prod(probe.input_size)) * width / 16 / voxels_per_second

    monkeypatch.setattr(search, "measure_step", step_seconds)


def test_short_budget_on_many_images_trades_resolution_for_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine_of_constant_throughput(monkeypatch, voxels_per_second=330_000)  # ~0.8 s per 4 x 256^2
    fp = _fingerprint(2, [[256, 256]] * 1600, [[1.0, 1.0]] * 1600, modality="RGB", channels=3)
    plan = plan_segmentation(fp, measure=True, time_budget_s=1200)
    assert plan.target_spacing == [2.0, 2.0]
    assert plan.patch_size == [128, 128]
    assert "passes over the training data" in plan.reasons["target_spacing"]
    assert float(plan.reasons["passes"].split()[0].lstrip("~")) >= 10


def test_few_images_or_no_time_budget_keep_full_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine_of_constant_throughput(monkeypatch, voxels_per_second=330_000)
    drive_like = _fingerprint(2, [[584, 565]] * 20, [[1.0, 1.0]] * 20, modality="RGB", channels=3)
    assert plan_segmentation(drive_like, measure=True, time_budget_s=1200).target_spacing == [1.0, 1.0]
    many = _fingerprint(2, [[256, 256]] * 1600, [[1.0, 1.0]] * 1600)
    plan = plan_segmentation(many, measure=True)
    assert plan.target_spacing == [1.0, 1.0] and "passes" not in plan.reasons


def test_coarsening_stops_at_the_minimum_side(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine_of_constant_throughput(monkeypatch, voxels_per_second=10_000)  # a very slow machine
    fp = _fingerprint(2, [[256, 256]] * 1600, [[1.0, 1.0]] * 1600)
    assert plan_segmentation(fp, measure=True, time_budget_s=600).target_spacing == [2.0, 2.0]


def _timed_networks(monkeypatch: pytest.MonkeyPatch, seconds: float = 0.1) -> list[StepProbe]:
    """Record every network the planner times (each takes ``seconds`` per step)."""
    probes: list[StepProbe] = []

    def record(probe: StepProbe) -> float:
        probes.append(probe)
        return seconds

    monkeypatch.setattr(search, "measure_step", record)
    return probes


def test_a_network_override_is_the_network_timed_and_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    probes = _timed_networks(monkeypatch)
    fp = _fingerprint(3, [[40, 40, 24]] * 4, [[1.0, 1.0, 3.0]] * 4)  # anisotropic: DynUNet would take x8
    plan = plan_segmentation(fp, measure=True, overrides={"network": "unet"})
    assert {p.network for p in probes} == {"unet"}
    assert [p.options["base_filters"] for p in probes] == [8, 16, 32]  # all fast: the widest is kept
    assert plan.network == "unet" and plan.network_kwargs == {"base_filters": 32}
    assert plan.deep_supervision is False  # unet has no deep-supervision heads
    assert all(p % 16 == 0 for p in plan.patch_size)  # unet's declared multiple
    assert (
        plan.reasons["network"] == "set by the user" and "unet with base_filters=32" in plan.reasons["width"]
    )
    net = build_model("unet", spatial_dims=3, in_channels=1, out_channels=2, patch_size=plan.patch_size,
                      deep_supervision=plan.deep_supervision, **plan.network_kwargs)  # fmt: skip
    assert net is not None


def test_network_kwargs_override_is_timed_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    probes = _timed_networks(monkeypatch)
    fp = _fingerprint(2, [[64, 64]] * 4, [[1.0, 1.0]] * 4)
    kwargs = {"base_filters": 4, "depth": 2}
    plan = plan_segmentation(fp, measure=True, overrides={"network": "unet", "network_kwargs": kwargs})
    assert [(p.network, dict(p.options)) for p in probes] == [("unet", kwargs)]
    assert plan.network_kwargs == kwargs and "as configured" in plan.reasons["width"]


def test_default_network_is_timed_with_its_planned_options(monkeypatch: pytest.MonkeyPatch) -> None:
    probes = _timed_networks(monkeypatch, seconds=100.0)  # every width too slow: the narrowest is kept
    fp = _fingerprint(2, [[64, 64]] * 4, [[1.0, 1.0]] * 4)
    plan = plan_segmentation(fp, measure=True)
    assert [p.network for p in probes] == ["dynunet"]  # stops at the first that is too slow
    assert probes[0].options == {"spacing": [1.0, 1.0], "res_block": True, "base_filters": 8}
    assert plan.network_kwargs == {"base_filters": 8, "spacing": [1.0, 1.0], "res_block": True}
    with pytest.raises(ConfigError, match="plan.netwrk.*did you mean 'network'"):
        plan_segmentation(fp, measure=True, overrides={"netwrk": "unet"})
    assert len(probes) == 1  # the unknown field is named before anything is timed
