"""A tqdm progress bar over the run's iterations (loss, monitored metric, ETA); silent off a TTY."""

from __future__ import annotations

import sys
from typing import Any


class ProgressBar:
    """Shows progress when ``enabled``; every method is a no-op otherwise."""

    def __init__(self, enabled: bool, total: int | None, initial: int = 0) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, file=sys.stderr)

    @staticmethod
    def wanted(config_progress: bool, force: bool | None) -> bool:
        """``force`` True/False overrides; None shows the bar when asked for and stderr is a TTY."""
        if force is not None:
            return force
        return config_progress and sys.stderr.isatty()

    def update(self, n: int = 1, **postfix: Any) -> None:
        if self.bar is None:
            return
        if postfix:
            self.bar.set_postfix(
                {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in postfix.items()}, refresh=False
            )
        self.bar.update(n)

    def set_total(self, total: int | None) -> None:
        if self.bar is not None and total is not None and total != self.bar.total:
            self.bar.total = total
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
