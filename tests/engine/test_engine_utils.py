"""Devices, seeding, RNG state capture and the batch stream."""

from __future__ import annotations

import random
from collections import namedtuple

import numpy as np
import pytest
import torch

from medsight.engine.device import autocast_factory, move_to_device, resolve_device
from medsight.engine.seed import derive_seed, get_rng_state, seed_everything, set_rng_state
from medsight.engine.stream import BatchStream, EpochMeter
from medsight.errors import ConfigError, DataError


def test_resolve_device_and_autocast() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="train.device"):
        resolve_device("gpu0")
    with autocast_factory(torch.device("cpu"), amp=True)():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"local rank 1.*only 1 GPU\(s\).*train.device=cpu"):
        resolve_device("auto", local_rank=1)


def test_move_to_device_keeps_structure() -> None:
    Pair = namedtuple("Pair", "a b")
    batch = {"x": torch.ones(2), "meta": ["id", (torch.zeros(1), 3)], "p": Pair(torch.ones(1), "s")}
    out = move_to_device(batch, torch.device("cpu"))
    assert out["meta"][0] == "id" and out["meta"][1][1] == 3
    assert isinstance(out["p"], Pair) and out["p"].b == "s"
    assert torch.equal(out["x"], batch["x"])


def test_rng_state_round_trip() -> None:
    seed_everything(5)
    state = get_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(99)
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
    assert derive_seed(1, 0) != derive_seed(1, 1) and derive_seed(1, 0) == derive_seed(1, 0)


def test_batch_stream_restarts_and_rejects_one_shot_iterators() -> None:
    stream = BatchStream([1, 2, 3])
    assert [next(stream) for _ in range(7)] == [1, 2, 3, 1, 2, 3, 1]
    assert stream.passes == 3
    one_shot = BatchStream(x for x in [1, 2])
    assert [next(one_shot), next(one_shot)] == [1, 2]
    with pytest.raises(DataError, match="re-iterable"):
        next(one_shot)
    with pytest.raises(DataError, match="no batches"):
        next(BatchStream([]))


def test_epoch_meter_means() -> None:
    meter = EpochMeter()
    meter.add(torch.tensor(1.0), {"acc": 0.5})
    meter.add(torch.tensor(3.0), {"acc": 1.0})
    summary = meter.summary()
    assert summary["train_loss"] == 2.0 and summary["acc"] == 0.75
    assert 0.0 <= summary["data_wait_fraction"] <= 1.0
