"""The one metrics table format: per-case rows plus a summary with 95% bootstrap CIs.

Every task's ``evaluate`` returns a MetricTable; ``write`` puts ``per_case.csv`` and
``summary.json`` in a run's ``eval/`` folder, and the report reads them back.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.utils import atomic_write_text

_BOOT_CHUNK_ELEMENTS = 2_000_000


def bootstrap_ci(
    values: np.ndarray | list[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap (1-alpha) CI of the mean, ignoring NaNs.

    Returns (mean, low, high); all NaN when there is no finite value.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if v.size == 1:
        return (mean, mean, mean)
    if not 0 < alpha < 1 or n_boot < 1:
        raise ValueError(f"bootstrap_ci: expected 0 < alpha < 1 and n_boot >= 1, got {alpha=}, {n_boot=}")
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // v.size)  # bounded memory for tables of many thousands of rows
    means = np.concatenate(
        [
            v[rng.integers(0, v.size, size=(min(chunk, n_boot - start), v.size))].mean(axis=1)
            for start in range(0, n_boot, chunk)
        ]
    )
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (mean, float(low), float(high))


@dataclass
class MetricTable:
    """Rows of per-case (and per-class) metric values.

    ``keys`` are the identifying columns (e.g. ``["case_id", "class"]``); every other numeric column
    is a metric. ``info`` holds extra summary values that are not per case (e.g. the split, a confusion
    matrix). ``pooled`` is the summary of metrics that are not means over cases (a classifier's AUC,
    a detector's mAP), computed by the task over all cases at once with its own bootstrap; when given,
    it is the summary instead of the per-column means.
    """

    rows: list[dict[str, Any]]
    keys: list[str] = field(default_factory=lambda: ["case_id"])
    info: dict[str, Any] = field(default_factory=dict)
    pooled: dict[str, Any] | None = None

    @property
    def metric_names(self) -> list[str]:
        """Non-key columns whose values are all numbers (or missing), in first-seen order."""
        seen: dict[str, bool] = {}
        for row in self.rows:
            for k, v in row.items():
                if k not in self.keys:
                    seen[k] = seen.get(k, True) and (v is None or _is_number(v))
        return [k for k, numeric in seen.items() if numeric and any(_is_number(r.get(k)) for r in self.rows)]

    def groups(self) -> list[str]:
        """Values of the grouping key (the second key, e.g. the class), or ['all']."""
        if len(self.keys) < 2:
            return ["all"]
        return list(dict.fromkeys(str(r[self.keys[1]]) for r in self.rows))

    def values(self, metric: str, group: str = "all") -> np.ndarray:
        rows = self.rows if group == "all" else [r for r in self.rows if str(r[self.keys[1]]) == group]
        return np.array([_as_float(r.get(metric)) for r in rows], dtype=np.float64)

    def summary(self, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
        """``{group: {metric: {mean, ci_low, ci_high, n}}}`` plus ``info``; 'mean' is over classes too.
        With ``pooled``, that summary plus ``info``."""
        if self.pooled is not None:
            return {**self.pooled, **({"info": self.info} if self.info else {})}
        out: dict[str, Any] = {}
        groups = self.groups()
        for group in groups + (["mean"] if len(groups) > 1 else []):
            out[group] = {}
            for metric in self.metric_names:
                vals = self._mean_over_groups(metric) if group == "mean" else self.values(metric, group)
                mean, low, high = bootstrap_ci(vals, n_boot=n_boot, seed=seed)
                n = int(np.isfinite(vals).sum())
                out[group][metric] = {"mean": mean, "ci_low": low, "ci_high": high, "n": n}
        if self.info:
            out["info"] = self.info
        return out

    def _mean_over_groups(self, metric: str) -> np.ndarray:
        """Per case, the mean of a metric over its groups (classes)."""
        by_case: dict[str, list[float]] = {}
        for r in self.rows:
            by_case.setdefault(str(r[self.keys[0]]), []).append(_as_float(r.get(metric)))
        return np.array([np.nanmean(v) if np.isfinite(v).any() else math.nan for v in by_case.values()])

    def to_csv(self) -> str:
        columns = list(self.keys) + [m for m in self.metric_names]
        extra = [k for r in self.rows for k in r if k not in columns]
        columns += list(dict.fromkeys(extra))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        for r in self.rows:
            writer.writerow(r)
        return buf.getvalue()

    def write(self, folder: str | Path, n_boot: int = 2000) -> dict[str, Any]:
        """Write ``per_case.csv`` and ``summary.json`` into ``folder`` atomically; return the summary."""
        folder = Path(folder)
        summary = self.summary(n_boot=n_boot)
        atomic_write_text(folder / "per_case.csv", self.to_csv())
        atomic_write_text(folder / "summary.json", json.dumps(json_safe(summary), indent=2))
        return summary

    @classmethod
    def read_csv(cls, path: str | Path, keys: list[str] | None = None) -> MetricTable:
        """Read a ``per_case.csv``; key columns stay text (case ids such as "007"), others become numbers."""
        keys = keys or ["case_id"]
        rows: list[dict[str, Any]] = []
        with open(path, newline="") as fh:
            for raw in csv.DictReader(fh):
                rows.append({k: (v if k in keys else _number(v)) for k, v in raw.items()})
        return cls(rows=rows, keys=keys)


def _number(text: str) -> Any:
    """A CSV cell as a float where it is one; an empty cell (a missing value) is NaN."""
    if text is None or text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return text


def _is_number(v: Any) -> bool:
    """Numbers, including bools (a per-case ``correct`` flag averages to an accuracy)."""
    return isinstance(v, (int, float, np.number, np.bool_))


def _as_float(v: Any) -> float:
    """A metric value as a float; missing or non-numeric values are NaN."""
    return float(v) if _is_number(v) else math.nan


def json_safe(obj: Any) -> Any:
    """JSON has no NaN: write None instead."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
