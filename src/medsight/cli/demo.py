"""``medsight demo``: the main job on an embedded default — a fundus phantom with a vessel tree."""

from __future__ import annotations

from pathlib import Path


def run_demo(out: Path, time_budget: str = "3m", seed: int = 0) -> Path:
    """Generate the phantom (once), train a segmenter on it, evaluate on its test split; return the report."""
    from medsight import api
    from medsight.data import make_phantom_dataset

    data = Path(out) / "demo-data" / "fundus-phantom"
    if not (data / "dataset.json").is_file():
        make_phantom_dataset(data, kind="fundus2d", n_train=16, n_test=4, seed=seed)
    run = api.train(
        data, overrides=[f"train.time_budget={time_budget}", f"train.seed={seed}", "data.fold=0"], out=out
    )
    api.evaluate(run, split="test")
    return run / "report.html"
