"""The classical methods give one answer whatever ITK's global thread count (a CLI and an API prediction
in one process once disagreed by 0.07 mm because a filter read the global count)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medsight.task_registry import get_task
from medsight.tasks.register.classical import affine


def test_the_affine_result_does_not_depend_on_the_global_thread_count(tmp_path: Path) -> None:
    example = get_task("register").example(tmp_path)
    fixed = sitk.ReadImage(str(tmp_path / "images" / "case00.nii.gz"), sitk.sitkFloat32)
    moving = sitk.ReadImage(str(example.inputs / "moving01.nii.gz"), sitk.sitkFloat32)
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    results = []
    try:
        for threads in (1, 2, 4):
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
            results.append(np.asarray(affine(fixed, moving).GetParameters()))
            assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads  # restored after the call
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    assert all(np.array_equal(results[0], r) for r in results[1:]), results
