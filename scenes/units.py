"""Physical quantities in scene files: plain numbers in SI, or strings with a unit.

A scene author may write ``0.9`` (metres), ``"90 cm"`` or ``"35 deg"``; inside the
program every value is SI (metres, radians, kilograms, seconds, metres per second).
A value with a unit of the wrong dimension (``"90 deg"`` for a length) is refused with
a message that names the expected dimension and the units it accepts.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Final

from pydantic import BeforeValidator

# dimension -> unit -> factor to SI
_UNITS: Final[dict[str, dict[str, float]]] = {
    "length": {"m": 1.0, "cm": 0.01, "mm": 0.001},
    "angle": {"rad": 1.0, "deg": math.pi / 180.0},
    "mass": {"kg": 1.0, "g": 0.001, "t": 1000.0},
    "speed": {"m/s": 1.0, "cm/s": 0.01, "mm/s": 0.001},
    "torque": {"N*m": 1.0, "Nm": 1.0, "N·m": 1.0},
    "frequency": {"Hz": 1.0, "kHz": 1000.0},
    "duration": {"s": 1.0, "ms": 0.001, "min": 60.0},
}
_SI_NAME: Final[dict[str, str]] = {
    "length": "m",
    "angle": "rad",
    "mass": "kg",
    "speed": "m/s",
    "torque": "N*m",
    "frequency": "Hz",
    "duration": "s",
}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z/*·]+)\s*$")


def dimension_of(unit: str) -> str | None:
    """Return the dimension a unit measures (``"cm"`` -> ``"length"``), or None."""
    for dim, units in _UNITS.items():
        if unit in units:
            return dim
    return None


def to_si(value: object, dimension: str) -> float:
    """Convert a scene value to SI.

    ``value`` is a number (already SI) or a string ``"<number> <unit>"``. Raises
    ValueError with a human-readable reason otherwise (pydantic turns it into a
    located error).
    """
    units = _UNITS[dimension]
    if isinstance(value, bool):
        raise ValueError(f"expected a {dimension}, got a boolean")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        if match is None:
            raise ValueError(
                f"expected a {dimension} like 1.5 or '1.5 {_SI_NAME[dimension]}', got {value!r}"
            )
        unit = match.group(2)
        if unit not in units:
            other = dimension_of(unit)
            what = f"a unit of {other}" if other else "not a known unit"
            raise ValueError(
                f"wrong unit {unit!r} ({what}); a {dimension} takes " + ", ".join(units)
            )
        number = float(match.group(1)) * units[unit]
    else:
        raise ValueError(f"expected a {dimension}, got {type(value).__name__}")
    if not math.isfinite(number):
        raise ValueError(f"expected a finite {dimension}, got {value!r}")
    return number


def _validator(dimension: str) -> BeforeValidator:
    return BeforeValidator(lambda v: to_si(v, dimension))


Length = Annotated[float, _validator("length")]
"""A length in metres (scene files may write ``'90 cm'``)."""
Angle = Annotated[float, _validator("angle")]
"""An angle in radians (scene files may write ``'90 deg'``)."""
Mass = Annotated[float, _validator("mass")]
"""A mass in kilograms."""
Speed = Annotated[float, _validator("speed")]
"""A speed in metres per second."""
Torque = Annotated[float, _validator("torque")]
"""A torque in newton-metres."""
Frequency = Annotated[float, _validator("frequency")]
"""A frequency in hertz."""
Duration = Annotated[float, _validator("duration")]
"""A duration in seconds."""
