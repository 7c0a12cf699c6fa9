"""configure_logging: third-party records and every traceback only with --debug."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from medsight.logs import configure_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root, own = logging.getLogger(), logging.getLogger("medsight")
    handlers, level, own_level = list(root.handlers), root.level, own.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    own.setLevel(own_level)


def _emit() -> None:
    try:
        raise RuntimeError("decoder exploded")
    except RuntimeError:
        logging.getLogger("pydicom.pixels.decoders.base").exception("plugin failed\nsecond line")
    logging.getLogger("PIL.Image").warning("odd file")
    logging.getLogger("medsight.data").info("loading 3 cases")
    logging.getLogger("medsight.io").warning("slices lack positions")


@pytest.mark.usefixtures("restore_root")
@pytest.mark.parametrize(
    ("debug", "verbose", "expected", "traceback"),
    [
        (False, False, ["WARNING medsight.io: slices lack positions"], False),
        (
            False,
            True,
            [
                "ERROR pydicom.pixels.decoders.base: plugin failed second line",
                "WARNING PIL.Image: odd file",
                "INFO medsight.data: loading 3 cases",
                "WARNING medsight.io: slices lack positions",
            ],
            False,
        ),
        (True, False, None, True),
    ],
)
def test_what_each_mode_shows(
    capsys: pytest.CaptureFixture[str],
    debug: bool,
    verbose: bool,
    expected: list[str] | None,
    traceback: bool,
) -> None:
    configure_logging(debug=debug, verbose=verbose)
    configure_logging(debug=debug, verbose=verbose)  # idempotent: one handler, not two
    _emit()
    err = capsys.readouterr().err
    assert ("Traceback" in err) == traceback
    if expected is not None:
        assert err.splitlines() == expected
    else:
        assert "RuntimeError: decoder exploded" in err and "INFO medsight.data: loading 3 cases" in err
        assert err.count("WARNING medsight.io: slices lack positions") == 1
