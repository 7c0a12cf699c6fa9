"""``brats-slices``: the BraTS-like FLAIR volumes of ``../shared/data/brats-tcga`` as 2D axial slices,
classified ``healthy`` (no tumour voxel) or ``tumour``, each tumour slice carrying its tumour mask
(``case.extra["mask"]``: the union of the labels of ``seg_fusion_simple``), for pixel-level anomaly
detection.

* Only the subjects with a tumour label are used (TCGA-DU-7294 and OtherEXampleFromTCIA); slices with
  less than MIN_BRAIN of brain, and slices with 1 to MIN_TUMOUR - 1 tumour voxels (neither clearly
  healthy nor clearly tumour), are left out.
* Intensities: each volume's FLAIR scaled by its brain's 99.5th percentile to 0..255 (uint8).
* Splits: ``train`` three in four healthy slices of both subjects; ``val`` the first subject's other
  slices (healthy and tumour), ``test`` the second subject's (so the test subject's other healthy
  slices are among the training ones: with two subjects, a subject-level split would leave a few
  dozen training slices). The labels are outputs of BraTS algorithms, not manual.

Registered in :data:`medsight.data.DATASETS` (``targets="classes"``) when imported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.data.classification import ClassificationData
from medsight.data.spec import Case
from medsight.errors import DataError

NAME = "brats-slices"
CLASSES = ["healthy", "tumour"]
SUBJECTS = ("TCGA-DU-7294", "OtherEXampleFromTCIA")  # (validation subject, test subject)
MIN_BRAIN = 0.15  # of the slice's pixels
MIN_TUMOUR = 20  # voxels


def _flair(folder: Path) -> Path:
    for suffix in ("fla", "t2f"):
        for sep in ("_", "-"):
            path = folder / f"{folder.name}{sep}{suffix}.nii.gz"
            if path.is_file():
                return path
    raise DataError(f"{folder}: no FLAIR file ({folder.name}_fla.nii.gz or -t2f.nii.gz)")


def subject_slices(folder: Path) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(z, uint8 FLAIR slice, tumour mask)`` of every axial slice kept (see the module doc)."""
    from medsight.io import read_image

    flair = read_image(_flair(folder)).array[0].astype(np.float32)
    seg_path = folder / "seg_fusion_simple.nii.gz"
    if not seg_path.is_file():
        raise DataError(f"{seg_path}: tumour label not found")
    seg = read_image(seg_path).array[0] > 0
    if seg.shape != flair.shape:
        raise DataError(f"{seg_path}: shape {seg.shape} does not match the FLAIR {flair.shape}")
    brain = flair > 0
    scale = float(np.percentile(flair[brain], 99.5)) if brain.any() else 1.0
    scaled = np.clip(flair / max(scale, 1e-6) * 255, 0, 255).astype(np.uint8)
    out = []
    for z in range(flair.shape[-1]):
        tumour = int(seg[..., z].sum())
        if brain[..., z].mean() < MIN_BRAIN or 0 < tumour < MIN_TUMOUR:
            continue
        out.append((z, scaled[..., z], seg[..., z]))
    return out


def load_brain_slices(root: Path) -> ClassificationData:
    """The ``brats-slices`` dataset from the ``brats-tcga`` folder ``root``."""
    splits: dict[str, list[Case]] = {"train": [], "val": [], "test": []}
    for subject in SUBJECTS:
        folder = root / subject
        if not folder.is_dir():
            raise DataError(f"{root}: subject folder {subject} not found")
        for i, (z, image, mask) in enumerate(subject_slices(folder)):
            k = int(mask.any())
            case = Case(f"{subject}_z{z:03d}", classes=k, array=image[None], patient_id=subject,
                        extra={"mask": mask} if k else {})  # fmt: skip
            held_out = "val" if subject == SUBJECTS[0] else "test"
            splits["train" if (k == 0 and i % 4) else held_out].append(case)
    data = ClassificationData(NAME, "binary", list(CLASSES), splits, dim=2, channels=1, source=str(root))
    data.notes.append("tumour labels are outputs of BraTS algorithms (seg_fusion_simple), not manual")
    return data


def _register() -> None:
    from medsight.data.adapters import DATASETS, DatasetAdapter

    if NAME not in DATASETS:
        text = "BraTS-like FLAIR axial slices, healthy vs tumour, with tumour masks (2 subjects)"
        DATASETS.add(NAME, DatasetAdapter(NAME, "brats-tcga", text, load_brain_slices, targets="classes"))


_register()
