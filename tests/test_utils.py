"""Shared helpers: atomic writes keep the old file on failure and give outputs the usual permissions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from medsight import utils


def test_atomic_write_gives_the_umask_permissions(tmp_path: Path) -> None:
    path = utils.atomic_write_text(tmp_path / "out.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~utils._UMASK  # not mkstemp's 0600


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = utils.atomic_write_text(tmp_path / "out.txt", "old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        utils.atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_folder_is_all_or_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "dataset"
    with pytest.raises(RuntimeError), utils.atomic_folder(dest) as tmp:
        (tmp / "a.txt").write_text("a")
        raise RuntimeError("interrupted")
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    with utils.atomic_folder(dest) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (dest / "a.txt").read_text() == "a"
