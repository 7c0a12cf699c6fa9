"""Load pretrained weights from a local ``.pt`` / ``.pth`` file into a model, key by key.

Nothing is downloaded. A file may hold a bare state dict, or one wrapped as
``{"state_dict": ...}`` or ``{"model": ...}`` (as training checkpoints are), with or without the
``"module."`` prefix ``DataParallel`` adds. Tensors whose key and shape both match are loaded;
the rest are reported, and are an error when ``strict`` or when nothing matches at all.

Example:
    >>> report = load_pretrained(model, "weights/resnet18_medmnist.pt")  # doctest: +SKIP
    >>> report["mismatched"]  # e.g. the head, when the class count differs  # doctest: +SKIP
    ['fc.weight', 'fc.bias']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medsight.errors import ConfigError

WRAPPER_KEYS = ("state_dict", "model")
PREFIX = "module."
SHOWN = 5  # keys listed per category in an error message


def load_pretrained(model: nn.Module, path: str | Path, *, strict: bool = False) -> dict[str, Any]:
    """Copy the matching tensors of the state dict in ``path`` into ``model``.

    Args:
        model: the network to fill (modified in place).
        path: a local file written by ``torch.save`` holding a state dict (possibly wrapped).
        strict: every key of the model and of the file must match, with equal shapes.

    Returns:
        ``{"loaded": n, "missing": [...], "unexpected": [...], "mismatched": [...]}``: the number
        of tensors loaded; model keys absent from the file; file keys absent from the model; keys
        in both whose shapes differ (skipped, e.g. a classifier head with another class count).

    Raises:
        ConfigError: the file is missing or unreadable, holds no state dict, no tensor matches,
            or ``strict`` and anything is missing, unexpected or mismatched.
    """
    path = Path(path)
    state = _read_state_dict(path)
    own = model.state_dict()
    if all(k.startswith(PREFIX) for k in state) and not all(k.startswith(PREFIX) for k in own):
        state = {k.removeprefix(PREFIX): v for k, v in state.items()}  # saved from DataParallel
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    common = [k for k in own if k in state]
    mismatched = [k for k in common if tuple(state[k].shape) != tuple(own[k].shape)]
    skipped = set(mismatched)
    matched = {k: state[k] for k in common if k not in skipped}
    report = {"loaded": len(matched), "missing": missing, "unexpected": unexpected, "mismatched": mismatched}
    if not matched:
        raise ConfigError(f"{path}: no tensor matches the model ({_describe(report, state, own)})")
    if strict and (missing or unexpected or mismatched):
        raise ConfigError(f"{path}: strict loading failed ({_describe(report, state, own)})")
    model.load_state_dict(matched, strict=False)
    return report


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"{path}: pretrained weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise ConfigError(f"{path}: cannot read pretrained weights ({type(exc).__name__}: {exc})") from exc
    while isinstance(obj, Mapping) and any(isinstance(obj.get(k), Mapping) for k in WRAPPER_KEYS):
        obj = next(obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping))
    if not isinstance(obj, Mapping) or not obj:
        raise ConfigError(
            f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ConfigError(f"{path}: expected a state dict of tensors, got non-tensor entries {bad[:SHOWN]}")
    return dict(obj)


def _describe(
    report: dict[str, Any], state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]
) -> str:
    parts = [f"loaded {report['loaded']}"]
    for what in ("missing", "unexpected"):
        keys = report[what]
        if keys:
            parts.append(f"{len(keys)} {what}: {_few(keys)}")
    keys = report["mismatched"]
    if keys:
        shapes = [f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in keys[:SHOWN]]
        more = f", ... {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
        parts.append(f"{len(keys)} shape-mismatched: {', '.join(shapes)}{more}")
    return "; ".join(parts)


def _few(keys: list[str]) -> str:
    more = f", ... {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more
