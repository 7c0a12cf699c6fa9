"""The synthesis family (registered as ``synthesize``): see :mod:`medsight.tasks.synthesize.family`;
new pictures from a run (:func:`generate`, ``medsight generate``) and labelled samples for augmentation
(:func:`labelled_samples`)."""

from medsight.tasks.synthesize.family import SynthesizeFamily
from medsight.tasks.synthesize.sampling import generate, labelled_samples

API = ("generate",)  # medsight.generate(...)
__all__ = ["API", "SynthesizeFamily", "generate", "labelled_samples"]
