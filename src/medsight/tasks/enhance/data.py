"""What the enhance family trains on: clean images (degraded on the fly), user pairs (degraded + clean),
or raw complex k-space, split by subject.

Sources :func:`load_enhance_data` accepts:

- a folder of images (any format medsight reads; searched recursively; a DICOM series folder is one
  image), with optional ``train/``, ``val/`` and ``test/`` subfolders as the splits; files in a
  subfolder share that subfolder as their subject (e.g. one folder per patient with several contrasts);
- a folder of raw k-space files (``.npy`` complex (H, W) or (S, H, W); ``.h5`` with a ``kspace`` array,
  fastMRI's layout), fully sampled: the reference is the magnitude of its inverse FFT;
- a CSV manifest: ``image`` (a clean image, or the degraded one when ``target`` is given), ``target``
  (the clean image of a pair), ``kspace`` (instead of ``image``), ``patient_id``, ``split``
  (train / val / test; without val rows the run's fold of the training subjects validates), ``channel``;
  paths relative to the CSV;
- any dataset :func:`medsight.data.load_dataset` reads (MSD folder, registered name): every channel of
  every case is one clean image of that case's patient.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medsight.errors import DataError

KSPACE_SUFFIXES = (".npy", ".h5", ".hdf5")
Kind = Literal["images", "pairs", "kspace"]


@dataclass(frozen=True)
class EnhanceCase:
    """One image (a 2D image or a volume) of a subject: a clean file, a pair, or raw k-space."""

    case_id: str
    subject: str
    image: Path | None = None  # clean image, or the degraded one of a pair
    target: Path | None = None  # the clean image of a pair
    kspace: Path | None = None  # fully sampled raw k-space
    channel: int = 0  # the channel of a multi-channel image file

    @property
    def patient(self) -> str:
        return self.subject


@dataclass
class EnhanceData:
    """A loaded enhancement dataset: its cases by split, what they are and their in-plane sizes."""

    name: str
    kind: Kind
    train: list[EnhanceCase]
    test: list[EnhanceCase] = field(default_factory=list)
    val: list[EnhanceCase] = field(default_factory=list)
    modality: str = "MR"
    max_plane: list[int] = field(default_factory=lambda: [0, 0])
    notes: list[str] = field(default_factory=list)

    @property
    def splits(self) -> dict[str, list[EnhanceCase]]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "modality": self.modality,
            "max_in_plane": self.max_plane,
            "splits": {
                s: {"cases": len(c), "subjects": len({x.subject for x in c})} for s, c in self.splits.items()
            },
            "notes": self.notes,
        }


# ------------------------------------------------------------------------------------------------ reading


def read_kspace(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(k-space (S, H, W) complex, mask (H, W) or None) of a ``.npy`` or fastMRI-style ``.h5`` file.

    Raises:
        DataError: unreadable, no ``kspace`` array, not complex, the wrong number of dimensions, NaN.
    """
    if path.suffix.lower() == ".npy":
        try:
            k = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"{path}: cannot read NumPy file ({type(exc).__name__}: {exc})") from exc
        mask = None
    else:
        k, mask = _read_h5(path)
    if not np.iscomplexobj(k):
        raise DataError(f"{path}: kspace: expected complex k-space, found dtype {k.dtype}")
    if k.ndim not in (2, 3):
        raise DataError(
            f"{path}: kspace: expected (H, W) or (slices, H, W) single-coil k-space, found shape {k.shape}"
        )
    if not np.isfinite(k).all():
        raise DataError(f"{path}: kspace: {int((~np.isfinite(k)).sum())} NaN/Inf value(s)")
    k = k[None] if k.ndim == 2 else k
    if mask is not None and mask.shape[-2:] != k.shape[-2:]:
        mask = np.broadcast_to(mask, k.shape[-2:]) if mask.ndim == 1 and mask.size == k.shape[-1] else None
    return k.astype(np.complex64), mask


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "kspace" not in f:
                raise DataError(
                    f"{path}: kspace: no 'kspace' array (found {', '.join(f.keys()) or 'nothing'})"
                )
            k = np.asarray(f["kspace"])
            mask = np.asarray(f["mask"]).astype(bool) if "mask" in f else None
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from exc
    return k, mask


