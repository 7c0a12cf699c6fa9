"""MedMNIST v3 (2D and 3D): the official file table, a checksum-verified downloader, local copies.

The table mirrors ``medmnist/info.py`` of the medmnist package, version 3.0.2 (github.com/MedMNIST/MedMNIST):
every file lives in Zenodo record 10519652 as ``<name>.npz`` (28 px) or ``<name>_<size>.npz``
(64/128/224 px for 2D, 64 px for 3D), each with its official MD5.

Example::

    from medsight.data.medmnist import fetch_medmnist
    from medsight.io.npz import read_medmnist
    path = fetch_medmnist("breastmnist", 28, root="data/medmnist")   # downloads once, verifies MD5
    splits = read_medmnist(path)                                       # {"train": (images, labels), ...}
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from medsight.errors import DataError, did_you_mean

ZENODO_RECORD = "https://zenodo.org/records/10519652/files"
SIZES_2D = (28, 64, 128, 224)
SIZES_3D = (28, 64)
SPLITS = ("train", "val", "test")
_CHUNK = 1 << 20

Opener = Callable[..., IO[bytes]]


@dataclass(frozen=True)
class MedMNISTFile:
    """One official file: its name, download URL and MD5 (None when no official checksum is known)."""

    filename: str
    url: str
    md5: str | None


@dataclass(frozen=True)
class MedMNISTInfo:
    """One MedMNIST dataset: task type, class names, channels, dimensionality, files per size."""

    name: str
    task: str  # "binary-class", "multi-class", "multi-label, binary-class" or "ordinal-regression"
    labels: tuple[str, ...]
    n_channels: int
    dim: int  # 2 or 3
    n_samples: dict[str, int]
    license: str
    files: dict[int, MedMNISTFile]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.files))

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def file(self, size: int = 28) -> MedMNISTFile:
        """The official file for ``size`` (DataError when the dataset has no such size)."""
        if size not in self.files:
            raise DataError(
                f"medmnist {self.name}: size {size!r} is not available for this {self.dim}D dataset, "
                f"expected one of {list(self.sizes)}"
            )
        return self.files[size]


def filename(name: str, size: int = 28) -> str:
    """The official file name: ``<name>.npz`` for 28 px, ``<name>_<size>.npz`` otherwise."""
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


_ORGANS = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)

# name: (task, labels, channels, dim, (train, val, test), license, {size: md5}) -- from medmnist 3.0.2 info.py
_TABLE: dict[str, tuple[str, tuple[str, ...], int, int, tuple[int, int, int], str, dict[int, str]]] = {
    "pathmnist": (
        "multi-class",
        (
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
        3,
        2,
        (89996, 10004, 7180),
        "CC BY 4.0",
        {
            28: "a8b06965200029087d5bd730944a56c1",
            64: "55aa9c1e0525abe5a6b9d8343a507616",
            128: "ac42d08fb904d92c244187169d1fd1d9",
            224: "2c51a510bcdc9cf8ddb2af93af1eadec",
        },
    ),
    "chestmnist": (
        "multi-label, binary-class",
        (
            "atelectasis",
            "cardiomegaly",
            "effusion",
            "infiltration",
            "mass",
            "nodule",
            "pneumonia",
            "pneumothorax",
            "consolidation",
            "edema",
            "emphysema",
            "fibrosis",
            "pleural",
            "hernia",
        ),
        1,
        2,
        (78468, 11219, 22433),
        "CC BY 4.0",
        {
            28: "02c8a6516a18b556561a56cbdd36c4a8",
            64: "9de6cd0b934ebb5b7426cfba5efbae16",
            128: "db107e5590b27930b62dbaf558aebee3",
            224: "45bd33e6f06c3e8cdb481c74a89152aa",
        },
    ),
    "dermamnist": (
        "multi-class",
        (
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ),
        3,
        2,
        (7007, 1003, 2005),
        "CC BY-NC 4.0",
        {
            28: "0744692d530f8e62ec473284d019b0c7",
            64: "b70a2f5635c6199aeaa28c31d7202e1f",
            128: "2defd784463fa5243564e855ed717de1",
            224: "8974907d8e169bef5f5b96bc506ae45d",
        },
    ),
    "octmnist": (
        "multi-class",
        ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
        1,
        2,
        (97477, 10832, 1000),
        "CC BY 4.0",
        {
            28: "c68d92d5b585d8d81f7112f81e2d0842",
            64: "e229e9440236b774d9f0dfef9d07bdaf",
            128: "0a97e76651ace45c5d943ee3f65b63ae",
            224: "abc493b6d529d5de7569faaef2773ba3",
        },
    ),
    "pneumoniamnist": (
        "binary-class",
        ("normal", "pneumonia"),
        1,
        2,
        (4708, 524, 624),
        "CC BY 4.0",
        {
            28: "28209eda62fecd6e6a2d98b1501bb15f",
            64: "8f4eceb4ccffa70c672198ea285246c6",
            128: "05b46931834c231683c68f40c47b2971",
            224: "d6a3c71de1b945ea11211b03746c1fe1",
        },
    ),
    "retinamnist": (
        "ordinal-regression",
        ("0", "1", "2", "3", "4"),
        3,
        2,
        (1080, 120, 400),
        "CC BY 4.0",
        {
            28: "bd4c0672f1bba3e3a89f0e4e876791e4",
            64: "afda852cc34dcda56f86ad2b2457dbcc",
            128: "e48e916a24454daf90583d4e6efb1a18",
            224: "eae7e3b6f3fcbda4ae613ebdcbe35348",
        },
    ),
    "breastmnist": (
        "binary-class",
        ("malignant", "normal, benign"),
        1,
        2,
        (546, 78, 156),
        "CC BY 4.0",
        {
            28: "750601b1f35ba3300ea97c75c52ff8f6",
            64: "742edef2a1fd1524b2efff4bd7ba9364",
            128: "363e4b3f8d712e9b5de15470a2aaadf1",
            224: "b56378a6eefa9fed602bb16d192d4c8b",
        },
    ),
    "bloodmnist": (
        "multi-class",
        (
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ),
        3,
        2,
        (11959, 1712, 3421),
        "CC BY 4.0",
        {
            28: "7053d0359d879ad8a5505303e11de1dc",
            64: "2b94928a2ae4916078ca51e05b6b800b",
            128: "adace1e0ed228fccda1f39692059dd4c",
            224: "b718ff6835fcbdb22ba9eacccd7b2601",
        },
    ),
    "tissuemnist": (
        "multi-class",
        (
            "Collecting Duct, Connecting Tubule",
            "Distal Convoluted Tubule",
            "Glomerular endothelial cells",
            "Interstitial endothelial cells",
            "Leukocytes",
            "Podocytes",
            "Proximal Tubule Segments",
            "Thick Ascending Limb",
        ),
        1,
        2,
        (165466, 23640, 47280),
        "CC BY 4.0",
        {
            28: "ebe78ee8b05294063de985d821c1c34b",
            64: "123ece2eba09d0aa5d698fda57103344",
            128: "61b955355d7425a89687b06cca3ce0c2",
            224: "b077128c4a949f0a4eb01517f9037b9c",
        },
    ),
    "organamnist": (
        "multi-class",
        _ORGANS,
        1,
        2,
        (34561, 6491, 17778),
        "CC BY 4.0",
        {
            28: "68e3f8846a6bd62f0c9bf841c0d9eacc",
            64: "2dcccc29b88e6da5a01161ef20cda288",
            128: "eeae80d0a227a8d099027e1b3cfd3b60",
            224: "50747347e05c87dd3aaf92c49f9f3170",
        },
    ),
    "organcmnist": (
        "multi-class",
        _ORGANS,
        1,
        2,
        (12975, 2392, 8216),
        "CC BY 4.0",
        {
            28: "b9ceb9546e10131b32923c5bbeaea2b1",
            64: "3ce34a8724ea6f548e6db4744d03b6a9",
            128: "773c1f009daa3fe5d9a2a201b2a7ed94",
            224: "050f5e875dc056f6768abf94ec9995d1",
        },
    ),
    "organsmnist": (
        "multi-class",
        _ORGANS,
        1,
        2,
        (13932, 2452, 8827),
        "CC BY 4.0",
        {
            28: "9ab87b696fb54e2a387ebe992d6ed5f1",
            64: "53a6d115339d874c25e309a994ff46d3",
            128: "ded0c5fa01a95dc4978b956f613e9b8e",
            224: "b354719e553fbbb2513d5533f52a4cb1",
        },
    ),
    "organmnist3d": (
        "multi-class",
        (
            "liver",
            "kidney-right",
            "kidney-left",
            "femur-right",
            "femur-left",
            "bladder",
            "heart",
            "lung-right",
            "lung-left",
            "spleen",
            "pancreas",
        ),
        1,
        3,
        (971, 161, 610),
        "CC BY 4.0",
        {28: "a0c5a1ff56af4f155c46d46fbb45a2fe", 64: "58a2205adf14a9d0a189cb06dc78bf10"},
    ),
    "nodulemnist3d": (
        "binary-class",
        ("benign", "malignant"),
        1,
        3,
        (1158, 165, 310),
        "CC BY 4.0",
        {28: "8755a7e9e05a4d9ce80a24c3e7a256f3", 64: "c47c5b7d457bf6332200d2ea6d64ecd8"},
    ),
    "adrenalmnist3d": (
        "binary-class",
        ("normal", "hyperplasia"),
        1,
        3,
        (1188, 98, 298),
        "CC BY 4.0",
        {28: "bbd3c5a5576322bc4cdfea780653b1ce", 64: "17721accfe9fb005146a47d33bc54b2f"},
    ),
    "fracturemnist3d": (
        "multi-class",
        ("buckle rib fracture", "nondisplaced rib fracture", "displaced rib fracture"),
        1,
        3,
        (1027, 103, 240),
        "CC BY 4.0",
        {28: "6aa7b0143a6b42da40027a9dda61302f", 64: "f01d7e6316aedf4210da0da5b7437b42"},
    ),
    "vesselmnist3d": (
        "binary-class",
        ("vessel", "aneurysm"),
        1,
        3,
        (1335, 191, 382),
        "CC BY 4.0",
        {28: "b41fd4f7e7e2feedddb201585ecafa1b", 64: "6bb274a8846e1097066dcd64e2c4520f"},
    ),
    "synapsemnist3d": (
        "binary-class",
        ("inhibitory synapse", "excitatory synapse"),
        1,
        3,
        (1230, 177, 352),
        "CC BY 4.0",
        {28: "1235b78a3cd6280881dd7850a78eadb6", 64: "43bd14ebf3af9d3dd072446fedc14d5e"},
    ),
}


def _build(name: str) -> MedMNISTInfo:
    task, labels, channels, dim, counts, lic, md5s = _TABLE[name]
    files = {}
    for size in SIZES_2D if dim == 2 else SIZES_3D:
        fname = filename(name, size)
        files[size] = MedMNISTFile(fname, f"{ZENODO_RECORD}/{fname}?download=1", md5s.get(size))
    return MedMNISTInfo(name, task, labels, channels, dim, dict(zip(SPLITS, counts, strict=True)), lic, files)


MEDMNIST: dict[str, MedMNISTInfo] = {name: _build(name) for name in _TABLE}


def medmnist_info(name: str) -> MedMNISTInfo:
    """The table entry of ``name`` (case-insensitive); DataError with a suggestion when unknown."""
    key = str(name).lower()
    if key not in MEDMNIST:
        raise DataError(
            f"medmnist: unknown dataset {name!r}{did_you_mean(key, list(MEDMNIST))}; "
            f"known: {', '.join(MEDMNIST)}"
        )
    return MEDMNIST[key]


def md5sum(path: Path) -> str:
    """The MD5 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def find_medmnist(name: str, size: int = 28, root: str | Path = ".") -> Path | None:
    """The local copy ``root/<official file name>`` of ``name`` at ``size``, or None when absent."""
    path = Path(root) / medmnist_info(name).file(size).filename
    return path if path.is_file() else None


