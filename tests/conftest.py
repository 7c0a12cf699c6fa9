"""Suite-wide settings: few threads (2-core CI machine), caches outside the repo and ../shared."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    import torch

    torch.set_num_threads(2)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fingerprint caches go to a temporary folder, never the user's ~/.cache or the read-only data."""
    os.environ["MEDSIGHT_CACHE"] = str(tmp_path_factory.mktemp("medsight-cache"))


@pytest.fixture(scope="session")
def data_root():
    """The real-data folder ../shared/data; tests that take it skip with a message when it is absent."""
    from medsight.utils import shared_data_root

    root = shared_data_root()
    if root is None:
        pytest.skip("real data folder ../shared/data not found (set MEDSIGHT_DATA to run real-data tests)")
    return root
