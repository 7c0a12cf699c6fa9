"""A DICOMweb client (QIDO-RS search, WADO-RS retrieve, STOW-RS store) over dicomweb-client.

Every network failure becomes a :class:`PacsError` naming the URL, the request and the HTTP status.
Logs name studies and series by UID only, never patient attributes.

Example::

    client = DicomWeb("http://pacs:8042/dicom-web", auth=("user", "password"))
    series = client.search_series(study_uid)
    datasets = client.retrieve_series(study_uid, series[0].series_uid)
    client.store([seg])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from medsight.errors import ConfigError, MedsightError

log = logging.getLogger(__name__)
T = TypeVar("T")

NON_IMAGE_MODALITIES = frozenset(
    {"SEG", "SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "PR", "KO", "DOC", "REG", "OT"}
)
_TAGS = {
    "series_uid": "0020000E",
    "modality": "00080060",
    "series_number": "00200011",
    "instances": "00201209",
}


class PacsError(MedsightError):
    """A DICOMweb request failed: the message names the URL, the request and the HTTP status."""


@dataclass(frozen=True)
class SeriesInfo:
    """One series of a study as QIDO-RS describes it."""

    series_uid: str
    modality: str
    series_number: int | None
    instances: int | None


def _value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value")
    return values[0] if values else None


class DicomWeb:
    """A DICOMweb server at ``url`` (its root, e.g. ``http://host:8042/dicom-web``).

    Args:
        url: the DICOMweb root.
        auth: ``(user, password)`` for HTTP basic authentication.
        token: a bearer token (instead of ``auth``).
        timeout: seconds per request.
    """

    def __init__(
        self, url: str, *, auth: tuple[str, str] | None = None, token: str | None = None, timeout: float = 60
    ) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--url: expected an http(s) DICOMweb root, got {url!r}")
        if auth is not None and token is not None:
            raise ConfigError("DICOMweb: give a user/password or a token, not both")
        self.url = url.rstrip("/")
        session = requests.Session()
        if auth is not None:
            session.auth = auth
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self.client = DICOMwebClient(self.url, session=session, headers=headers, timeout=timeout)
        # retry 429/408/503/504 and refused connections briefly (3 tries, 0.2 s, 0.4 s apart)
        self.client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=100)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run a request, turning network and HTTP failures into a PacsError."""
        import requests

        try:
            return fn()
        except requests.HTTPError as exc:
            response = exc.response
            status = (
                f"HTTP {response.status_code} {response.reason}" if response is not None else "HTTP error"
            )
            url = response.url if response is not None else self.url
            raise PacsError(f"{url}: {what} failed: {status}") from exc
        except requests.RequestException as exc:
            raise PacsError(f"{self.url}: {what} failed: {type(exc).__name__}: {exc}") from exc

    def search_series(self, study_uid: str) -> list[SeriesInfo]:
        """QIDO-RS: the series of a study (empty when the study is unknown)."""
        items = self._call(
            f"QIDO-RS search of the series of study {study_uid}",
            lambda: self.client.search_for_series(
                study_instance_uid=study_uid, fields=list(_TAGS.values()), get_remaining=True
            ),
        )
        series = []
        for item in items:
            number, count = _value(item, _TAGS["series_number"]), _value(item, _TAGS["instances"])
            series.append(
                SeriesInfo(
                    series_uid=str(_value(item, _TAGS["series_uid"]) or ""),
                    modality=str(_value(item, _TAGS["modality"]) or ""),
                    series_number=int(number) if number is not None else None,
                    instances=int(count) if count is not None else None,
                )
            )
        log.info("study %s: %d series", study_uid, len(series))
        return series

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[Any]:
        """WADO-RS: every instance of a series as pydicom datasets, in the stored transfer syntax."""
        datasets = self._call(
            f"WADO-RS retrieval of series {series_uid}",
            lambda: self.client.retrieve_series(
                study_uid, series_uid, media_types=(("application/dicom", "*"),)
            ),
        )
        log.info("series %s: %d instances retrieved", series_uid, len(datasets))
        return list(datasets)

    def store(self, datasets: Sequence[Any], study_uid: str | None = None) -> Any:
        """STOW-RS: store datasets; returns the server's response dataset.

        Raises:
            PacsError: the request failed or the server refused an instance.
        """
        response = self._call(
            f"STOW-RS store of {len(datasets)} instance(s)",
            lambda: self.client.store_instances(list(datasets), study_instance_uid=study_uid),
        )
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise PacsError(
                f"{self.url}: STOW-RS store: the server refused {len(failed)} instance(s), "
                f"failure reason(s) {', '.join(reasons)}"
            )
        log.info("stored %d instance(s) on %s", len(datasets), self.url)
        return response


def choose_image_series(
    series: Sequence[SeriesInfo], study_uid: str, series_uid: str | None = None
) -> SeriesInfo:
    """The series to segment: ``series_uid`` when given, else the CT/MR (else other image) series with
    most instances; SEG, SR, RTSTRUCT and other non-image series are skipped.

    Raises:
        PacsError: the study has no (such) series.
    """
    if series_uid is not None:
        for s in series:
            if s.series_uid == series_uid:
                return s
        raise PacsError(
            f"study {study_uid}: series {series_uid} not found; series: "
            + (", ".join(f"{s.series_uid} ({s.modality})" for s in series) or "none")
        )
    images = [s for s in series if s.modality.upper() not in NON_IMAGE_MODALITIES]
    if not images:
        found = ", ".join(f"{s.series_uid} ({s.modality})" for s in series) or "none (unknown study?)"
        raise PacsError(f"study {study_uid}: no image series to segment; series found: {found}")
    preferred = [s for s in images if s.modality.upper() in ("CT", "MR")] or images
    chosen = max(preferred, key=lambda s: s.instances or 0)
    if len(preferred) > 1:
        log.warning(
            "study %s: %d image series, segmenting %s (%s, %s instances); choose one with --series",
            study_uid,
            len(preferred),
            chosen.series_uid,
            chosen.modality,
            chosen.instances,
        )
    return chosen
