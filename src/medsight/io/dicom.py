"""DICOM with pydicom: series folders, lists of files, single (2D or multi-frame) files.

Axis order, matching the other readers:

* a **series** (a folder or a list of files) and a **multi-frame** file are volumes in ITK order:
  ``array[c, i, j, k]`` with i along the row direction (the column index of the pixel matrix), j along
  the column direction (the row index) and k along the slice normal; direction columns are
  (row direction, column direction, normal) in LPS; origin is the first slice's ImagePositionPatient.
* a **single-frame** file is a 2D picture, ``array[c, row, column]`` like PNG, with spacing
  (PixelSpacing[0], PixelSpacing[1]); its 3D position is kept in ``meta``.

Slices are sorted by position along the normal, RescaleSlope/Intercept applied (integer results stay
integer). Compressed transfer syntaxes decode through pydicom's plugins (pylibjpeg when installed).
``meta`` keeps a few non-identifying tags; patient tags are never copied or logged.

A ``.zip`` holding a series is read like the folder it contains: it is extracted to a temporary folder
(members with absolute or ``..`` paths, links and archives over :data:`MAX_ZIP_BYTES` are refused).
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from medsight.errors import DataError
from medsight.io.image import Image

_KEPT_TAGS = (
    "Modality",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    "SOPClassUID",
    "PhotometricInterpretation",
    "SeriesNumber",
)

MAX_ZIP_BYTES = 4 * 1024**3  # uncompressed size limit of a DICOM zip
MAX_ZIP_MEMBERS = 100_000


# ----------------------------------------------------------------------------- reading files


def _dcmread(path: Path, *, headers_only: bool, lenient: bool) -> Any:
    """Read one file. With ``lenient`` a file that is not DICOM gives None instead of an error."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=headers_only)
    except InvalidDicomError:
        try:  # files without the 128-byte preamble / meta header (old or raw datasets)
            ds = pydicom.dcmread(str(path), stop_before_pixels=headers_only, force=True)
            if not any(tag in ds for tag in ("SOPClassUID", "StudyInstanceUID", "Rows")):
                raise InvalidDicomError("no DICOM image attributes") from None
        except Exception as exc:
            if lenient:
                return None
            raise DataError(f"{path}: not a DICOM file ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:
        raise DataError(f"{path}: cannot read DICOM ({type(exc).__name__}: {exc})") from exc
    return ds


def _transfer_syntax(ds: Any) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    return f"{uid.name} ({uid})" if uid is not None else "unknown"


def _one_line(text: str) -> str:
    """``text``'s lines joined by "; " (after a line ending in ":", by a space)."""
    out = ""
    for line in (part.strip() for part in text.splitlines()):
        if line:
            out += (" " if not out or out.endswith(":") else "; ") + line
    return out.strip()


_EXTRA_DECODERS = ("pylibjpeg", "libjpeg", "openjpeg")  # the modules of medsight[dicom]'s decoders


def _extra_installed() -> bool:
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in _EXTRA_DECODERS)


def decoder_hint(ds: Any) -> str:
    """What pydicom can decode ``ds``'s compressed transfer syntax with, for an error message.

    The install hint (``pip install 'medsight[dicom]'``) is given only when medsight[dicom]'s
    decoders are missing and pydicom lists pylibjpeg for the syntax; when installed decoders were
    tried and failed, the message names them instead. "" for an uncompressed or absent syntax.
    """
    from pydicom.pixels import get_decoder

    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if uid is None:
        return ""
    try:
        if not uid.is_compressed:
            return ""
    except ValueError:  # a private or unknown UID: pydicom cannot say
        pass
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return "; pydicom has no decoder for this transfer syntax"
    missing = list(decoder.missing_dependencies)
    if not _extra_installed() and any(m.startswith("pylibjpeg") for m in missing):
        return "; a decoder for it is missing: pip install 'medsight[dicom]' (pylibjpeg)"
    if not decoder.is_available:
        return f"; no installed decoder supports it (pydicom's plugins for it need: {'; '.join(missing)})"
    tried = f"; the installed decoders ({', '.join(decoder.available_plugins)}) cannot read this file"
    return tried + (f" (not installed: {'; '.join(missing)})" if missing else "")