def is_kspace_file(path: Path) -> bool:
    return path.suffix.lower() in KSPACE_SUFFIXES


def read_volume(case: EnhanceCase, which: str = "image") -> np.ndarray:
    """The case's image (``which``: ``image`` or ``target``) as a real float32 stack (S, H, W): a 2D
    image is one slice, a volume is sliced along its last spatial axis.

    Raises:
        DataError: complex data, NaN/Inf, or an image of more than one channel where one was expected.
    """
    return read_slices(case, which)[0]


def read_slices(case: EnhanceCase, which: str = "image") -> tuple[np.ndarray, float]:
    """:func:`read_volume`'s stack and the in-plane pixel size of its slices in mm (the geometric mean of
    the first two axes' spacing), which physical degradations need (low-dose CT)."""
    from medsight.io import read_image

    path = case.target if which == "target" else case.image
    if path is None:
        raise DataError(f"case {case.case_id}: no {which} file")
    image = read_image(path)
    return image_stack(image.array, path, case.channel), pixel_size(image.spacing)


def pixel_size(spacing: tuple[float, ...] | list[float]) -> float:
    """The in-plane pixel size (mm) of slices cut along the last axis: the geometric mean of the first two."""
    return float(np.sqrt(float(spacing[0]) * float(spacing[1])))


def image_stack(array: np.ndarray, path: Path | str, channel: int = 0) -> np.ndarray:
    """One channel of a (C, *spatial) array as slices (S, H, W), float32, checked."""
    if np.iscomplexobj(array):
        raise DataError(
            f"{path}: image: expected a real (magnitude) image, found complex dtype {array.dtype}"
        )
    if channel >= array.shape[0]:
        raise DataError(f"{path}: image: channel {channel} asked, the file has {array.shape[0]}")
    x = np.asarray(array[channel], dtype=np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: image: {int((~np.isfinite(x)).sum())} NaN/Inf value(s)")
    return x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)


def case_seed(seed: int, case_id: str) -> int:
    """A stable per-case seed (the same in every process): ``seed`` mixed with the case id's CRC32."""
    return (int(seed) * 1_000_003 + zlib.crc32(case_id.encode())) % (2**32)


# ------------------------------------------------------------------------------------------------ loading


def load_enhance_data(source: str | Path) -> EnhanceData:
    """Read an enhancement dataset (see the module docstring); its cases, modality and in-plane sizes.

    Raises:
        DataError: nothing readable, a missing file, mixed kinds, a manifest without ``image``/``kspace``.
    """
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".csv":
        data = _from_manifest(path)
    elif path.is_dir() and not _has_images(path) and not _kspace_files(path):
        data = _from_dataset(source)
    elif path.is_dir():
        data = _from_folder(path)
    elif not path.exists() and "/" not in str(source):
        data = _from_dataset(source)
    else:
        raise DataError(
            f"{path}: expected a folder of images or k-space files, a CSV manifest or a dataset name"
        )
    if not data.train:
        raise DataError(f"{path}: no training cases found")
    _measure(data)
    return data


def _has_images(folder: Path) -> bool:
    from medsight.io.readers import is_image_file

    return any(is_image_file(p) for p in folder.rglob("*")) or any(_dicom_folders(folder))


def _kspace_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_kspace_file(p))


def _dicom_folders(folder: Path) -> list[Path]:
    from medsight.io.readers import detect_format

    found = []
    for d in sorted({p.parent for p in folder.rglob("*.dcm")}):
        if all(detect_format(p) == "dicom" for p in d.iterdir() if p.is_file()):
            found.append(d)
    return found


def _split_roots(folder: Path) -> dict[str, Path]:
    if (folder / "train").is_dir():
        return {s: folder / s for s in ("train", "val", "test") if (folder / s).is_dir()}
    return {"train": folder}


