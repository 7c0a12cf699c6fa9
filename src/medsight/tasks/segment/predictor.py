"""Inference from a run folder: files or folders in, label maps out in the input's geometry."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from medsight.data.reading import CaseData
from medsight.data.spec import Case
from medsight.errors import DataError
from medsight.io import Image, read_image, write_image
from medsight.io.readers import detect_format, split_suffix
from medsight.runs import open_run
from medsight.tasks.segment.pipeline import load_model
from medsight.tasks.segment.task import SegmentTask

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")


def group_inputs(folder: Path, in_channels: int) -> dict[str, list[Path]]:
    """Case id -> channel files under ``folder``: ``CASE_0000.ext``, ``CASE_0001.ext`` ... for
    multi-channel inputs (nnU-Net naming), one file per case otherwise; a DICOM series folder is one
    case. A file or folder given directly is one case."""
    if folder.is_file() or (folder.is_dir() and _is_dicom_folder(folder)):
        return {split_suffix(folder)[0]: [folder]}
    if not folder.is_dir():
        raise DataError(f"{folder}: input not found")
    groups: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or (p.is_file() and not _readable(p)):
            continue
        stem = split_suffix(p)[0]
        match = _CHANNEL.match(stem)
        case = (
            match.group("case")
            if (match and in_channels > 1) or (match and match.group("ch") == "0000")
            else stem
        )
        groups.setdefault(case, []).append(p)
    if not groups:
        raise DataError(f"{folder}: no readable image found")
    for case, files in groups.items():
        if len(files) > 1 and len(files) != in_channels:
            raise DataError(
                f"{folder}: case {case!r} has {len(files)} channel files, the model expects {in_channels}"
            )
    return groups


def _readable(path: Path) -> bool:
    try:
        detect_format(path)
    except DataError:
        return False
    return True


def _is_dicom_folder(folder: Path) -> bool:
    files = [p for p in folder.iterdir() if p.is_file()]
    return (
        bool(files)
        and all(detect_format(p) == "dicom" for p in files if _readable(p))
        and any(_readable(p) for p in files)
    )


class Predictor:
    """A trained segmenter ready to predict: ``Predictor.from_run(run).predict_image(image)``."""

    def __init__(self, task: SegmentTask, model: torch.nn.Module) -> None:
        self.task, self.model = task, model

    @classmethod
    def from_run(cls, run_dir: str | Path, *, tta: bool | None = None, device: str = "auto") -> Predictor:
        run = open_run(run_dir)
        task, model = load_model(run, device)
        if tta is not None:
            task.plan = task.plan.model_copy(update={"tta": tta})
        return cls(task, model)

    def predict_image(self, image: Image, case_id: str = "case") -> Image:
        """The label map of ``image`` (channels stacked as the model expects), same geometry."""
        case = Case(case_id=case_id, images=())
        with torch.inference_mode():
            return self.task.predict(self.model, CaseData(case=case, image=image)).output

    def predict_files(self, files: list[Path], case_id: str) -> Image:
        images = [read_image(p) for p in files]
        if len(images) == 1:
            return self.predict_image(images[0], case_id)
        import numpy as np

        first = images[0]
        stacked = np.concatenate([im.array.astype(np.float32) for im in images], axis=0)
        return self.predict_image(
            Image(stacked, first.spacing, first.origin, first.direction, first.meta), case_id
        )

    def predict_path(self, input: Path, output: Path) -> list[Path]:
        """Predict every case under ``input``; write ``output/<case><ext>`` (a file when ``output``
        has an image suffix and ``input`` is one case). Existing outputs are never overwritten
        silently: they are replaced atomically only by a completed prediction."""
        groups = group_inputs(input, self.task.plan.in_channels)
        single = len(groups) == 1 and split_suffix(output)[1] != ""
        written = []
        for case_id, files in groups.items():
            labels = self.predict_files(files, case_id)
            target = output if single else output / f"{case_id}{_output_suffix(files[0])}"
            written.append(write_image(labels, target))
        return written


def _output_suffix(source: Path) -> str:
    """Label maps keep the input's format; DICOM and lossy JPEG inputs give NIfTI / PNG."""
    suffix = split_suffix(source)[1].lower()
    if source.is_dir() or detect_format(source) == "dicom":
        return ".nii.gz"
    if suffix in (".jpg", ".jpeg", ".gif", ".bmp"):
        return ".png"
    return suffix or ".nii.gz"