def _frames(ds: Any, path: Path) -> np.ndarray:
    """Decoded pixels as ``(frames, rows, columns, samples)`` in native byte order."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataError(
            f"{path}: DICOM has no pixel data (Modality {ds.get('Modality', '?')}): "
            "not an image object, or the file is truncated"
        )
    try:
        arr = ds.pixel_array
        if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
    except Exception as exc:
        reason = _one_line(str(exc))  # pydicom lists each plugin's failure on its own line
        raise DataError(
            f"{path}: cannot decode pixel data, transfer syntax {_transfer_syntax(ds)} "
            f"({type(exc).__name__}: {reason}){decoder_hint(ds)}"
        ) from exc
    arr = np.asarray(arr)
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    palette = ds.get("PhotometricInterpretation") == "PALETTE COLOR"
    samples = 3 if palette else int(ds.get("SamplesPerPixel", 1))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if samples == 1:
        arr = arr[..., None]
    if frames == 1 and arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.size == 0:
        raise DataError(f"{path}: unexpected pixel array shape {arr.shape} for {frames} frame(s)")
    return arr


# ----------------------------------------------------------------------------- geometry tags


def _functional(ds: Any, sequence: str, keyword: str) -> Any:
    """A tag from the shared (else the first per-frame) functional group of an enhanced object."""
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = ds.get(group)
        if items and sequence in items[0] and items[0][sequence].value:
            value = items[0][sequence][0].get(keyword)
            if value is not None:
                return value
    return None


def _tag(ds: Any, keyword: str, sequence: str) -> Any:
    value = ds.get(keyword)
    return value if value not in (None, "") else _functional(ds, sequence, keyword)


def _orientation(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    iop = _tag(ds, "ImageOrientationPatient", "PlaneOrientationSequence")
    if iop is None or len(iop) != 6:
        return np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    v = np.asarray([float(x) for x in iop])
    row, col = v[:3] / np.linalg.norm(v[:3]), v[3:] / np.linalg.norm(v[3:])
    return row, col


def _pixel_spacing(ds: Any) -> tuple[float, float]:
    """(distance between rows, distance between columns) in mm; (1, 1) when absent."""
    ps = _tag(ds, "PixelSpacing", "PixelMeasuresSequence") or ds.get("ImagerPixelSpacing")
    if ps is None or len(ps) != 2 or float(ps[0]) <= 0 or float(ps[1]) <= 0:
        return 1.0, 1.0
    return float(ps[0]), float(ps[1])


def _position(ds: Any) -> np.ndarray | None:
    ipp = _tag(ds, "ImagePositionPatient", "PlanePositionSequence")
    return None if ipp is None or len(ipp) != 3 else np.asarray([float(x) for x in ipp])


def _rescale(ds: Any) -> tuple[float, float]:
    slope = _tag(ds, "RescaleSlope", "PixelValueTransformationSequence")
    intercept = _tag(ds, "RescaleIntercept", "PixelValueTransformationSequence")
    slope = float(slope) if slope not in (None, "") else 1.0
    intercept = float(intercept) if intercept not in (None, "") else 0.0
    if ds.get("Modality") == "RTDOSE" and ds.get("DoseGridScaling") is not None:
        slope *= float(ds.DoseGridScaling)
    return slope, intercept


def _apply_rescale(arrays: list[np.ndarray], rescales: list[tuple[float, float]]) -> np.ndarray:
    """Stack slices, applying each slice's slope/intercept; integer results stay integer."""
    from medsight.io.readers import smallest_int_dtype

    integer = all(np.issubdtype(a.dtype, np.integer) for a in arrays)
    if integer and all(s == 1.0 and i == 0.0 for s, i in rescales):
        return np.stack(arrays)  # stored values as they are (uint16 stays uint16)
    if integer and all(s == 1.0 and float(i).is_integer() for s, i in rescales):
        out = np.stack([a.astype(np.int64) + int(i) for a, (_, i) in zip(arrays, rescales, strict=True)])
        return out.astype(smallest_int_dtype(out))
    return np.stack(
        [a.astype(np.float64) * s + i for a, (s, i) in zip(arrays, rescales, strict=True)]
    ).astype(np.float32)


def _meta(ds: Any, path: Path | str) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": str(path), "format": "dicom", "TransferSyntax": _transfer_syntax(ds)}
    for key in _KEPT_TAGS:
        value = ds.get(key)
        if value not in (None, ""):
            meta[key] = str(value) if key != "SeriesNumber" else int(value)
    for key in ("WindowCenter", "WindowWidth"):
        value = ds.get(key)
        if value is not None:
            meta[key] = (
                float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
            )
    return meta


# ----------------------------------------------------------------------------- stacking


