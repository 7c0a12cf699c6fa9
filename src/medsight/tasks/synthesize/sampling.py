"""New pictures from a synthesis run: ``medsight generate`` and the labelled samples that augment a
classifier (``medsight train classify DATA --set data.synthetic=RUN``).

Repeatable: every latent is drawn at once from one ``torch.Generator`` seeded by ``seed``, so the same
seed gives the same pictures whatever the batch size. Files: ``DIR/<class>_<index>.png`` (the class
name's letters and digits; 8-bit PNG for 1 or 3 channels in 2D, else NIfTI ``.nii.gz``, float32 in
[0, 1]) and ``DIR/samples.csv`` (``file, class, index, seed``).

Labelled samples: a class-conditional GAN generates each class it is asked for; a VAE (unconditional)
decodes a posterior sample ``z ~ q(z | x)`` of a random training picture ``x`` of the class (a picture
near a real one of that class keeps its label). Samples come back as :class:`~medsight.data.spec.Case` s
in the training data's own intensity units (the plan's normalisation undone).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import torch

from medsight.data.spec import Case
from medsight.errors import ConfigError
from medsight.runs import Run, open_run

GEN_BATCH = 256


def class_labels(run: Run, n: int, class_name: str | None) -> torch.Tensor | None:
    """The class index of each of ``n`` samples: ``class_name``'s, or every class in turn; None for an
    unconditional model (``class_name`` then is an error)."""
    plan = run.plan
    if n < 1:
        raise ConfigError(f"--n: expected a number of samples >= 1, got {n}")
    if not plan.conditional:
        if class_name is not None:
            raise ConfigError(
                f"--class: plan.model={plan.model} is not class-conditional; train plan.model=cgan to "
                "generate a chosen class"
            )
        return None
    if class_name is None:
        return torch.arange(n) % len(plan.class_names)
    if class_name not in plan.class_names:
        raise ConfigError(
            f"--class: {class_name!r} is not a class of {plan.dataset}; classes: "
            f"{', '.join(map(repr, plan.class_names))}"
        )
    return torch.full((n,), plan.class_names.index(class_name), dtype=torch.long)


@torch.inference_mode()
def sample(model: torch.nn.Module, run: Run, n: int, labels: torch.Tensor | None, seed: int) -> np.ndarray:
    """``n`` generated pictures ``(n, C, *input_size)`` in [0, 1] (a VAE: decoded prior samples)."""
    plan = run.plan
    if plan.kind == "paired":
        raise ConfigError(
            f"plan.model={plan.model} translates images: run `medsight predict --run {run.path} --input "
            f"{plan.source.upper() if plan.source else 'SOURCE'}_DIR --output DIR` instead"
        )
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    if plan.model == "vae":
        z = torch.randn((n, model.net.latent_size), generator=gen)
        decode = model.net.decode_forward
    else:
        z = model.latent(n, plan.dim, labels, gen)
        decode = model.generator
    out = [decode(z[i : i + GEN_BATCH].to(device)).float().cpu() for i in range(0, n, GEN_BATCH)]
    return torch.cat(out).clamp(0, 1).numpy()


@torch.inference_mode()
def posterior_samples(model: torch.nn.Module, x: torch.Tensor, seed: int) -> np.ndarray:
    """A VAE's decoded posterior samples ``z ~ q(z | x)`` of the pictures ``x``."""
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(x), GEN_BATCH):
        mu, logvar = model.net.encode_forward(x[i : i + GEN_BATCH].to(device))
        eps = torch.randn(mu.shape, generator=gen).to(mu)
        out.append(model.net.decode_forward(mu + eps * torch.exp(0.5 * logvar)).float().cpu())
    return torch.cat(out).clamp(0, 1).numpy()