def _from_folder(folder: Path) -> EnhanceData:
    from medsight.io.readers import is_image_file, split_suffix

    out: dict[str, list[EnhanceCase]] = {"train": [], "val": [], "test": []}
    kinds = set()
    for split, root in _split_roots(folder).items():
        kspace = _kspace_files(root)
        dicoms = _dicom_folders(root)
        images = sorted(
            p for p in root.rglob("*") if is_image_file(p) and not any(d in p.parents for d in dicoms)
        )
        for p in [*images, *dicoms, *kspace]:
            rel = p.relative_to(root)
            subject = rel.parts[0] if len(rel.parts) > 1 else split_suffix(p)[0]
            case_id = str(rel.with_name(split_suffix(p)[0])) if p.is_file() else str(rel)
            if is_kspace_file(p):
                kinds.add("kspace")
                out[split].append(EnhanceCase(case_id, subject, kspace=p))
            else:
                kinds.add("images")
                out[split].append(EnhanceCase(case_id, subject, image=p))
    if len(kinds) > 1:
        raise DataError(f"{folder}: holds both images and k-space files; keep one kind per dataset")
    kind: Kind = kinds.pop() if kinds else "images"  # type: ignore[assignment]
    return EnhanceData(folder.name, kind, out["train"], out["test"], out["val"])


def _from_manifest(path: Path) -> EnhanceData:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DataError(f"{path}: the manifest has no rows")
    header = set(rows[0])
    if not header & {"image", "kspace"}:
        raise DataError(f"{path}: expected an 'image' or 'kspace' column, found {sorted(header)}")
    out: dict[str, list[EnhanceCase]] = {"train": [], "val": [], "test": []}
    kinds = set()
    for i, row in enumerate(rows):
        image, target, kspace = (_manifest_file(path, i, row, c) for c in ("image", "target", "kspace"))
        if image is None and kspace is None:
            raise DataError(f"{path}: row {i + 2}: neither image nor kspace is given")
        kinds.add("kspace" if kspace is not None else ("pairs" if target is not None else "images"))
        split = (row.get("split") or "train").strip().lower()
        if split not in out:
            raise DataError(f"{path}: row {i + 2}: split: expected train, val or test, found {split!r}")
        subject = (row.get("patient_id") or "").strip() or f"row{i + 2}"
        channel = int(row.get("channel") or 0)
        case_id = (row.get("case_id") or "").strip() or f"{subject}-{i + 2}"
        out[split].append(EnhanceCase(case_id, subject, image, target, kspace, channel))
    if len(kinds) > 1:
        raise DataError(
            f"{path}: mixes {sorted(kinds)}; keep one kind (images, pairs or kspace) per manifest"
        )
    return EnhanceData(path.stem, kinds.pop(), out["train"], out["test"], out["val"])  # type: ignore[arg-type]


def _manifest_file(path: Path, i: int, row: dict[str, str], col: str) -> Path | None:
    """The file of column ``col`` of manifest row ``i`` (relative to the manifest), None when empty."""
    text = (row.get(col) or "").strip()
    if not text:
        return None
    p = path.parent / text
    if not p.exists():
        raise DataError(f"{path}: row {i + 2}: {col}: {p} not found")
    return p


def _from_dataset(source: str | Path) -> EnhanceData:
    from medsight.data import load_dataset

    spec = load_dataset(source)

    def cases(items: list[Any]) -> list[EnhanceCase]:
        return [
            EnhanceCase(f"{c.case_id}-{spec.channel_names.get(ch, ch)}", c.patient, image=p)
            for c in items
            for ch, p in enumerate(c.images)
        ]

    modality = "CT" if spec.is_ct else "MR"
    return EnhanceData(spec.name, "images", cases(spec.train), cases(spec.test), modality=modality)


def _measure(data: EnhanceData, sample: int = 8) -> None:
    """The largest in-plane size and the modality (CT when intensities go below -500) of a sample."""
    cases = data.train[:: max(1, len(data.train) // sample)][:sample]
    planes, lows = [], []
    for case in cases:
        if data.kind == "kspace":
            assert case.kspace is not None
            k, _ = read_kspace(case.kspace)
            planes.append(list(k.shape[-2:]))
            continue
        stack = read_volume(case, "target" if data.kind == "pairs" else "image")
        planes.append(list(stack.shape[-2:]))
        lows.append(float(np.percentile(stack, 1)))
    data.max_plane = [int(max(p[0] for p in planes)), int(max(p[1] for p in planes))]
    if lows and min(lows) < -500:
        data.modality = "CT"