def _slice_spacing(path: str, proj: np.ndarray, ds: Any) -> tuple[float, bool]:
    """Distance between slices from their positions, and whether it is uniform."""
    if len(proj) < 2:
        fallback = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0
        return float(fallback), True
    diffs = np.diff(proj)
    if np.any(diffs < 1e-4):
        n_dup = int(np.sum(diffs < 1e-4))
        raise DataError(
            f"{path}: {n_dup} slice(s) share a position along the slice normal; the series holds several "
            "acquisitions (time points, echoes, b-values?) - pass the files of one acquisition"
        )
    mean = float((proj[-1] - proj[0]) / (len(proj) - 1))
    uniform = bool(np.all(np.abs(diffs - mean) <= 1e-3 + 1e-2 * mean))
    return mean, uniform


def _stack(
    name: str,
    datasets: list[Any],
    arrays: list[np.ndarray],
    positions: list[np.ndarray | None],
    rescales: list[tuple[float, float]],
    warn_unplaced: bool = True,
) -> Image:
    """Build a volume from slices: sort along the normal, rescale, transpose to (C, i, j, k)."""
    ds0 = datasets[0]
    row, col = _orientation(ds0)
    normal = np.cross(row, col)
    if any(p is None for p in positions):
        if warn_unplaced:
            warnings.warn(
                f"{name}: slices lack ImagePositionPatient; kept in file order with spacing 1 mm",
                stacklevel=3,
            )
        proj = np.arange(len(arrays), dtype=np.float64)
        order = np.arange(len(arrays))
        origin = np.zeros(3)
        dz, uniform = 1.0, True
    else:
        proj_all = np.array([float(np.dot(p, normal)) for p in positions])
        order = np.argsort(proj_all, kind="stable")
        proj = proj_all[order]
        origin = positions[int(order[0])]
        dz, uniform = _slice_spacing(name, proj, ds0)
    data = _apply_rescale([arrays[i] for i in order], [rescales[i] for i in order])  # (K, rows, cols, S)
    array = np.ascontiguousarray(np.transpose(data, (3, 2, 1, 0)))  # (S, cols=i, rows=j, K)
    row_sp, col_sp = _pixel_spacing(ds0)
    direction = np.stack([row, col, normal], axis=1)
    meta = _meta(ds0, name)
    meta["SOPInstanceUIDs"] = (
        [str(datasets[i].get("SOPInstanceUID", "")) for i in order]
        if len(datasets) > 1
        else [str(ds0.get("SOPInstanceUID", ""))]
    )
    if not uniform:
        warnings.warn(
            f"{name}: slice spacing is not uniform (missing slices?); using the mean {dz:.4g} mm",
            stacklevel=3,
        )
        meta["nonuniform_slice_spacing"] = True
        meta["slice_positions"] = [float(p) for p in proj]
    return Image(
        array=array, spacing=(col_sp, row_sp, dz), origin=tuple(origin), direction=direction, meta=meta
    )


# ----------------------------------------------------------------------------- series


def _candidate_files(path: Path | Sequence[str | Path]) -> tuple[list[Path], bool]:
    """Files to consider and whether non-DICOM files among them are skipped (folders) or errors."""
    if isinstance(path, str | Path):
        folder = Path(path)
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR"
        )
        return files, True
    files = [Path(p) for p in path]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise DataError(f"DICOM file list: {len(missing)} file(s) not found, first {missing[0]}")
    return files, False


def list_dicom_series(path: str | Path | Sequence[str | Path]) -> dict[str, list[Path]]:
    """Group the image files of a folder (recursive) or a list by SeriesInstanceUID.

    Files without pixel data (RTSTRUCT, SR, ...) and non-DICOM files in a folder are skipped.
    A missing SeriesInstanceUID groups under ``""``.
    """
    files, lenient = _candidate_files(path)
    series: dict[str, list[Path]] = {}
    for f in files:
        ds = _dcmread(f, headers_only=True, lenient=lenient)
        if ds is None or "Rows" not in ds:
            continue
        series.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append(f)
    return series


def _describe(series: dict[str, list[Path]]) -> str:
    return "; ".join(
        f"{uid or '(no SeriesInstanceUID)'}: {len(files)} file(s)" for uid, files in series.items()
    )


def _choose_series(
    name: str, series: dict[str, list[Path]], series_uid: str | None, pick_largest: bool
) -> tuple[str, list[Path]]:
    if not series:
        raise DataError(f"{name}: no DICOM image files found")
    if series_uid is not None:
        if series_uid not in series:
            raise DataError(
                f"{name}: series_uid {series_uid!r} not found; series present: {_describe(series)}"
            )
        return series_uid, series[series_uid]
    if len(series) == 1:
        return next(iter(series.items()))
    if not pick_largest:
        raise DataError(
            f"{name}: {len(series)} DICOM series found, pass series_uid= (or pick_largest=True): "
            f"{_describe(series)}"
        )
    uid, files = max(series.items(), key=lambda kv: len(kv[1]))
    warnings.warn(
        f"{name}: {len(series)} DICOM series found; reading the largest, {uid} ({len(files)} files)",
        stacklevel=3,
    )
    return uid, files


