"""MedMNIST table, downloader and reader; never touches the network (file:// URLs and fake openers)."""

from __future__ import annotations

import dataclasses
import hashlib
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from medsight.data import medmnist as mm
from medsight.errors import DataError
from medsight.io.npz import read_medmnist


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _tiny_npz(path: Path, n: int = 4, n_classes: int = 2) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split in mm.SPLITS:
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, n_classes, (n, 1), dtype=np.uint8)
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A tiny npz 'served' at a file:// URL, installed as breastmnist size 28 in the table."""
    (tmp_path / "server").mkdir()
    src = _tiny_npz(tmp_path / "server" / "src.npz")
    md5 = _md5(src)
    _patch_entry(monkeypatch, "breastmnist", 28, url=src.as_uri(), md5=md5)
    return src, md5


def _patch_entry(monkeypatch: pytest.MonkeyPatch, name: str, size: int, **changes: object) -> None:
    info = mm.MEDMNIST[name]
    files = dict(info.files)
    files[size] = dataclasses.replace(files[size], **changes)
    monkeypatch.setitem(mm.MEDMNIST, name, dataclasses.replace(info, files=files))


def _refuse(url: str, timeout: float = 0) -> None:
    raise AssertionError(f"the network must not be used, opened {url}")


class _BrokenStream:
    """A response that yields some bytes, then fails like a dropped connection."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.sent = payload, False
        self.headers = {"Content-Length": str(len(payload) * 10)}

    def read(self, n: int = -1) -> bytes:
        if self.sent:
            raise ConnectionResetError("connection reset by peer")
        self.sent = True
        return self.payload

    def __enter__(self) -> _BrokenStream:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_table_covers_all_datasets_and_sizes() -> None:
    assert len(mm.MEDMNIST) == 18
    for name, info in mm.MEDMNIST.items():
        assert info.dim in (2, 3) and info.n_channels in (1, 3)
        assert info.sizes == ((28, 64, 128, 224) if info.dim == 2 else (28, 64))
        assert info.task in {"binary-class", "multi-class", "multi-label, binary-class", "ordinal-regression"}
        for size, f in info.files.items():
            assert f.filename == (f"{name}.npz" if size == 28 else f"{name}_{size}.npz")
            assert f.url == f"https://zenodo.org/records/10519652/files/{f.filename}?download=1"
            assert f.md5 is not None and len(f.md5) == 32 and int(f.md5, 16) >= 0
    all_md5 = [f.md5 for info in mm.MEDMNIST.values() for f in info.files.values()]
    assert len(set(all_md5)) == len(all_md5) == 12 * 4 + 6 * 2
    assert mm.medmnist_info("ChestMNIST").num_classes == 14
    assert mm.medmnist_info("organmnist3d").dim == 3


def test_fetch_downloads_and_verifies(tmp_path: Path, served: tuple[Path, str]) -> None:
    src, md5 = served
    root = tmp_path / "root"
    path = mm.fetch_medmnist("breastmnist", 28, root=root)
    assert path == root / "breastmnist.npz"
    assert path.read_bytes() == src.read_bytes() and _md5(path) == md5
    assert sorted(p.name for p in root.iterdir()) == ["breastmnist.npz"]  # no temp file left
    assert mm.find_medmnist("breastmnist", 28, root) == path
    splits = read_medmnist(path)
    assert splits["train"][0].shape == (4, 28, 28) and splits["test"][1].shape == (4,)


def test_fetch_checksum_mismatch_keeps_nothing(
    tmp_path: Path, served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, md5 = served
    wrong = "0" * 32
    _patch_entry(monkeypatch, "breastmnist", 28, md5=wrong)
    root = tmp_path / "root"
    with pytest.raises(DataError) as err:
        mm.fetch_medmnist("breastmnist", 28, root=root)
    msg = str(err.value)
    assert "breastmnist.npz" in msg and wrong in msg and md5 in msg
    assert list(root.iterdir()) == []
    # without verification the same bytes are accepted
    path = mm.fetch_medmnist("breastmnist", 28, root=root, verify=False)
    assert _md5(path) == md5


def test_existing_file_reused_without_network(tmp_path: Path, served: tuple[Path, str]) -> None:
    src, _ = served
    root = tmp_path / "root"
    root.mkdir()
    (root / "breastmnist.npz").write_bytes(src.read_bytes())
    assert mm.fetch_medmnist("breastmnist", 28, root=root, opener=_refuse) == root / "breastmnist.npz"


def test_existing_file_with_wrong_md5_is_refused_not_overwritten(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "breastmnist.npz").write_bytes(b"truncated")
    with pytest.raises(DataError, match=hashlib.md5(b"truncated").hexdigest()):
        mm.fetch_medmnist("breastmnist", 28, root=root, opener=_refuse)
    assert (root / "breastmnist.npz").read_bytes() == b"truncated"
    path = mm.fetch_medmnist("breastmnist", 28, root=root, opener=_refuse, verify=False)
    assert path.read_bytes() == b"truncated"


def test_interrupted_download_leaves_nothing(tmp_path: Path, served: tuple[Path, str]) -> None:
    root = tmp_path / "root"
    opener = lambda url, timeout: _BrokenStream(b"x" * 100)  # noqa: E731
    with pytest.raises(DataError, match="ConnectionResetError") as err:
        mm.fetch_medmnist("breastmnist", 28, root=root, opener=opener)
    assert "--root" in str(err.value) and served[0].as_uri() in str(err.value)
    assert list(root.iterdir()) == []


def test_short_download_is_caught_without_verify(tmp_path: Path, served: tuple[Path, str]) -> None:
    """A stream that ends early (no exception) is still rejected by its Content-Length."""

    class Short(_BrokenStream):
        def read(self, n: int = -1) -> bytes:
            out, self.payload = self.payload, b""
            return out

    root = tmp_path / "root"
    with pytest.raises(DataError, match="announced 1000"):
        mm.fetch_medmnist(
            "breastmnist", 28, root=root, verify=False, opener=lambda u, timeout: Short(b"x" * 100)
        )
    assert list(root.iterdir()) == []


def test_unreachable_url_names_url_and_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = (tmp_path / "nowhere.npz").as_uri()
    _patch_entry(monkeypatch, "pathmnist", 64, url=missing)
    with pytest.raises(DataError) as err:
        mm.fetch_medmnist("pathmnist", 64, root=tmp_path / "root", opener=urllib.request.urlopen)
    assert missing in str(err.value) and "pathmnist_64.npz" in str(err.value)
    assert list((tmp_path / "root").iterdir()) == []


def test_unknown_name_suggests(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="did you mean 'pneumoniamnist'"):
        mm.medmnist_info("pneumonimnist")
    with pytest.raises(DataError, match="did you mean 'organmnist3d'"):
        mm.fetch_medmnist("organmnist_3d", root=tmp_path, opener=_refuse)


def test_bad_size(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"size 128 .*3D.*\[28, 64\]"):
        mm.fetch_medmnist("vesselmnist3d", 128, root=tmp_path, opener=_refuse)
    with pytest.raises(DataError, match=r"\[28, 64, 128, 224\]"):
        mm.find_medmnist("dermamnist", 32, tmp_path)
    assert mm.find_medmnist("dermamnist", 224, tmp_path) is None


def test_missing_checksum_needs_no_verify(
    tmp_path: Path, served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_entry(monkeypatch, "breastmnist", 28, md5=None)
    with pytest.raises(DataError, match="--no-verify"):
        mm.fetch_medmnist("breastmnist", 28, root=tmp_path / "a", opener=_refuse)
    path = mm.fetch_medmnist("breastmnist", 28, root=tmp_path / "b", verify=False)
    assert _md5(path) == served[1]


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["breastmnist", "pneumoniamnist"])
def test_shared_copies_against_table(data_root: Path, name: str) -> None:
    """The copies in ../shared/data/medmnist are re-saved (README: breastmnist labels stored 1-D,
    pneumoniamnist train order differs), so their bytes are NOT the official ones: the downloader
    must refuse them by MD5, naming both digests, and accept them with verify=False. Their contents
    must match the table's split sizes and label range."""
    root = data_root / "medmnist"
    info = mm.medmnist_info(name)
    found = hashlib.md5((root / f"{name}.npz").read_bytes()).hexdigest()
    assert found != info.file(28).md5
    with pytest.raises(DataError) as err:
        mm.fetch_medmnist(name, 28, root=root, opener=_refuse)
    assert info.file(28).md5 in str(err.value) and found in str(err.value)
    path = mm.fetch_medmnist(name, 28, root=root, verify=False, opener=_refuse)
    assert path == mm.find_medmnist(name, 28, root) == root / f"{name}.npz"
    splits = read_medmnist(path)
    for split, (images, labels) in splits.items():
        assert images.shape == (info.n_samples[split], 28, 28) and images.dtype == np.uint8
        assert labels.shape == (info.n_samples[split],)
        assert set(np.unique(labels)) == {0, 1}
