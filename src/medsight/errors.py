"""The exception hierarchy. Every error raised at a boundary is a MedsightError.

Messages name the thing (file, case, field), what was expected and what was found, e.g.
``DataError: labelsTr/case_003.nii.gz: shape (64, 64, 30) does not match image (64, 64, 31)``.
The CLI prints the message alone and exits with code 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class MedsightError(Exception):
    """Base of every error medsight raises on purpose."""


class ConfigError(MedsightError):
    """A configuration value is missing, unknown or of the wrong type."""


class DataError(MedsightError):
    """A file or dataset is unreadable, inconsistent or not what was declared."""


class ShapeError(MedsightError):
    """An array has the wrong shape."""

    def __init__(self, what: str, expected: Any, actual: Any) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what}: expected shape {expected}, got {actual}")


class RunError(MedsightError):
    """A run folder is missing, incomplete or incompatible."""


class RegistryError(MedsightError):
    """A name is unknown to a registry or registered twice."""


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