def read_dicom_series(
    path: str | Path | Sequence[str | Path], *, series_uid: str | None = None, pick_largest: bool = False
) -> Image:
    """Read one DICOM series (a folder, searched recursively, or a list of files) as a volume.

    Args:
        path: folder or list of files.
        series_uid: which SeriesInstanceUID to read when several are present.
        pick_largest: with several series and no ``series_uid``, read the one with most files (warns).

    Raises:
        DataError: no series, several series and no choice, inconsistent slices, undecodable pixels.
    """
    name = str(path) if isinstance(path, str | Path) else f"DICOM file list ({len(path)} files)"
    uid, files = _choose_series(name, list_dicom_series(path), series_uid, pick_largest)
    datasets, arrays, positions, rescales = [], [], [], []
    for f in files:
        ds = _dcmread(f, headers_only=False, lenient=False)
        frames = _frames(ds, f)
        if frames.shape[0] != 1:
            raise DataError(
                f"{f}: a multi-frame file ({frames.shape[0]} frames) inside a series; read it alone"
            )
        datasets.append(ds)
        arrays.append(frames[0])
        positions.append(_position(ds))
        rescales.append(_rescale(ds))
    _check_consistent(name, datasets, arrays, files)
    image = _stack(name, datasets, arrays, positions, rescales)
    image.meta["SeriesInstanceUID"] = uid
    return image


def _check_consistent(name: str, datasets: list[Any], arrays: list[np.ndarray], files: list[Path]) -> None:
    shape0, (r0, c0) = arrays[0].shape, _orientation(datasets[0])
    for ds, arr, f in zip(datasets[1:], arrays[1:], files[1:], strict=True):
        if arr.shape != shape0:
            raise DataError(f"{name}: slice {f.name} has shape {arr.shape[:2]}, the first slice {shape0[:2]}")
        r, c = _orientation(ds)
        if not (np.allclose(r, r0, atol=1e-4) and np.allclose(c, c0, atol=1e-4)):
            raise DataError(
                f"{name}: slice {f.name} has another ImageOrientationPatient than the first slice"
            )


# ----------------------------------------------------------------------------- single files


def _frame_positions(ds: Any, n: int, normal: np.ndarray) -> list[np.ndarray | None]:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and len(per_frame) == n and "PlanePositionSequence" in per_frame[0]:
        return [
            np.asarray([float(x) for x in item.PlanePositionSequence[0].ImagePositionPatient])
            for item in per_frame
        ]
    ipp = _position(ds)
    if ipp is None:
        return [None] * n
    offsets = ds.get("GridFrameOffsetVector")
    if offsets is not None and len(offsets) == n:
        off = np.asarray([float(x) for x in offsets])
        return [ipp + (o - off[0]) * normal for o in off]
    step = float(
        ds.get("SpacingBetweenSlices")
        or _functional(ds, "PixelMeasuresSequence", "SpacingBetweenSlices")
        or ds.get("SliceThickness")
        or 1.0
    )
    return [ipp + k * step * normal for k in range(n)]


def read_dicom_file(path: str | Path) -> Image:
    """Read one DICOM file: single-frame as a 2D ``(C, row, column)`` image, multi-frame as a volume.

    Raises:
        DataError: not DICOM, no pixel data, truncated or undecodable pixel data.
    """
    path = Path(path)
    ds = _dcmread(path, headers_only=False, lenient=False)
    frames = _frames(ds, path)
    slope, intercept = _rescale(ds)
    if frames.shape[0] == 1:
        data = _apply_rescale([frames[0]], [(slope, intercept)])[0]  # (rows, cols, S)
        meta = _meta(ds, path)
        meta["SOPInstanceUIDs"] = [str(ds.get("SOPInstanceUID", ""))]
        ipp = _position(ds)
        if ipp is not None:
            row, col = _orientation(ds)
            meta["ImagePositionPatient"] = [float(x) for x in ipp]
            meta["ImageOrientationPatient"] = [float(x) for x in (*row, *col)]
        array = np.ascontiguousarray(np.moveaxis(data, 2, 0))
        return Image(
            array=array, spacing=_pixel_spacing(ds), origin=(0.0, 0.0), direction=np.eye(2), meta=meta
        )
    n = frames.shape[0]
    row, col = _orientation(ds)
    positions = _frame_positions(ds, n, np.cross(row, col))
    return _stack(str(path), [ds] * n, list(frames), positions, [(slope, intercept)] * n, warn_unplaced=False)


