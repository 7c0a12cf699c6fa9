"""Fixtures for the I/O tests: the real-data folder (skip when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsight.utils import shared_data_root


@pytest.fixture(scope="session")
def shared_root() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip(
            "real data folder ../shared/data not found (set MEDSIGHT_DATA to run real-data I/O tests)"
        )
    return root
