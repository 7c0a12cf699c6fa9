"""A tiny synthetic box dataset (COCO JSON + PNGs) for the demo, smoke checks and the contract tests:
bright rectangles ("square" and "bar") on a noisy background, some images without any (negatives)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIZE = 64


def make_box_dataset(folder: Path, n_train: int = 32, n_inputs: int = 3, seed: int = 0) -> tuple[Path, Path]:
    """Write ``folder/annotations.json`` + ``folder/images/*.png`` and ``folder/inputs/*.png``; return
    the dataset folder and the inputs folder."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "inputs").mkdir()
    images, annotations = [], []
    for i in range(n_train + n_inputs):
        pixels, boxes = _picture(rng, negative=i % 8 == 7)
        name = f"img{i:03d}.png"
        target = folder / ("images" if i < n_train else "inputs") / name
        Image.fromarray(pixels).save(target)
        if i >= n_train:
            continue
        images.append(
            {
                "id": i + 1,
                "file_name": name,
                "width": SIZE,
                "height": SIZE,
                "metadata": {"patientid": f"p{i // 2}"},
            }
        )
        for x, y, w, h, cat in boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": 1, "name": "square"}, {"id": 2, "name": "bar"}]
    content = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "annotations.json").write_text(json.dumps(content), encoding="utf-8")
    return folder, folder / "inputs"


def _picture(
    rng: np.random.Generator, negative: bool
) -> tuple[np.ndarray, list[tuple[int, int, int, int, int]]]:
    img = rng.normal(40, 8, (SIZE, SIZE))
    boxes = []
    if not negative:
        s = int(rng.integers(14, 22))
        x, y = (int(v) for v in rng.integers(2, SIZE // 2 - s // 2, size=2))
        img[y : y + s, x : x + s] += 150
        boxes.append((x, y, s, s, 1))
        w, h = int(rng.integers(6, 9)), int(rng.integers(20, 28))
        bx, by = int(rng.integers(SIZE // 2 + 2, SIZE - w - 2)), int(rng.integers(2, SIZE - h - 2))
        img[by : by + h, bx : bx + w] += 110
        boxes.append((bx, by, w, h, 2))
    return np.clip(img, 0, 255).astype(np.uint8), boxes
