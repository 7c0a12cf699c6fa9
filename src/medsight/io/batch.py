"""Batch inference over many cases: which cases this process owns (``--shard I/N`` or torchrun's
RANK / WORLD_SIZE) and resumable CSV outputs, for every task's predictor and runtime.

Cases are dealt round-robin by sorted case id: shard ``I`` of ``N`` gets the cases at positions
``I, I+N, I+2N ...`` of the sorted ids, so every case goes to exactly one shard and the shards stay
balanced. Each shard writes only its own outputs, so shards run as separate processes, as a torchrun
job or on separate machines sharing the output folder, and any of them can be killed and rerun.

Example::

    part = resolve_shard("1/4")                 # or None: torchrun's RANK / WORLD_SIZE, else 0/1
    mine = part.select(case_ids)
    table = ResumableCsv(part_path(out, part), header)
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medsight.errors import ConfigError, DataError
from medsight.utils import atomic_write_text

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"--shard: expected I/N with 0 <= I < N, got {self.index}/{self.count}")

    def select(self, case_ids: Iterable[str]) -> list[str]:
        """This shard's ids among ``case_ids``: round-robin over the sorted ids."""
        return sorted(case_ids)[self.index :: self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


ShardLike = str | Shard | tuple[int, int] | None  # what ``shard=`` (``--shard``) accepts


def resolve_shard(shard: ShardLike = None) -> Shard:
    """The shard of this process: ``shard`` when given (``"1/4"``, ``(1, 4)`` or a Shard), else
    torchrun's RANK / WORLD_SIZE environment variables, else the only shard ``0/1``.

    Raises:
        ConfigError: a malformed ``shard`` or out-of-range index.
    """
    if isinstance(shard, Shard):
        return shard
    if isinstance(shard, tuple):
        return Shard(*shard)
    if shard is not None:
        match = _SHARD.match(str(shard))
        if not match:
            raise ConfigError(f"--shard: expected I/N such as 0/4, got {shard!r}")
        return Shard(int(match.group(1)), int(match.group(2)))
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if world is None:
        return Shard()
    try:
        return Shard(int(rank or 0), int(world))
    except ValueError as exc:
        raise ConfigError(f"RANK / WORLD_SIZE: expected integers, got {rank!r} / {world!r}") from exc


# ------------------------------------------------------------------------------------------ CSV outputs


def part_path(output: Path, shard: Shard) -> Path:
    """Where a shard writes its rows: ``output`` itself for a single shard, else
    ``<stem>.part-I-of-N.csv`` beside it."""
    if shard.count == 1:
        return output
    return output.with_name(f"{output.stem}.part-{shard.index}-of-{shard.count}{output.suffix}")


class ResumableCsv:
    """A CSV of one row per case, rewritten atomically after each batch, that a rerun continues.

    Rows already in the file are kept and their cases skipped; ``overwrite`` starts afresh.
    The first column is the case key.
    """

    def __init__(self, path: Path, header: Sequence[str], *, overwrite: bool = False) -> None:
        self.path, self.header = Path(path), list(header)
        self.rows: dict[str, list[str]] = {} if overwrite else read_csv_rows(self.path, self.header)

    def done(self, key: str) -> bool:
        return key in self.rows

    def add(self, rows: Iterable[Sequence[str]]) -> None:
        """Append ``rows`` and rewrite the file atomically (a kill leaves the previous version)."""
        for row in rows:
            self.rows[str(row[0])] = [str(v) for v in row]
        self.flush()

    def flush(self) -> Path:
        return atomic_write_text(self.path, csv_text(self.header, self.rows.values()))


def read_csv_rows(path: Path, header: Sequence[str]) -> dict[str, list[str]]:
    """Key (first column) -> row of an existing output CSV; empty when the file does not exist.

    Raises:
        DataError: the file exists with another header (another model wrote it).
    """
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        found = next(reader, None)
        if found is None:
            return {}
        if found != list(header):
            raise DataError(
                f"{path}: existing predictions have columns {found}, this model writes {list(header)}; "
                "choose another output or pass --overwrite"
            )
        return {row[0]: row for row in reader if row}


def csv_text(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def merge_parts(output: Path, header: Sequence[str], keys: Sequence[str], count: int) -> Path | None:
    """Merge ``<stem>.part-I-of-N.csv`` (I = 0..N-1) into ``output`` atomically, rows in the order of
    ``keys``, once every key has its row; returns None (and writes nothing) while any is missing.
    Parts are kept: rerunning a finished shard then finds its work done."""
    rows: dict[str, list[str]] = {}
    for i in range(count):
        rows.update(read_csv_rows(part_path(output, Shard(i, count)), header))
    if any(k not in rows for k in keys):
        return None
    return atomic_write_text(output, csv_text(header, (rows[k] for k in keys)))