def labelled_samples(run_dir: str | Path, counts: dict[str, int], seed: int = 0) -> list[Case]:
    """``counts[class]`` generated pictures of each class, as labelled cases in the data's units.

    Raises:
        ConfigError: a model that cannot make labelled pictures (pix2pix, an unconditional GAN), or a
            class the synthesis run was not trained on.
    """
    from medsight.tasks.synthesize.outputs import to_raw
    from medsight.tasks.synthesize.pipeline import load_model, load_run_data, split_cases, stack

    run = open_run(run_dir)
    plan = run.plan
    if plan.model not in ("cgan", "vae") or not plan.class_names:
        raise ConfigError(
            f"data.synthetic: {run.path} is a plan.model={plan.model} run; labelled samples come from a "
            "class-conditional GAN (cgan) or a VAE trained on labelled pictures"
        )
    unknown = sorted(set(counts) - set(plan.class_names))
    if unknown:
        raise ConfigError(f"data.synthetic: classes {unknown} are not among the run's {plan.class_names}")
    model = load_model(run, "cpu")
    cases: list[Case] = []
    train = stack(split_cases(run, load_run_data(run))[0], plan) if plan.model == "vae" else None
    for k, name in enumerate(plan.class_names):
        n = int(counts.get(name, 0))
        if n <= 0:
            continue
        if train is None:
            pics = sample(model, run, n, torch.full((n,), k, dtype=torch.long), seed + k)
        else:
            pool = train["image"][train["label"] == k]
            if not len(pool):
                raise ConfigError(f"data.synthetic: the VAE run has no training picture of class {name!r}")
            picks = torch.randint(len(pool), (n,), generator=torch.Generator().manual_seed(seed + k))
            pics = posterior_samples(model, pool[picks], seed + k)
        raw = to_raw(pics, plan.normalization)
        cases += [Case(f"synthetic_{name}_{i:05d}", classes=k, array=raw[i]) for i in range(n)]
    return cases


def generate(
    run_dir: str | Path, n: int, output: str | Path, *, class_name: str | None = None, seed: int = 0
) -> list[Path]:
    """Write ``n`` generated pictures and ``samples.csv`` into the new folder ``output``; return the files.

    Raises:
        ConfigError: ``n < 1``, an unknown class, ``--class`` for an unconditional model, pix2pix.
        DataError: ``output`` exists and is not empty (nothing is overwritten).
    """
    from medsight.data.phantoms import ensure_empty_dest
    from medsight.tasks.synthesize.pipeline import load_model
    from medsight.utils import atomic_folder

    run = open_run(run_dir)
    labels = class_labels(run, n, class_name)
    pictures = sample(load_model(run), run, n, labels, seed)
    dest = Path(output)
    ensure_empty_dest(dest)
    names = run.plan.class_names if run.plan.conditional else []
    rows, files = [], []
    with atomic_folder(dest) as tmp:
        for i, pic in enumerate(pictures):
            cls = names[int(labels[i])] if labels is not None else ""
            name = f"{_slug(cls) or 'sample'}_{i:05d}{_suffix(pic)}"
            _write_picture(pic, tmp / name)
            rows.append([name, cls, i, seed])
            files.append(dest / name)
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["file", "class", "index", "seed"])
        writer.writerows(rows)
        (tmp / "samples.csv").write_text(buf.getvalue(), encoding="utf-8")
    return [dest / "samples.csv", *files]


def _slug(name: str) -> str:
    """A class name as a file-name part: ``"normal, benign"`` -> ``"normal-benign"``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def _suffix(pic: np.ndarray) -> str:
    return ".png" if pic.ndim == 3 and pic.shape[0] in (1, 3) else ".nii.gz"


def _write_picture(pic: np.ndarray, path: Path) -> None:
    from medsight.io import Image, write_image

    if path.suffix == ".png":
        from PIL import Image as PILImage

        arr = np.round(np.clip(pic, 0, 1) * 255).astype(np.uint8)
        PILImage.fromarray(arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)).save(path)
    else:
        write_image(Image.from_array(pic.astype(np.float32)), path)
