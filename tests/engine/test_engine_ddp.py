"""DDP: two CPU processes (gloo) launched by torch.distributed.run train the toy task together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from medsight.engine import load_checkpoint

HERE = Path(__file__).parent


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed/gloo absent"
)
def test_two_processes_train_in_step(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "engine_run_script.py"),
        str(tmp_path),
        "3",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["epochs"] == 3 and r["iterations"] == 15 for r in ranks)
    assert ranks[0]["train_loss"] != ranks[1]["train_loss"]  # each rank drew its own batches
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # gradients were averaged: identical weights
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["loop"]["step"] == 15 and torch.equal(last["model"]["weight"], w0["weight"])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]  # rank 0 alone writes logs
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
