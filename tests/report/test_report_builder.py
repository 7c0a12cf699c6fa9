"""build_report on synthetic run folders: self-contained, escaped, complete, and tolerant of missing parts."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from medsight.errors import RunError
from medsight.metrics import MetricTable
from medsight.planning.plan import ChannelNorm
from medsight.report import build_report, plot_curves, save_overlay
from medsight.tasks.segment.planning import Plan

EVIL = "<script>alert(1)</script>"


class _Collector(HTMLParser):
    """Records every start tag with its attributes; fails on nothing, like a browser."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _parse(path: Path) -> tuple[str, _Collector]:
    text = path.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(text)
    parser.close()
    return text, parser


def _table() -> MetricTable:
    rng = np.random.default_rng(0)
    rows = [
        {
            "case_id": f"case_{i:03d}",
            "class": name,
            "dice": float(rng.uniform(lo, lo + 0.2)),
            "hd95": float(i + 1),
        }
        for i in range(6)
        for name, lo in (("liver", 0.7), (EVIL, 0.3))
    ]
    return MetricTable(rows=rows, keys=["case_id", "class"], info={"auc": 0.875})


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "segment-phantom-20250102-030405"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"task": "segment", "data": {"dataset": "phantom"}}))
    plan = Plan(
        dataset="phantom",
        dim=2,
        in_channels=1,
        class_names=["background", "liver"],
        label_values=[0, 1],
        target_spacing=[1.0, 1.0],
        normalization=[ChannelNorm(scheme="zscore")],
        patch_size=[64, 64],
        batch_size=4,
        reasons={"patch_size": "median shape fits in memory", "network": f"default {EVIL}"},
        fingerprint_summary={"num_cases": 6, "median_shape": [64, 64]},
    )
    plan.save(run / "plan.json")
    (run / "env.json").write_text(json.dumps({"torch": "2.13", "device": "cpu", "threads": 2}))
    lines = [
        json.dumps({"epoch": e, "step": 5 * e, "train_loss": 1.0 / (e + 1), "lr": 0.01}) for e in range(4)
    ]
    lines += [json.dumps({"epoch": e, "val_dice": 0.2 * e}) for e in range(4)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"epoch": 4, "trai')  # truncated last line
    _table().write(run / "eval", n_boot=200)
    plot_curves(run / "metrics.jsonl", run / "eval" / "loss_curves.png")  # stands for a task's own plot
    image = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    ref = np.zeros((32, 32), int)
    ref[8:20, 8:20] = 1
    save_overlay(image, ref, np.roll(ref, 2, axis=1), run / "eval" / "overlays" / "best_case_000.png", "best")
    save_overlay(
        image, ref, np.roll(ref, 6, axis=0), run / "eval" / "overlays" / "worst_case_005.png", "worst"
    )
    return run


def test_full_report_is_self_contained_and_complete(run_dir: Path) -> None:
    out = build_report(run_dir)
    assert out == run_dir / "report.html"
    text, parsed = _parse(out)
    tags = [t for t, _ in parsed.tags]
    assert "script" not in tags and "link" not in tags  # no JS, no external CSS
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    for _, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not re.match(r"\s*(https?:)?//", value), value
    images = [a["src"] for t, a in parsed.tags if t == "img"]
    assert len(images) == 4  # curves + an evaluation plot + two overlays
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    # header, plan, metric values with their 95% CIs, per-case rows, environment
    assert "<h1>segment · phantom</h1>" in text and "2025-01-02 03:04:05" in text
    assert "median shape fits in memory" in text and "num_cases" in text
    summary = json.loads((run_dir / "eval" / "summary.json").read_text())
    for group in ("liver", "mean"):
        s = summary[group]["dice"]
        assert f"{s['mean']:.4g} [{s['ci_low']:.4g}, {s['ci_high']:.4g}] (n=6)" in text
    assert "0.875" in text  # the info block
    assert "case_005" in text and "threads" in text
    assert "1 line(s) of metrics.jsonl were not valid" in text
    assert "worst case 005" in text and "Evaluation plots" in text and "loss curves" in text
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_report_from_config_only(tmp_path: Path) -> None:
    run = tmp_path / "myrun"
    run.mkdir()
    (run / "config.yaml").write_text("task: classify\ndata:\n  dataset: breastmnist\n")
    text, parsed = _parse(build_report(run, title="Early look"))
    assert "<h1>Early look</h1>" in text and "breastmnist" in text
    assert "No plan.json" in text and "No metrics.jsonl" in text and "No evaluation yet" in text
    assert not any(t == "img" for t, _ in parsed.tags)
    assert "Evaluation plots" not in text  # an optional section is left out, not noted


def test_report_survives_corrupt_files_and_summarises_csv(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "plan.json").write_text("{not json")
    (run / "config.yaml").write_text("- a list\n- not a mapping\n")
    (run / "metrics.jsonl").write_text('{"epoch": 0, "note": "no numbers"}\n')
    (run / "eval" / "per_case.csv").write_text("case_id,dice\n007,0.5\n008,0.7\n")
    (run / "eval" / "fake.png").write_bytes(b"not a png")  # a plot that is no PNG: skipped, named
    text, _ = _parse(build_report(run))
    assert "plan.json could not be read" in text and "config.yaml could not be read" in text
    assert "Training curves skipped" in text
    assert "0.6 [" in text and "from eval/per_case.csv" in text  # summary computed from the CSV
    assert ">007<" in text  # case ids are shown as written
    assert "fake.png" in text and "data:image/png" not in text


def test_missing_run_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="run folder not found"):
        build_report(tmp_path / "nope")


def test_rebuilding_replaces_the_report(run_dir: Path) -> None:
    first = build_report(run_dir, title="one").read_text(encoding="utf-8")
    second = build_report(run_dir, title="two").read_text(encoding="utf-8")
    assert "<title>one</title>" in first and "<title>two</title>" in second
