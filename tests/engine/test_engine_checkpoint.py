"""Checkpoints: atomic writes, weights_only loading, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medsight.engine.checkpoint import (
    LoopState,
    check_weights_only_safe,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
)
from medsight.errors import ConfigError, RunError


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "c" / "last.pt", {"model": model.state_dict(), "loop": {"epoch": 2}})
    other = nn.Linear(3, 2)
    state = load_model_weights(other, path)
    assert state["loop"]["epoch"] == 2
    assert torch.equal(other.weight, model.weight)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp files left


def test_missing_corrupt_truncated_and_unsafe_files(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(RunError, match="not a readable checkpoint"):
        load_checkpoint(garbage)
    good = save_checkpoint(tmp_path / "good.pt", {"model": nn.Linear(20, 20).state_dict()})
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(RunError, match="cut.pt"):
        load_checkpoint(cut)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"model": {}, "obj": LoopState()}, unsafe)  # a pickled class: refused by weights_only
    with pytest.raises(RunError, match="unsafe"):
        load_checkpoint(unsafe)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(1)}, other)
    with pytest.raises(RunError, match="'model' entry"):
        load_checkpoint(other)


def test_crash_during_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.ones(3)}})

    def dying_save(obj: object, f: Path) -> None:
        Path(f).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_load_model_weights_mismatch(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", {"model": nn.Linear(3, 2).state_dict()})
    with pytest.raises(RunError, match="do not fit Linear"):
        load_model_weights(nn.Linear(4, 2), path)


def test_extra_state_must_be_weights_only_safe() -> None:
    check_weights_only_safe({"labels": ["bg", "liver"], "spacing": (1.0, 1.0), "w": torch.ones(2), "n": None})
    with pytest.raises(ConfigError, match=r"extra_state\.plan\.arr: .*ndarray"):
        check_weights_only_safe({"plan": {"arr": np.zeros(2)}})


def test_loop_state_improvement() -> None:
    st = LoopState()
    assert st.is_improvement(0.3, "max") and not st.is_improvement(float("nan"), "max")
    st.best_metric = 0.5
    assert st.is_improvement(0.6, "max") and not st.is_improvement(0.5, "max")
    assert st.is_improvement(0.4, "min") and not st.is_improvement(0.7, "min")
    assert LoopState.from_dict({**st.to_dict(), "unknown": 1}) == st
