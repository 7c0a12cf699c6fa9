"""Adversarial robustness, task-agnostic: attacks, defences and detectors.

Every attack works in the *unit space*: each input channel's intensities scaled to [0, 1] over its valid
range (0..255 for 8-bit pictures, the plan's clip window for CT, the image's own range for MR), so an
epsilon of 2/255 means two grey levels of an 8-bit image. :class:`InputSpace` maps between that space
and the network's normalised inputs, differentiably, so the normalisation is attacked through.
"""

from medsight.intensity_units import parse_eps
from medsight.robustness.space import InputSpace

__all__ = ["InputSpace", "parse_eps"]
