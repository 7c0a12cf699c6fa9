"""What segmentation ``predict`` writes, for every backend: one label map per case in the input's
geometry and format, resumable and shardable (see :mod:`medsight.io.batch`).

Torch-free: the PyTorch predictor (:mod:`medsight.tasks.segment.predictor`) and the ONNX runtime
(:mod:`medsight.tasks.segment.runtime`) call :func:`segment_path` with their own model, so their
outputs have the same names, formats and layout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from medsight.data.inputs import group_inputs, output_suffix
from medsight.io import Image, write_image
from medsight.io.batch import ShardLike, resolve_shard
from medsight.io.readers import split_suffix

log = logging.getLogger(__name__)


def segment_path(
    input: Path,
    output: Path,
    in_channels: int,
    predict_files: Callable[[list[Path], str], Image],
    *,
    overwrite: bool = False,
    shard: ShardLike = None,
) -> list[Path]:
    """Predict every case under ``input`` with ``predict_files(files, case_id)``; write
    ``output/<case><ext>`` (a file when ``output`` has an image suffix and ``input`` is one case)
    and return this shard's output paths.

    Resumable: a case whose output exists is skipped (``overwrite=True`` predicts it again and
    replaces the file); each output is written atomically, so a killed run leaves only complete
    files. With ``shard`` (``"I/N"``, or torchrun's RANK / WORLD_SIZE) this process predicts every
    N-th case by sorted case id."""
    groups = group_inputs(input, in_channels)
    single = len(groups) == 1 and split_suffix(output)[1] != ""
    part = resolve_shard(shard)
    outputs = []
    skipped = 0
    for case_id in part.select(groups):
        files = groups[case_id]
        target = output if single else output / f"{case_id}{output_suffix(files[0])}"
        outputs.append(target)
        if target.exists() and not overwrite:
            skipped += 1
            continue
        write_image(predict_files(files, case_id), target)
    log.info("shard %s: %d of %d cases, %d already done", part, len(outputs), len(groups), skipped)
    return outputs
