"""A 3D box dataset from the one labelled TotalSegmentator CT, split by body side.

``../shared/data/totalseg-examples/example_ct.nii.gz`` (122 x 101 x 112 voxels at 3 mm, pelvis to lower
thorax) with ``example_seg_fast_force_split.nii.gz``, the labels of the TotalSegmentator model (**model
outputs, not manual**; v2 class ids). One subject gives no held-out patient, so the split is by side:
the paired structures of the patient's left half train, the same structures of the right half (never
seen) validate. Each half (61 voxels wide, the split at the spine) is cut into four overlapping axial
slabs of 40 slices (stride 24); a structure is a box in a slab when at least ``MIN_INSIDE`` of its voxels
in that half lie inside the slab, the box being its extent there. Classes are side-agnostic ("kidney",
"rib", ...), so the planner's flips include left-right.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from medsight.utils import atomic_write_text

SOURCE = "totalseg-examples"
# class -> (TotalSegmentator v2 ids on the patient's left, ids on the right)
PAIRS = {
    "kidney": ([3], [2]),
    "adrenal_gland": ([9], [8]),
    "lung_lower_lobe": ([11], [14]),
    "iliac_artery": ([65], [66]),
    "iliac_vein": ([67], [68]),
    "femur": ([75], [76]),
    "hip": ([77], [78]),
    "gluteus_maximus": ([80], [81]),
    "gluteus_medius": ([82], [83]),
    "gluteus_minimus": ([84], [85]),
    "autochthon": ([86], [87]),
    "iliopsoas": ([88], [89]),
    "rib": (list(range(92, 104)), list(range(104, 116))),
}
SLAB, STRIDE, MIN_INSIDE = 40, 24, 0.3


def build(data_root: Path, out: Path) -> Path:
    """Write the slabs (NIfTI) and ``boxes.json`` (MONAI's format, voxel corners) under ``out``."""
    folder = data_root / SOURCE
    ct = nib.load(str(folder / "example_ct.nii.gz"))
    image = np.asarray(ct.dataobj, dtype=np.int16)
    label = np.asarray(nib.load(str(folder / "example_seg_fast_force_split.nii.gz")).dataobj)
    half = image.shape[0] // 2
    out.mkdir(parents=True, exist_ok=True)
    content = {
        "box_mode": "xyzxyz",
        "coordinates": "voxel",
        "classes": {str(k): name for k, name in enumerate(PAIRS, start=1)},
    }
    # array x < half is the patient's left (kidney_left, femur_left lie there)
    for split, side, x0 in (("training", 0, 0), ("validation", 1, half)):
        sub = (slice(x0, x0 + half), slice(None), slice(None))
        content[split] = [
            _slab(
                out / f"{('left', 'right')[side]}_z{z0:03d}.nii.gz",
                ct.affine,
                image[sub],
                label[sub],
                side,
                (x0, z0),
            )
            for z0 in range(0, image.shape[2] - SLAB + 1, STRIDE)
        ]
    path = out / "boxes.json"
    atomic_write_text(path, json.dumps(content, indent=1))
    return path


def _slab(
    file: Path, affine: np.ndarray, image: np.ndarray, label: np.ndarray, side: int, corner: tuple
) -> dict:
    """One slab (``corner``: its x, z offset in the CT) as a NIfTI, its affine moved there, and its boxes."""
    x0, z0 = corner
    shift = np.eye(4)
    shift[:3, 3] = [x0, 0, z0]
    nib.save(nib.Nifti1Image(image[..., z0 : z0 + SLAB], affine @ shift), str(file))
    boxes, labels = [], []
    for k, ids in enumerate(PAIRS.values(), start=1):
        for value in ids[side]:
            inside = label[..., z0 : z0 + SLAB] == value
            total = int((label == value).sum())
            if total == 0 or inside.sum() < MIN_INSIDE * total:
                continue
            where = np.nonzero(inside)
            boxes.append([float(w.min()) for w in where] + [float(w.max() + 1) for w in where])
            labels.append(k)
    return {"image": file.name, "box": boxes, "label": labels}