def _download(url: str, dest: Path, timeout: float, opener: Opener) -> str:
    """Stream ``url`` into the new file ``dest``; return its MD5. Raises OSError / HTTPException."""
    h = hashlib.md5(usedforsecurity=False)
    n = 0
    with opener(url, timeout=timeout) as resp, open(dest, "wb") as out:
        expected = _content_length(resp)
        for chunk in iter(lambda: resp.read(_CHUNK), b""):
            out.write(chunk)
            h.update(chunk)
            n += len(chunk)
    if expected is not None and n != expected:
        raise OSError(f"download ended after {n} bytes, the server announced {expected}")
    return h.hexdigest()


def _content_length(resp: Any) -> int | None:
    headers = getattr(resp, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def fetch_medmnist(
    name: str,
    size: int = 28,
    *,
    root: str | Path,
    verify: bool = True,
    timeout: float = 60,
    opener: Opener | None = None,
) -> Path:
    """Return ``root/<file>`` for ``name`` at ``size``, downloading it from Zenodo when absent.

    A file already in ``root`` is used without network when its MD5 is the official one (or
    ``verify=False``); one with another MD5 is an error (it is never overwritten). A download goes
    to a temporary file in ``root``, is checked, then renamed into place, so an interrupted or
    corrupt download leaves nothing behind. ``opener`` (default ``urllib.request.urlopen``) is
    called as ``opener(url, timeout=timeout)`` and must return a readable context manager.

    Raises:
        DataError: unknown name or size, checksum mismatch, no official checksum with
            ``verify=True``, or a network failure (the message names the URL and the reason).
    """
    info = medmnist_info(name)
    entry = info.file(size)
    root = Path(root)
    dest = root / entry.filename
    if verify and entry.md5 is None:
        raise DataError(
            f"medmnist {info.name} size {size}: no official MD5 is known for {entry.filename}, "
            "so it cannot be verified; pass --no-verify (verify=False) to use it unchecked"
        )
    if dest.is_file():
        return _check_existing(dest, entry, verify)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.filename}.", suffix=".part", dir=root)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            found = _download(entry.url, tmp, timeout, opener or urllib.request.urlopen)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise DataError(
                f"medmnist {info.name}: cannot download {entry.url} ({exc.__class__.__name__}: {exc}); "
                f"download it by hand and pass --root DIR with {entry.filename} in DIR"
            ) from exc
        if verify and found != entry.md5:
            raise DataError(
                f"{entry.filename}: MD5 mismatch after download from {entry.url}: "
                f"expected {entry.md5}, found {found}; the file was not kept"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _check_existing(dest: Path, entry: MedMNISTFile, verify: bool) -> Path:
    if not verify:
        return dest
    found = md5sum(dest)
    if found != entry.md5:
        raise DataError(
            f"{dest}: MD5 mismatch with the official {entry.filename}: expected {entry.md5}, "
            f"found {found}; delete it to download again, or pass --no-verify to use it as it is"
        )
    return dest
