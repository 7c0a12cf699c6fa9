"""A DICOM no installed decoder can read: one clear error line, an install hint only when one is missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.data import get_testdata_file

from medsight.errors import DataError
from medsight.io import read_image
from medsight.io.dicom import _extra_installed, decoder_hint

INSTALL_HINT = "pip install"


@pytest.fixture(scope="module")
def jpeg12() -> Path:
    """pydicom's 12-bit JPEG Extended file (process 4), which neither pylibjpeg nor Pillow decodes."""
    found = get_testdata_file("JPEG-lossy.dcm")
    if found is None:
        pytest.skip("pydicom's test file JPEG-lossy.dcm is not installed")
    path = Path(str(found))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGExtended12Bit and ds.BitsStored == 12
    return path


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medsight.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_undecodable_file_is_one_line_naming_the_tried_decoders(jpeg12: Path) -> None:
    if not _extra_installed():
        pytest.skip("medsight[dicom] decoders are not installed")
    with pytest.raises(DataError) as info:
        read_image(jpeg12)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{jpeg12}: cannot decode pixel data, transfer syntax JPEG Extended")
    assert "the installed decoders (" in message and "pylibjpeg" in message
    assert INSTALL_HINT not in message  # the decoders it would suggest are already there


def test_install_hint_only_when_the_decoder_is_missing(jpeg12: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = pydicom.dcmread(jpeg12, stop_before_pixels=True)
    missing = SimpleNamespace(
        is_available=False, available_plugins=(), missing_dependencies=["pylibjpeg - requires pylibjpeg>=2.0"]
    )
    monkeypatch.setattr("medsight.io.dicom._extra_installed", lambda: False)
    monkeypatch.setattr("pydicom.pixels.get_decoder", lambda uid: missing)
    assert "pip install 'medsight[dicom]'" in decoder_hint(ds)
    monkeypatch.setattr("medsight.io.dicom._extra_installed", lambda: True)  # installed, yet unusable here
    assert INSTALL_HINT not in decoder_hint(ds) and "no installed decoder supports it" in decoder_hint(ds)


def test_no_hint_for_uncompressed_or_unknown_syntaxes(data_root: Path) -> None:
    ds = pydicom.dcmread(data_root / "dicom" / "pydicom" / "CT_small.dcm", stop_before_pixels=True)
    assert decoder_hint(ds) == ""
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID("1.2.3.4.5")  # compressed by default: not a known one
    assert decoder_hint(ds) == "; pydicom has no decoder for this transfer syntax"


def test_cli_prints_one_line_and_no_third_party_traceback(jpeg12: Path, tmp_path: Path) -> None:
    shutil.copy(jpeg12, tmp_path / "scan.dcm")
    (tmp_path / "cases.csv").write_text("image\nscan.dcm\n")
    res = _cli("fingerprint", "cases.csv", "--task", "segment", cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert (
        lines[0].startswith("DataError: scan.dcm: cannot decode pixel data") and "Traceback" not in res.stderr
    )
    assert (INSTALL_HINT in lines[0]) == (not _extra_installed())
    debug = _cli("--debug", "fingerprint", "cases.csv", "--task", "segment", cwd=tmp_path)
    assert debug.returncode != 0 and "ERROR pydicom" in debug.stderr and "Traceback" in debug.stderr
