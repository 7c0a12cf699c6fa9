"""What a dataset is, independent of its folder layout.

Every layout (MSD / nnU-Net v2 folder, CSV manifest, the adapters for ../shared/data) is turned into
one :class:`DatasetSpec`, and everything downstream (validation, fingerprint, planning, training)
reads only that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Boxes:
    """Boxes of one image: ``coords`` (N, 2 * dim) as (x0, y0[, z0], x1, y1[, z1]) in voxels of the
    image, corners inclusive-exclusive, and ``labels`` (N,) class indices."""

    coords: np.ndarray = field(compare=False)
    labels: np.ndarray = field(compare=False)


@dataclass(frozen=True)
class Case:
    """One case of any task family: its image, as channel files or an in-memory array, and its typed
    targets (each family reads the ones it needs; the others stay None).

    ``images`` has one path per channel (a multi-channel file such as an RGB PNG counts as one
    path whose channels are all used); ``array`` (``(C, *spatial)``, as stored) replaces files for
    in-memory sources such as MedMNIST. Targets: ``label`` a label map file (segmentation),
    ``classes`` a class index or a 0/1 vector (classification; -1: unknown), ``boxes`` (detection),
    ``target`` a paired target image file (enhancement, translation), ``kspace`` a raw k-space file
    (reconstruction), ``fixed`` the fixed image the case's image is registered to (registration).
    ``roi`` is an evaluation mask, e.g. DRIVE's field of view: metrics are computed inside it.
    ``extra`` holds more references (e.g. DRIVE's 2nd manual).
    """

    case_id: str
    images: tuple[Path, ...] = ()
    label: Path | None = None
    patient_id: str | None = None
    roi: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    classes: Any = field(default=None, hash=False)
    array: np.ndarray | None = field(default=None, hash=False, compare=False, repr=False)
    boxes: Boxes | None = field(default=None, hash=False, compare=False)
    target: Path | None = None
    kspace: Path | None = None
    fixed: Path | None = None

    @property
    def patient(self) -> str:
        """The grouping key for patient-level splits (falls back to the case id)."""
        return self.patient_id or self.case_id

    def read(self) -> np.ndarray:
        """The image as ``(C, *spatial)`` float32, intensities as stored (channel files concatenated)."""
        if self.array is not None:
            return self.array.astype(np.float32)
        from medsight.io import read_image

        arrays = [read_image(p).array for p in self.images]
        return np.concatenate(arrays, axis=0).astype(np.float32)


@dataclass
class DatasetSpec:
    """A dataset: training cases (with labels), test cases (labels optional) and their meaning.

    ``labels`` maps class names to integer values, background included (``{"background": 0, ...}``).
    ``regions`` (optional) maps region names to lists of label values for region-based training
    (BraTS: whole tumour = [1, 2, 4] ...). ``modality`` is per channel: "CT", "MR", "RGB", ...

    ``label_map`` (optional) maps the values stored in the label files to the values of ``labels``,
    e.g. ``{0: 1, 255: 0}`` for ISBI 2012 where black (0) is membrane; a stored value missing from
    it is an error. Read labels with :func:`medsight.data.read_label`, which applies it.
    """

    name: str
    root: Path
    train: list[Case]
    test: list[Case]
    channel_names: dict[int, str]
    labels: dict[str, int]
    file_ending: str
    regions: dict[str, list[int]] | None = None
    description: str = ""
    label_note: str = ""
    label_map: dict[int, int] | None = None

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def label_values(self) -> list[int]:
        return sorted(set(self.labels.values()))

    def modality(self, channel: int = 0) -> str:
        return self.channel_names.get(channel, "")

    @property
    def cases(self) -> list[Case]:
        """Training cases, then test cases."""
        return [*self.train, *self.test]

    @property
    def is_ct(self) -> bool:
        return any(v.upper() == "CT" for v in self.channel_names.values())
