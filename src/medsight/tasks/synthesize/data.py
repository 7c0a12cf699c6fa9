"""What the synthesize family trains on: pictures (with classes, for class-conditional models) or paired
multi-contrast slices (for translation).

* **Pictures**: any classification source (:func:`medsight.data.classification.load_classification`:
  a MedMNIST ``.npz`` or name, class folders, a CSV manifest); the channels are named ``0``, ``1`` ...
* **Paired contrasts**: a folder of subject folders holding one co-registered NIfTI volume per contrast,
  named ``<subject>_<contrast>.nii.gz`` or ``<subject>-<contrast>.nii.gz`` (the BraTS layouts of
  ``../shared/data/brats-tcga``). Contrast names are unified (``t1n`` -> ``t1``, ``t2w`` -> ``t2``,
  ``t2f`` / ``fla`` -> ``flair``). Every axial slice with at least MIN_BRAIN brain becomes one case with
  every contrast as a channel, each volume scaled by its brain's 99.5th percentile to [0, 1], and its
  brain mask (``case.extra["mask"]``). Splits by subject: the last subject (sorted) is ``test``; the
  others train, every VAL_EVERY-th of their slices held out as ``val`` (the checkpoint choice only).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.spec import Case
from medsight.errors import DataError

ALIASES = {"t1n": "t1", "t2w": "t2", "t2f": "flair", "fla": "flair", "t1ce": "t1c"}
MIN_BRAIN = 0.1
VAL_EVERY = 5
VOLUME = re.compile(r"^(?P<subject>.+?)[_-](?P<contrast>[a-z0-9]+)\.nii(\.gz)?$", re.IGNORECASE)


@dataclass
class SynthesisData:
    """Cases per split, the class names (``[]`` without classes) and the channel names."""

    name: str
    kind: str  # "pictures" or "paired"
    splits: dict[str, list[Case]]
    class_names: list[str]
    channel_names: list[str]
    dim: int = 2
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def train(self) -> list[Case]:
        return self.splits.get("train", [])

    @property
    def channels(self) -> int:
        return len(self.channel_names)

    def describe(self) -> dict[str, Any]:
        splits = {}
        for split, cases in self.splits.items():
            info: dict[str, Any] = {"cases": len(cases)}
            if self.class_names:
                y = np.array([int(c.classes) for c in cases], int)
                info["per_class"] = np.bincount(y, minlength=len(self.class_names)).tolist()
            splits[split] = info
        return {
            "name": self.name,
            "kind": self.kind,
            "dim": self.dim,
            "channels": self.channel_names,
            "classes": self.class_names,
            "splits": splits,
            "notes": self.notes,
        }


def load_synthesis_data(source: str | Path) -> SynthesisData:
    """Paired contrasts from a folder of subject folders, else pictures from a classification source."""
    path = Path(source)
    if path.is_dir() and _subject_volumes(path):
        return load_paired(path)
    from medsight.data.classification import load_classification

    data = load_classification(source)
    if data.problem == "multilabel":
        raise DataError(
            f"{data.name}: synthesis needs single-label classes (or none), found multi-label data"
        )
    return SynthesisData(
        data.name,
        "pictures",
        data.splits,
        list(data.class_names),
        [str(i) for i in range(data.channels)],
        dim=data.dim,
        source=str(source),
        notes=list(data.notes),
    )


def _subject_volumes(root: Path) -> dict[str, dict[str, Path]]:
    """subject -> contrast -> volume, for every subject folder with at least two contrasts."""
    out: dict[str, dict[str, Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        found = {}
        for f in sorted(folder.iterdir()):
            m = VOLUME.match(f.name)
            if m and m["subject"] == folder.name:
                contrast = m["contrast"].lower()
                found[ALIASES.get(contrast, contrast)] = f
        if len(found) >= 2:
            out[folder.name] = found
    return out


def load_paired(root: Path) -> SynthesisData:
    """The paired-contrast dataset of ``root`` (see the module doc); read once per process while its
    files are unchanged."""
    volumes = _subject_volumes(root)
    stamp = tuple((str(p), p.stat().st_mtime_ns) for v in volumes.values() for p in v.values())
    return _load_paired(root.resolve(), stamp)


@functools.lru_cache(maxsize=2)
def _load_paired(root: Path, stamp: tuple[tuple[str, int], ...]) -> SynthesisData:
    volumes = _subject_volumes(root)
    common = sorted(set.intersection(*(set(v) for v in volumes.values())))
    if len(volumes) < 2 or len(common) < 2:
        raise DataError(
            f"{root}: paired translation needs at least 2 subjects sharing 2 contrasts; found "
            f"{ {s: sorted(v) for s, v in volumes.items()} }"
        )
    splits: dict[str, list[Case]] = {"train": [], "val": [], "test": []}
    subjects = sorted(volumes)
    for subject in subjects:
        for i, case in enumerate(subject_cases(subject, volumes[subject], common)):
            split = (
                "test" if subject == subjects[-1] else ("val" if i % VAL_EVERY == VAL_EVERY - 1 else "train")
            )
            splits[split].append(case)
    notes = [f"test subject {subjects[-1]}; training subjects {', '.join(subjects[:-1])}"]
    return SynthesisData(root.name, "paired", splits, [], common, dim=2, source=str(root), notes=notes)


def scaled_volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A volume scaled by its brain's (non-zero voxels') 99.5th percentile to [0, 1], and the brain mask."""
    from medsight.io import read_image

    vol = read_image(path).array[0].astype(np.float32)
    if not np.isfinite(vol).all():
        raise DataError(f"{path}: holds NaN or infinite values")
    brain = vol > 0
    scale = float(np.percentile(vol[brain], 99.5)) if brain.any() else 1.0
    return np.clip(vol / max(scale, 1e-6), 0, 1), brain


def subject_cases(subject: str, files: dict[str, Path], contrasts: list[str]) -> list[Case]:
    """One case per axial slice with enough brain: every contrast as a channel, the union brain mask."""
    arrays, masks = [], []
    for contrast in contrasts:
        vol, brain = scaled_volume(files[contrast])
        if arrays and vol.shape != arrays[0].shape:
            raise DataError(f"{files[contrast]}: shape {vol.shape} does not match {files[contrasts[0]]}")
        arrays.append(vol)
        masks.append(brain)
    stack, mask = np.stack(arrays), np.logical_or.reduce(masks)
    cases = []
    for z in range(stack.shape[-1]):
        if mask[..., z].mean() >= MIN_BRAIN:
            cases.append(
                Case(
                    f"{subject}_z{z:03d}",
                    array=np.ascontiguousarray(stack[..., z]),
                    patient_id=subject,
                    extra={"mask": mask[..., z]},
                )
            )
    return cases


def channel_index(data_channels: list[str], name: str | None, option: str) -> int:
    """The index of channel ``name`` (a contrast name or number); a ConfigError names what exists."""
    from medsight.errors import ConfigError

    if name is None:
        raise ConfigError(f"{option}: not set; the data's channels are {', '.join(data_channels)}")
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in data_channels:
        raise ConfigError(
            f"{option}: the data has no channel {name!r}; its channels are {', '.join(data_channels)}"
        )
    return data_channels.index(key)
