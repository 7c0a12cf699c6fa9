"""The enhance task family (registered as ``enhance``): see :mod:`medsight.tasks.enhance.family`.

``degrade`` (the Python API of ``medsight degrade``) makes degraded test data, seeded and logged.
"""

from medsight.tasks.enhance.degrade import degrade
from medsight.tasks.enhance.family import EnhanceFamily

__all__ = ["EnhanceFamily", "degrade"]
