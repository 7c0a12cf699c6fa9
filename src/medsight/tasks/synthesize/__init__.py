"""The synthesis family (registered as ``synthesize``): see :mod:`medsight.tasks.synthesize.family`;
new pictures from a run (:func:`generate`, ``medsight generate``) and labelled samples for augmentation
(:func:`labelled_samples`)."""

from __future__ import annotations

from typing import Any

from medsight.tasks.synthesize.family import SynthesizeFamily


def generate(*args: Any, **kwargs: Any) -> Any:
    """:func:`medsight.tasks.synthesize.sampling.generate`, imported on first use (it needs torch)."""
    from medsight.tasks.synthesize.sampling import generate as generate_samples

    return generate_samples(*args, **kwargs)


def labelled_samples(*args: Any, **kwargs: Any) -> Any:
    """:func:`medsight.tasks.synthesize.sampling.labelled_samples`, imported on first use."""
    from medsight.tasks.synthesize.sampling import labelled_samples as make

    return make(*args, **kwargs)


API = ("generate",)  # medsight.generate(...)
__all__ = ["API", "SynthesizeFamily", "generate", "labelled_samples"]
