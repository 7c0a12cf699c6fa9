"""Logging for the ``medsight`` command: medsight's own records, and third-party ones kept quiet.

Libraries medsight uses (pydicom, highdicom, PIL, matplotlib, MONAI, ...) log their own errors,
often with a traceback, before medsight turns the failure into one clear :class:`MedsightError`
line. :func:`configure_logging` routes every record through one stderr handler that shows:

* medsight's records at WARNING and above (INFO with ``verbose``, DEBUG with ``debug``);
* third-party records only with ``debug`` (WARNING and above, tracebacks included), or with
  ``verbose`` as one line each (WARNING and above, no traceback); otherwise none.

Tracebacks of any record appear only with ``debug``. Example::

    from medsight.logs import configure_logging
    configure_logging(debug=False, verbose=True)
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

_OWN = "medsight"
_FORMAT = "%(levelname)s %(name)s: %(message)s"


def _is_own(name: str) -> bool:
    return name in (_OWN, "__main__") or name.startswith(_OWN + ".")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler writing to the current ``sys.stderr`` (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ assigns one; ignored
        pass


class _Gate(logging.Filter):
    """Lets medsight's records through at ``own_level`` and third-party ones at ``other_level``."""

    def __init__(self, own_level: int, other_level: int) -> None:
        super().__init__()
        self.own_level, self.other_level = own_level, other_level

    def filter(self, record: logging.LogRecord) -> bool:
        level = self.own_level if _is_own(record.name) else self.other_level
        return record.levelno >= level


class _Formatter(logging.Formatter):
    """The one-line format; exception and stack text only when ``tracebacks``."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__(_FORMAT)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks:
            return super().format(record)
        return self.formatMessage(_plain(record))


def _plain(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` with its message on one line and no traceback (the original is shared)."""
    copy = logging.makeLogRecord(record.__dict__)
    copy.message = " ".join(record.getMessage().split())
    copy.exc_info = copy.exc_text = copy.stack_info = None
    return copy


def configure_logging(debug: bool, verbose: bool) -> logging.Handler:
    """Install medsight's stderr handler on the root logger (replacing one installed before).

    Args:
        debug: show DEBUG records of medsight, third-party warnings and errors, and tracebacks.
        verbose: show INFO records of medsight (progress) and third-party warnings as one line.

    Returns:
        The installed handler.
    """
    own = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    other = logging.WARNING if debug or verbose else logging.CRITICAL + 1
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.addFilter(_Gate(own, other))
    handler.setFormatter(_Formatter(tracebacks=debug))
    root.addHandler(handler)
    root.setLevel(min(own, other))  # the gate filters; logger levels stay unset (pytest's caplog sets them)
    return handler
