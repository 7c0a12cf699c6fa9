"""Intensity budgets written by people: ``0.03``, ``"2/255"`` (a fraction of the intensity range) or
``"10HU"`` (Hounsfield units, for CT models).

Below the config layer (it imports only :mod:`medsight.errors`), so that ``config.py`` can validate an
adversarial-training budget without importing the attacks; ``medsight.robustness.space.InputSpace``
turns a parsed budget into unit-space units.

Example::

    parse_eps("2/255")   # (0.00784..., False)
    parse_eps("10HU")    # (10.0, True)
"""

from __future__ import annotations

import re

from medsight.errors import ConfigError

_EPS_RE = re.compile(r"^\s*(?P<num>[0-9.eE+-]+)\s*(?:/\s*(?P<den>[0-9.eE+-]+))?\s*(?P<unit>hu)?\s*$", re.I)


def parse_eps(value: str | float) -> tuple[float, bool]:
    """An intensity budget as (amount, in Hounsfield units).

    Args:
        value: a number, a fraction such as ``"2/255"``, or Hounsfield units such as ``"10HU"``.

    Returns:
        ``"2/255"`` -> (0.00784, False); ``"10HU"`` -> (10.0, True); ``0.03`` -> (0.03, False).

    Raises:
        ConfigError: the text is not one of those forms, or the amount is negative or not a number.
    """
    if isinstance(value, int | float):
        amount, hu = float(value), False
    else:
        match = _EPS_RE.match(value)
        if match is None:
            raise ConfigError(
                f"eps: expected a number, a fraction like 2/255 or Hounsfield units like 10HU, got {value!r}"
            )
        try:
            amount = float(match["num"]) / (float(match["den"]) if match["den"] else 1.0)
        except (ValueError, ZeroDivisionError) as exc:
            raise ConfigError(f"eps: cannot read {value!r} as a number ({exc})") from exc
        hu = match["unit"] is not None
    if not amount >= 0:
        raise ConfigError(f"eps: expected a value >= 0, got {value!r}")
    return amount, hu
