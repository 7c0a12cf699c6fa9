"""Batch inference: resume after a kill, skip finished outputs, shard by --shard I/N or torchrun."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_testutils import bar_pngs

from medsight import api
from medsight.errors import ConfigError, DataError
from medsight.io.batch import Shard, resolve_shard
from medsight.io.readers import split_suffix
from medsight.tasks.classify import outputs as classify_outputs
from medsight.tasks.classify import pipeline as classify_pipeline
from medsight.tasks.segment.predictor import Predictor


class Killed(Exception):
    """Stands for the process dying mid-run."""


def _cases(folder: Path) -> list[str]:
    """Case ids of the phantom images (``<case>_0000.png``)."""
    ids = sorted(split_suffix(p)[0].removesuffix("_0000") for p in folder.iterdir())
    assert len(ids) == 3
    return ids


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


@pytest.fixture
def predicted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Case ids the segmentation model is run on (in order)."""
    calls: list[str] = []
    original = Predictor.predict_files

    def spy(self: Predictor, files: list[Path], case_id: str):  # noqa: ANN202
        calls.append(case_id)
        return original(self, files, case_id)

    monkeypatch.setattr(Predictor, "predict_files", spy)
    return calls


# ------------------------------------------------------------------------------------------ sharding


def test_shards_split_sorted_ids_round_robin_and_cover_each_once() -> None:
    ids = [f"case_{i:02d}" for i in (7, 1, 4, 0, 9, 3, 2)]
    parts = [Shard(i, 3).select(ids) for i in range(3)]
    assert parts[0] == ["case_00", "case_03", "case_09"]  # sorted: 00 01 02 03 04 07 09
    assert sorted(sum(parts, [])) == sorted(ids)
    assert resolve_shard("1/3") == Shard(1, 3) and resolve_shard((2, 4)) == Shard(2, 4)


def test_shard_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resolve_shard() == Shard(0, 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolve_shard() == Shard(1, 2)
    assert resolve_shard("0/4") == Shard(0, 4)  # explicit wins


@pytest.mark.parametrize("bad", ["2/2", "-1/2", "1/0", "abc", "1-2"])
def test_bad_shard_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="--shard"):
        resolve_shard(bad)


# ------------------------------------------------------------------------------------------ segmentation


