"""pixel_metrics on real DRIVE annotations: the second observer against the first (a published anchor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsight.metrics import pixel_metrics
from medsight.utils import shared_data_root


@pytest.fixture()
def drive_test() -> Path:
    root = shared_data_root()
    folder = root / "drive" / "testing" if root else None
    if folder is None or not (folder / "2nd_manual").is_dir():
        pytest.skip("real data absent: ../shared/data/drive/testing (with 2nd_manual) not found")
    return folder


def _gif(path: Path) -> np.ndarray:
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        grey = np.asarray(im.convert("L"))  # the 2nd manuals are palette GIFs with near-black/near-white
    return grey > 127


@pytest.mark.realdata
def test_drive_second_observer_matches_published_numbers(drive_test: Path) -> None:
    """Inside the FOV, 2nd vs 1st manual: accuracy 0.9473, sensitivity 0.7760, specificity 0.9725
    (means over the 20 test images, as reported in the DRIVE literature, e.g. Fraz et al. 2012)."""
    rows = []
    for i in range(1, 21):
        first = _gif(drive_test / "1st_manual" / f"{i:02d}_manual1.gif")
        second = _gif(drive_test / "2nd_manual" / f"{i:02d}_manual2.gif")
        fov = _gif(drive_test / "mask" / f"{i:02d}_test_mask.gif")
        rows.append(pixel_metrics(second.astype(np.float32), first, roi=fov))
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("accuracy", "sensitivity", "specificity")}
    assert mean["accuracy"] == pytest.approx(0.9473, abs=5e-4)
    assert mean["sensitivity"] == pytest.approx(0.7760, abs=5e-4)
    assert mean["specificity"] == pytest.approx(0.9725, abs=5e-4)
