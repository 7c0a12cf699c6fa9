"""medsight: deep learning for medical image analysis.

The public API is re-exported lazily so ``import medsight`` stays fast::

    from medsight import read_image, load_dataset, fingerprint_dataset, plan_dataset, train
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Image": "medsight.io",
    "read_image": "medsight.io",
    "write_image": "medsight.io",
    "load_dataset": "medsight.data",
    "DatasetSpec": "medsight.data",
    "Case": "medsight.data",
    "validate_dataset": "medsight.data",
    "fingerprint_dataset": "medsight.data",
    "make_phantom_dataset": "medsight.data",
    "convert_to_msd": "medsight.data",
    "PlanBase": "medsight.planning",
    "plan_dataset": "medsight.planning",
    "RunConfig": "medsight.config",
    "train": "medsight.api",
    "predict": "medsight.api",
    "evaluate": "medsight.api",
    "export": "medsight.api",
    "explain": "medsight.api",
    "MedsightError": "medsight.errors",
    "DataError": "medsight.errors",
    "ConfigError": "medsight.errors",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if not name.startswith("_"):
        found = _family_api(name)
        if found is not None:
            return found
    raise AttributeError(f"module 'medsight' has no attribute {name!r}")


def _family_api(name: str) -> Any:
    """A function a task family's package lists in its ``API`` tuple (e.g. a family's one-call verb),
    found by importing the families only when a name is not one of the exports above nor a submodule
    (``from medsight import api`` asks for ``api`` here before it imports the submodule)."""
    import importlib.util

    from medsight.tasks import FAMILIES

    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return None

    for module in FAMILIES:
        package = importlib.import_module(module)
        if name in getattr(package, "API", ()):
            return getattr(package, name)
    return None


__all__ = sorted(_EXPORTS) + ["__version__"]
