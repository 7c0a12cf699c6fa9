"""The register task family (registered as ``register``): see :mod:`medsight.tasks.register.family`.

``register`` (the Python API of ``medsight register``, re-exported as ``medsight.register``) registers
one pair with any method: ``affine``, ``bspline``, ``demons`` (SimpleITK) or ``learned`` (a run).
"""

from medsight.tasks.register.family import RegisterFamily
from medsight.tasks.register.pairwise import register

API = ("register",)  # medsight.register (see medsight.__getattr__)
__all__ = ["API", "RegisterFamily", "register"]
