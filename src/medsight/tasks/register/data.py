"""What the register family trains on: subjects (an image each, a label map optional), split by
subject, registered to one atlas.

Sources :func:`load_register_data` accepts:

- a folder with ``images/`` (and optional ``labels/``, label maps with the image's file name), or with
  ``train/`` and ``test/`` subfolders laid out that way; a folder of images alone works too;
- any dataset :func:`medsight.data.load_dataset` reads (MSD / nnU-Net folder, CSV manifest, registered
  name): each case's first channel is the subject's image, its label map the labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsight.data.spec import Case
from medsight.errors import DataError


@dataclass
class RegisterData:
    """A loaded registration dataset: subjects by split, their dimensionality."""

    name: str
    dim: int
    train: list[Case]
    test: list[Case] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "splits": {
                s: {"subjects": len(c), "with_labels": sum(x.label is not None for x in c)}
                for s, c in (("train", self.train), ("test", self.test))
            },
            "notes": self.notes,
        }


def load_register_data(source: str | Path) -> RegisterData:
    """Read a registration dataset (see the module docstring).

    Raises:
        DataError: no images, a label map without its image, images of mixed dimensionality.
    """
    path = Path(source)
    if path.is_dir() and ((path / "images").is_dir() or (path / "train").is_dir() or _plain(path)):
        data = _from_folder(path)
    else:
        data = _from_dataset(source)
    if not data.train:
        raise DataError(f"{path}: no training subjects found")
    return data


def _plain(folder: Path) -> bool:
    from medsight.io.readers import is_image_file

    return (
        not (folder / "imagesTr").is_dir()
        and not (folder / "dataset.json").is_file()
        and any(is_image_file(p) for p in folder.iterdir())
    )


def _cases(root: Path) -> list[Case]:
    from medsight.io.readers import is_image_file, split_suffix

    images_dir = root / "images" if (root / "images").is_dir() else root
    labels_dir = root / "labels"
    labels = (
        {split_suffix(p)[0]: p for p in sorted(labels_dir.glob("*")) if is_image_file(p)}
        if labels_dir.is_dir()
        else {}
    )
    cases = []
    for p in sorted(images_dir.rglob("*")):
        if not is_image_file(p) or labels_dir in p.parents:
            continue
        stem = split_suffix(p)[0]
        cases.append(Case(case_id=stem, images=(p,), label=labels.pop(stem, None), patient_id=stem))
    if labels:
        raise DataError(f"{labels_dir}: label map(s) without an image: {sorted(labels)[:5]}")
    return cases


def _from_folder(folder: Path) -> RegisterData:
    if (folder / "train").is_dir():
        train, test = _cases(folder / "train"), _cases(folder / "test") if (folder / "test").is_dir() else []
    else:
        train, test = _cases(folder), []
    return RegisterData(folder.name, _dimension([*train, *test], folder), train, test)


def _from_dataset(source: str | Path) -> RegisterData:
    from medsight.data import load_dataset

    spec = load_dataset(source)

    def cases(items: list[Case]) -> list[Case]:
        return [
            Case(case_id=c.case_id, images=c.images[:1], label=c.label, patient_id=c.patient) for c in items
        ]

    train, test = cases(spec.train), cases(spec.test)
    return RegisterData(spec.name, _dimension([*train, *test], Path(str(source))), train, test)


def _dimension(cases: list[Case], where: Path) -> int:
    """The images' dimensionality (read from the first few headers); mixed is an error."""
    dims = {}
    for case in cases[:8]:
        dims[case.case_id] = atlas_info(case.images[0])["dim"]
    if not dims:
        raise DataError(f"{where}: no images found")
    if len(set(dims.values())) > 1:
        raise DataError(f"{where}: images of mixed dimensionality {dims}; keep 2D and 3D apart")
    return next(iter(dims.values()))


def atlas_info(path: str | Path) -> dict[str, Any]:
    """Dimensionality, spacing and physical extent (mm per axis, ITK order) of an image file."""
    from medsight.io import read_image

    image = read_image(path)
    extent = [float(n * s) for n, s in zip(image.shape, image.spacing, strict=True)]
    return {"dim": image.ndim, "spacing": list(image.spacing), "extent": extent, "shape": list(image.shape)}
