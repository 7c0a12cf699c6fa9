"""Many subjects to one fixed image (the run's atlas unless another is given), shared by
``medsight predict --run`` (PyTorch) and ``--model`` (ONNX Runtime): ``OUT/<subject>/`` holds what
``medsight register`` writes for one pair (see :mod:`medsight.tasks.register.pairwise`). A ``labels/``
folder beside the moving images (same file names) is warped too. Reruns skip finished subjects."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medsight.errors import DataError
from medsight.io.batch import ShardLike, resolve_shard

log = logging.getLogger(__name__)
Transformer = Callable[[Any, Any], Any]  # (fixed Side, moving Side) -> SimpleITK transform


def moving_inputs(input: Path) -> dict[str, tuple[Path, Path | None]]:
    """subject id -> (image, labels or None) of every image under ``input`` (a file or a folder)."""
    from medsight.io.readers import is_image_file, split_suffix

    if input.is_file():
        return {split_suffix(input)[0]: (input, None)}
    if not input.is_dir():
        raise DataError(f"--input: {input} not found")
    labels_dir = input / "labels"
    labels = (
        {split_suffix(p)[0]: p for p in labels_dir.glob("*") if is_image_file(p)}
        if labels_dir.is_dir()
        else {}
    )
    found = {}
    for p in sorted(input.rglob("*")):
        if is_image_file(p) and labels_dir not in p.parents:
            stem = split_suffix(p)[0]
            found[stem] = (p, labels.get(stem))
    if not found:
        raise DataError(f"--input: {input}: no images found")
    return found


def register_path(
    input: Path,
    output: Path,
    fixed: Path,
    fixed_labels: Path | None,
    transformer: Callable[[], Transformer],
    *,
    method: str = "learned",
    overwrite: bool = False,
    shard: ShardLike = None,
) -> list[Path]:
    """Register every moving image under ``input`` to ``fixed``; ``OUT/<subject>/`` per subject."""
    import time

    from medsight.tasks.register.images import check_pair, load_side
    from medsight.tasks.register.pairwise import apply_transform, write_pair

    inputs = moving_inputs(input)
    fixed_side = load_side(fixed, "fixed", fixed_labels)
    run_transform: Transformer | None = None
    written: list[Path] = []
    for subject in resolve_shard(shard).select(inputs):
        folder = output / subject
        if (folder / "metrics.json").is_file() and not overwrite:
            written += sorted(p for p in folder.iterdir() if p.is_file())
            continue
        image, labels = inputs[subject]
        moving = load_side(image, "moving", labels)
        overlap = check_pair(fixed_side, moving)
        run_transform = run_transform or transformer()
        t0 = time.perf_counter()
        transform = run_transform(fixed_side, moving)
        seconds = time.perf_counter() - t0
        result = apply_transform(transform, fixed_side, moving, method)
        result.metrics.update({"seconds": round(seconds, 3), **overlap})
        written += write_pair(result, fixed_side, moving, folder, overwrite=overwrite)
        log.info("%s: registered in %.1f s", subject, seconds)
    return written
