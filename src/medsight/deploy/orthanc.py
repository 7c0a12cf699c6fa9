"""A throwaway local Orthanc PACS with DICOMweb, to try ``medsight pacs`` (and to test it).

Example::

    with LocalOrthanc(user="medsight", password="secret") as pacs:
        print(pacs.dicomweb_url)      # http://127.0.0.1:PORT/dicom-web
        ...                           # medsight pacs --url ... --study ... --run ...

Orthanc and its DICOMweb plugin come from the Debian packages ``orthanc`` and ``orthanc-dicomweb``;
other locations are given with ``executable=`` / ``plugin=`` or ``$ORTHANC`` / ``$ORTHANC_DICOMWEB_PLUGIN``.
The server listens on the loopback interface only, stores into a temporary folder, has its DICOM
(DIMSE) port on another free loopback port, and is stopped (and its storage removed) on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from medsight.errors import ConfigError, MedsightError

_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins", "/usr/local/share/orthanc/plugins")
_PLUGIN_NAME = "libOrthancDicomWeb.so"


def find_orthanc() -> tuple[Path | None, Path | None]:
    """(Orthanc executable, DICOMweb plugin), each None when not found."""
    exe = os.environ.get("ORTHANC") or shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")
    plugin = os.environ.get("ORTHANC_DICOMWEB_PLUGIN")
    if plugin is None:
        plugin = next((f"{d}/{_PLUGIN_NAME}" for d in _PLUGIN_DIRS if Path(d, _PLUGIN_NAME).is_file()), None)
    return (Path(exe) if exe else None), (Path(plugin) if plugin and Path(plugin).is_file() else None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalOrthanc:
    """Start Orthanc on free loopback ports with DICOMweb enabled; a context manager.

    Args:
        user, password: HTTP basic authentication (both or neither; default: none).
        executable, plugin: Orthanc and the DICOMweb plugin (default: :func:`find_orthanc`).
        timeout: seconds to wait for the server to answer.
    """

    def __init__(
        self,
        *,
        user: str | None = None,
        password: str | None = None,
        executable: str | Path | None = None,
        plugin: str | Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        found_exe, found_plugin = find_orthanc()
        self.executable = Path(executable) if executable else found_exe
        self.plugin = Path(plugin) if plugin else found_plugin
        if self.executable is None or self.plugin is None:
            raise ConfigError(
                "Orthanc with the DICOMweb plugin not found (install the Debian packages orthanc and "
                f"orthanc-dicomweb); found executable {self.executable}, plugin {self.plugin}"
            )
        if (user is None) != (password is None):
            raise ConfigError("LocalOrthanc: give user and password together")
        self.user, self.password, self.timeout = user, password, timeout
        self.port = 0
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The REST root, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root, ``http://127.0.0.1:PORT/dicom-web``."""
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.user, self.password) if self.user is not None and self.password is not None else None

    def _config(self) -> dict[str, object]:
        assert self._dir is not None
        config: dict[str, object] = {
            "Name": "medsight-test",
            "StorageDirectory": str(self._dir / "storage"),
            "IndexDirectory": str(self._dir / "storage"),
            "HttpPort": self.port,
            "DicomPort": _free_port(),
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "HttpBindAddress": "127.0.0.1",
            "AuthenticationEnabled": self.user is not None,
            "Plugins": [str(self.plugin)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
            "StableAge": 1,
        }
        if self.user is not None:
            config["RegisteredUsers"] = {self.user: self.password}
        return config

    def start(self) -> LocalOrthanc:
        """Start the server and wait until its DICOMweb root answers."""
        self._dir = Path(tempfile.mkdtemp(prefix="medsight-orthanc-"))
        self.port = _free_port()
        config = self._dir / "orthanc.json"
        config.write_text(json.dumps(self._config(), indent=2))
        log = open(self._dir / "orthanc.log", "wb")  # noqa: SIM115  (closed in stop)
        self._log = log
        self._process = subprocess.Popen([str(self.executable), str(config)], stdout=log, stderr=log)
        self._wait()
        return self

    def _wait(self) -> None:
        import requests

        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            try:
                r = requests.get(f"{self.dicomweb_url}/studies", auth=self.auth, timeout=2)
                if r.status_code in (200, 204):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise MedsightError(f"Orthanc did not start on {self.url} within {self.timeout:.0f} s: {tail}")

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the server's log."""
        if self._dir is None or not (self._dir / "orthanc.log").is_file():
            return ""
        text = (self._dir / "orthanc.log").read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        """Stop the server and remove its storage."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
            self._log.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> LocalOrthanc:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