def test_segment_resume_skips_finished_cases_after_a_kill(
    segment_run: Path, fundus: Path, tmp_path: Path, predicted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    images, out = fundus / "imagesTs", tmp_path / "masks"
    cases = _cases(images)
    original = Predictor.predict_files

    def dies_on_second(self: Predictor, files: list[Path], case_id: str):  # noqa: ANN202
        if case_id == cases[1]:
            raise Killed
        return original(self, files, case_id)

    with monkeypatch.context() as m:
        m.setattr(Predictor, "predict_files", dies_on_second)
        with pytest.raises(Killed):
            api.predict(segment_run, images, out)
    assert [p.name for p in out.iterdir()] == [f"{cases[0]}.png"]  # complete files only, no partial one
    before = _mtimes(out)
    predicted.clear()
    written = api.predict(segment_run, images, out)
    assert predicted == cases[1:]  # the finished case is not predicted again
    assert [p.name for p in written] == [f"{c}.png" for c in cases]
    assert _mtimes(out)[f"{cases[0]}.png"] == before[f"{cases[0]}.png"]
    after = _mtimes(out)
    predicted.clear()
    assert api.predict(segment_run, images, out) == written  # all done: nothing to do
    assert predicted == [] and _mtimes(out) == after
    api.predict(segment_run, images, out, overwrite=True)
    assert predicted == cases


def test_segment_two_shards_cover_every_case_once(
    segment_run: Path, fundus: Path, tmp_path: Path, predicted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    images, out = fundus / "imagesTs", tmp_path / "masks"
    first = api.predict(segment_run, images, out, shard="0/2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    second = api.predict(segment_run, images, out)  # the shard comes from torchrun's variables
    assert not set(first) & set(second)
    assert sorted(predicted) == _cases(images) and len(predicted) == len(set(predicted))
    shard_checks = ["ood-1-of-2.csv", "ood-2-of-2.csv"]  # each shard's inputs against the training images
    masks = [f"{c}.png" for c in _cases(images)]
    assert sorted(p.name for p in out.iterdir()) == sorted(masks + shard_checks)


@pytest.mark.slow
def test_torchrun_two_processes_share_the_cases(segment_run: Path, fundus: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0"]
    # torchrun's own parser reads "--run" as an ambiguous abbreviation of its --run-path: --run-dir
    cmd += ["-m", "medsight.cli.main", "predict", "--run-dir", str(segment_run)]
    cmd += ["--input", str(fundus / "imagesTs"), "--output", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    printed = [line for line in res.stdout.splitlines() if line.endswith(".png")]
    expected = [str(out / f"{c}.png") for c in _cases(fundus / "imagesTs")]
    assert sorted(printed) == expected  # each case written by exactly one of the two processes
    assert all(Path(p).is_file() for p in expected)


def test_bad_shard_fails_before_any_output(segment_run: Path, fundus: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--shard: expected I/N with 0 <= I < N, got 3/2"):
        api.predict(segment_run, fundus / "imagesTs", tmp_path / "o", shard="3/2")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------ classification


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def classified(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Batch sizes the classifier is run on; batches of 4."""
    sizes: list[int] = []
    original = classify_pipeline.predict_probabilities

    def spy(task, model, x):  # noqa: ANN001, ANN202
        sizes.append(len(x))
        return original(task, model, x)

    monkeypatch.setattr(classify_pipeline, "predict_probabilities", spy)
    monkeypatch.setattr(classify_outputs, "PREDICT_BATCH", 4)
    return sizes


def test_classify_csv_resumes_after_a_kill(
    classify_run: Path, tmp_path: Path, classified: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    images = bar_pngs(tmp_path / "pics", 10)
    out = tmp_path / "out" / "pred.csv"
    spy = classify_pipeline.predict_probabilities

    def first_batch_only(task, model, x):  # noqa: ANN001, ANN202
        if classified:
            raise Killed
        return spy(task, model, x)

    with monkeypatch.context() as m:
        m.setattr(classify_pipeline, "predict_probabilities", first_batch_only)
        with pytest.raises(Killed):
            api.predict(classify_run, tmp_path / "pics", out)
    assert [r["input"] for r in _rows(out)] == [str(p) for p in images[:4]]  # a valid CSV of the first batch
    mtime = out.stat().st_mtime_ns
    classified.clear()
    assert api.predict(classify_run, tmp_path / "pics", out) == [out]
    assert classified == [4, 2]  # only the 6 missing images
    rows = _rows(out)
    assert [r["input"] for r in rows] == [str(p) for p in images]
    classified.clear()
    api.predict(classify_run, tmp_path / "pics", out)
    assert classified == []
    api.predict(classify_run, tmp_path / "pics", out, overwrite=True)
    assert classified == [4, 4, 2] and out.stat().st_mtime_ns != mtime


def test_classify_shards_write_parts_and_the_last_merges(
    classify_run: Path, tmp_path: Path, classified: list[int]
) -> None:
    images = bar_pngs(tmp_path / "pics", 7)
    whole = _rows(api.predict(classify_run, tmp_path / "pics", tmp_path / "whole")[0])
    out = tmp_path / "sharded"
    [part0] = api.predict(classify_run, tmp_path / "pics", out, shard="0/2")
    assert part0 == out / "predictions.part-0-of-2.csv" and not (out / "predictions.csv").exists()
    assert len(_rows(part0)) == 4
    [merged] = api.predict(classify_run, tmp_path / "pics", out, shard="1/2")
    assert merged == out / "predictions.csv"
    rows = _rows(merged)
    assert [r["input"] for r in rows] == [str(p) for p in images]
    for got, ref in zip(rows, whole, strict=True):  # the same answers as one process, in input order
        assert got["input"] == ref["input"] and got["predicted"] == ref["predicted"]
        assert float(got["class_1"]) == pytest.approx(float(ref["class_1"]), abs=1e-5)
    classified.clear()
    assert api.predict(classify_run, tmp_path / "pics", out, shard="0/2") == [merged]  # nothing redone
    assert classified == []


def test_classify_refuses_a_csv_from_another_model(classify_run: Path, tmp_path: Path) -> None:
    bar_pngs(tmp_path / "pics", 2)
    out = tmp_path / "pred.csv"
    out.write_text("input,a,b,c,predicted\nx,0.1,0.2,0.7,c\n")
    with pytest.raises(DataError, match="--overwrite"):
        api.predict(classify_run, tmp_path / "pics", out)
    assert out.read_text().startswith("input,a,b,c")  # untouched
    api.predict(classify_run, tmp_path / "pics", out, overwrite=True)
    assert len(_rows(out)) == 2
