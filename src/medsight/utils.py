"""Small helpers shared by every layer: atomic writes, core counts, the shared data folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask can only be read by setting it


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash mid-write leaves the old file (if any) untouched, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextmanager
def atomic_folder(dest: Path, *, replace: bool = False) -> Iterator[Path]:
    """Build a folder in a temporary sibling of ``dest``, then rename it to ``dest`` on success.

    ``dest`` must be absent or an empty folder, unless ``replace``: then an existing ``dest`` is
    swapped out (and deleted) only once the new folder is complete. On error the partial folder is
    removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    old = None
    try:
        yield tmp
        if replace and dest.exists() and any(dest.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
            dest.rename(old / dest.name)
        elif dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if old is not None:
            if not dest.exists():  # the swap failed: put the old folder back
                (old / dest.name).rename(dest)
            shutil.rmtree(old)


def cpu_count() -> int:
    """Cores this process may use (respects affinity / cgroups where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def shared_data_root(explicit: str | Path | None = None) -> Path | None:
    """The real-data folder: ``explicit``, else $MEDSIGHT_DATA, else ../shared/data from the repo root.

    Returns None when none exists.
    """
    candidates = []
    if explicit:
        candidates.append(Path(explicit))
    if os.environ.get("MEDSIGHT_DATA"):
        candidates.append(Path(os.environ["MEDSIGHT_DATA"]))
    repo_root = Path(__file__).resolve().parents[2]
    candidates += [repo_root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None