def read_dicom(
    path: str | Path | Sequence[str | Path], *, series_uid: str | None = None, pick_largest: bool = False
) -> Image:
    """Read a DICOM folder, zip or file list (a series volume) or a single DICOM file.

    See :func:`read_dicom_series` and :func:`read_dicom_file`.
    """
    if isinstance(path, str | Path) and is_zip(path):
        with dicom_folder(path) as folder:
            image = read_dicom_series(folder, series_uid=series_uid, pick_largest=pick_largest)
        image.meta["source"] = str(path)
        return image
    if isinstance(path, str | Path) and Path(path).is_file():
        return read_dicom_file(path)
    return read_dicom_series(path, series_uid=series_uid, pick_largest=pick_largest)


def read_series_datasets(
    path: str | Path | Sequence[str | Path], *, series_uid: str | None = None, pick_largest: bool = False
) -> list[Any]:
    """The headers (pydicom datasets, no pixel data) of one series, in the slice order of
    :func:`read_dicom_series` (``array[..., k]`` is ``datasets[k]``). ``path``: folder, zip or file list."""
    if isinstance(path, str | Path) and is_zip(path):
        with dicom_folder(path) as folder:
            return read_series_datasets(folder, series_uid=series_uid, pick_largest=pick_largest)
    name = str(path) if isinstance(path, str | Path) else f"DICOM file list ({len(path)} files)"
    _, files = _choose_series(name, list_dicom_series(path), series_uid, pick_largest)
    datasets = [_dcmread(f, headers_only=True, lenient=False) for f in files]
    return sort_slices(datasets)


def sort_slices(datasets: Sequence[Any]) -> list[Any]:
    """Single-frame datasets of one series sorted along the slice normal (file order when unplaced)."""
    positions = [_position(ds) for ds in datasets]
    if len(datasets) < 2 or any(p is None for p in positions):
        return list(datasets)
    row, col = _orientation(datasets[0])
    normal = np.cross(row, col)
    order = np.argsort([float(np.dot(p, normal)) for p in positions], kind="stable")
    return [datasets[int(i)] for i in order]


# ----------------------------------------------------------------------------- zip archives


def is_zip(path: str | Path) -> bool:
    """True for an existing file named ``*.zip`` or starting with the zip signature."""
    p = Path(path)
    if not p.is_file():
        return False
    if p.name.lower().endswith(".zip"):
        return True
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


@contextmanager
def dicom_folder(path: str | Path, *, max_bytes: int = MAX_ZIP_BYTES) -> Iterator[Path]:
    """The folder holding the DICOM files of ``path``: ``path`` itself, or a zip extracted to a
    temporary folder that is removed on exit."""
    p = Path(path)
    if not is_zip(p):
        yield p
        return
    tmp = Path(tempfile.mkdtemp(prefix="medsight-dicomzip-"))
    try:
        extract_zip(p, tmp, max_bytes=max_bytes)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _member_path(zip_path: Path, info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or (rel.parts and ":" in rel.parts[0]):
        raise DataError(f"{zip_path}: member {info.filename!r} has an unsafe path (absolute or '..')")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DataError(f"{zip_path}: member {info.filename!r} is a symbolic link; links are refused")
    if info.flag_bits & 0x1:
        raise DataError(f"{zip_path}: member {info.filename!r} is encrypted")
    return rel


def extract_zip(zip_path: str | Path, dest: str | Path, *, max_bytes: int = MAX_ZIP_BYTES) -> list[Path]:
    """Extract the files of a zip into ``dest`` safely and return their paths.

    Raises:
        DataError: not a zip, corrupt, unsafe member paths or links, encrypted members, more than
            :data:`MAX_ZIP_MEMBERS` files or more than ``max_bytes`` uncompressed.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{zip_path}: not a readable zip archive ({exc})") from exc
    written: list[Path] = []
    with archive:
        members = [i for i in archive.infolist() if not i.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise DataError(f"{zip_path}: {len(members)} files, more than the limit {MAX_ZIP_MEMBERS}")
        declared = sum(i.file_size for i in members)
        if declared > max_bytes:
            raise DataError(f"{zip_path}: {declared} bytes uncompressed, more than the limit {max_bytes}")
        total = 0
        for info in members:
            target = dest.joinpath(*_member_path(zip_path, info).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > max_bytes:  # sizes in the header can lie
                            raise DataError(f"{zip_path}: more than the limit {max_bytes} bytes uncompressed")
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
                raise DataError(f"{zip_path}: cannot extract {info.filename!r} ({exc})") from exc
            written.append(target)
    return written
