"""Learning happens on real data: a short training on random deformations of the 2D CT head of
monai-testing registers new known deformations of it far better than no registration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsight import api
from medsight.utils import shared_data_root

ROOT = shared_data_root()
HEAD = ROOT / "monai-testing" / "CT_2D_head_fixed.mha" if ROOT is not None else None
pytestmark = pytest.mark.skipif(
    HEAD is None or not HEAD.is_file(),
    reason="../shared/data/monai-testing not found: real-data test skipped",
)


def test_a_short_training_lowers_the_registration_error_on_real_ct(tmp_path: Path) -> None:
    assert HEAD is not None
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "images" / "head.mha").write_bytes(HEAD.read_bytes())
    overrides = [
        "train.max_iterations=80",
        "train.iterations_per_epoch=40",
        "train.progress=false",
        "train.seed=0",
        "plan.spacing=4.0",
        "plan.network_kwargs={base_filters: 8}",
        "plan.val_pairs=1",
        "plan.eval_pairs=2",
        "plan.eval_baselines=[identity]",
        "plan.affine=none",
        "plan.lr=0.003",
    ]
    run = api.train(
        tmp_path / "data", task="register", overrides=overrides, out=tmp_path / "runs", measure=False
    )
    summary = json.loads((run / "eval" / "val" / "summary.json").read_text())
    learned, identity = summary["learned"], summary["identity"]
    assert learned["tre"]["mean"] < 0.9 * identity["tre"]["mean"]  # 80 steps: a clear gain
    assert learned["folding_pct"]["mean"] < 0.5
