"""Trains the toy task in its own process; used by the engine's kill-and-resume and DDP tests.

Usage: python engine_run_script.py RUN_DIR EPOCHS [SLEEP_PER_EPOCH]
(under torchrun each rank also writes rank<R>.pt and rank<R>.json to RUN_DIR)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from engine_toy import LinearTask, RandomBatches, val_batches

from medsight.config import TrainConfig
from medsight.engine import Trainer


class Sleep:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        time.sleep(self.seconds)


def main() -> None:
    run_dir, epochs = Path(sys.argv[1]), int(sys.argv[2])
    sleep = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    config = TrainConfig(epochs=epochs, iterations_per_epoch=5, lr=0.05, device="cpu", progress=False)
    task = LinearTask(config)
    trainer = Trainer(task, config, run_dir, callbacks=[Sleep(sleep)] if sleep else [])
    model = task.build_model()
    result = trainer.fit(model, RandomBatches(), val_batches())
    rank = trainer.dist.rank
    torch.save(model.state_dict(), run_dir / f"rank{rank}.pt")
    summary = {
        "epochs": result.epochs,
        "iterations": result.iterations,
        "world": trainer.dist.world_size,
        "train_loss": result.last_metrics["train_loss"],
        "threads": torch.get_num_threads(),
    }
    (run_dir / f"rank{rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
