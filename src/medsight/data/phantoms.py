"""Synthetic datasets written as MSD / nnU-Net v2 folders, for demos and tests (no download needed).

* ``fundus2d``: colour fundus pictures (PNG, one RGB file per case) with vessel labels and the
  field-of-view masks in ``roisTr``/``roisTs``;
* ``brain3d``: head MRI in T1/T1c/T2/FLAIR (NIfTI, one file per channel) with a glioma labelled
  1 = necrotic core, 2 = edema, 3 = enhancing (BraTS's 4), and BraTS regions in dataset.json.

Cases are deterministic in ``seed`` and their index (train and test cases use separate streams).

Example::

    root = make_phantom_dataset("runs/phantom", kind="fundus2d", n_train=20, n_test=5)
    spec = load_dataset(root)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.data.msd import write_dataset_json
from medsight.data.phantom_brain import CHANNELS, brain_case
from medsight.data.phantom_fundus import fundus_case
from medsight.errors import DataError
from medsight.io import Image, write_image
from medsight.utils import atomic_folder

PHANTOMS = {
    "fundus2d": "synthetic colour fundus pictures with a branching vessel tree (vessel = 1)",
    "brain3d": "synthetic T1/T1c/T2/FLAIR head MRI with a glioma (necrotic core 1, edema 2, enhancing 3)",
}
_DEFAULT_SIZE = {"fundus2d": 128, "brain3d": 48}


def ensure_empty_dest(dest: Path) -> None:
    """Raise DataError when ``dest`` exists and is not an empty folder (nothing is overwritten)."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"{dest}: destination exists and is not an empty folder; choose a new path")


def _write_fundus(tmp: Path, case_id: str, split: str, rng: np.random.Generator, size: int) -> None:
    rgb, label, fov = fundus_case(rng, size)
    write_image(Image.from_array(rgb), tmp / f"images{split}" / f"{case_id}_0000.png")
    write_image(Image.from_array(label, channel_first=False), tmp / f"labels{split}" / f"{case_id}.png")
    write_image(Image.from_array(fov, channel_first=False), tmp / f"rois{split}" / f"{case_id}.png")


def _write_brain(tmp: Path, case_id: str, split: str, rng: np.random.Generator, size: int) -> None:
    channels, label = brain_case(rng, size)
    mm = 192.0 / size  # a ~19 cm field of view, like an adult head
    for c in range(len(CHANNELS)):
        write_image(
            Image.from_array(channels[c], spacing=(mm,) * 3, channel_first=False),
            tmp / f"images{split}" / f"{case_id}_{c:04d}.nii.gz",
        )
    write_image(
        Image.from_array(label, spacing=(mm,) * 3, channel_first=False),
        tmp / f"labels{split}" / f"{case_id}.nii.gz",
    )


def _meta(kind: str, n_train: int, size: int, seed: int) -> dict[str, object]:
    common = {
        "name": f"phantom_{kind}",
        "numTraining": n_train,
        "reference": "medsight synthetic phantom",
        "description": f"{PHANTOMS[kind]}; size {size}, seed {seed}",
        "label_note": "exact synthetic ground truth",
    }
    if kind == "fundus2d":
        return {
            **common,
            "channel_names": {"0": "R", "1": "G", "2": "B"},
            "labels": {"background": 0, "vessel": 1},
            "file_ending": ".png",
        }
    return {
        **common,
        "channel_names": {str(i): n for i, n in enumerate(CHANNELS)},
        "labels": {"background": 0, "necrotic_core": 1, "edema": 2, "enhancing": 3},
        "regions": {"whole_tumour": [1, 2, 3], "tumour_core": [1, 3], "enhancing_tumour": [3]},
        "file_ending": ".nii.gz",
    }


def make_phantom_dataset(
    dest: str | Path,
    kind: str = "fundus2d",
    n_train: int = 20,
    n_test: int = 5,
    seed: int = 0,
    size: int | None = None,
) -> Path:
    """Write a synthetic MSD / nnU-Net v2 dataset folder and return its path.

    Args:
        dest: the folder to create (must not exist or be empty).
        kind: ``"fundus2d"`` (size x size RGB PNG) or ``"brain3d"`` (size^3 NIfTI, 4 channels).
        n_train: training cases (imagesTr/labelsTr); n_test: test cases (imagesTs/labelsTs).
        seed: the random seed; the same arguments always give the same files' content.
        size: picture width / volume edge in pixels (default 128 for fundus2d, 48 for brain3d).

    Raises:
        DataError: unknown kind, bad counts or size, or a non-empty ``dest``.
    """
    if kind not in PHANTOMS:
        raise DataError(f"phantom kind {kind!r} is unknown; choose one of {', '.join(PHANTOMS)}")
    size = int(size or _DEFAULT_SIZE[kind])
    if n_train < 1 or n_test < 0 or size < 16:
        raise DataError(
            f"phantom: need n_train >= 1, n_test >= 0, size >= 16; found {n_train}, {n_test}, {size}"
        )
    dest = Path(dest)
    ensure_empty_dest(dest)
    write = _write_fundus if kind == "fundus2d" else _write_brain
    with atomic_folder(dest) as tmp:
        for split, n, stream in (("Tr", n_train, 0), ("Ts", n_test, 1)):
            for i in range(n):
                write(
                    tmp,
                    f"{kind}_{'test_' if split == 'Ts' else ''}{i:03d}",
                    split,
                    np.random.default_rng([seed, stream, i]),
                    size,
                )
        write_dataset_json(tmp, _meta(kind, n_train, size, seed))
    return dest
