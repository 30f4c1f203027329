"""Telemetry profiles: how each manufacturer's robots report joint positions on the wire.

A :class:`TelemetryProfile` gives the vendor joint names in wire order, the position unit, the
rate, the encoding, and the mapping from vendor joints onto the canonical skeleton of
:mod:`robots.canonical`. Profiles validate themselves on construction (no duplicate joints, only
canonical targets, no canonical joint claimed twice); :class:`robots.models.RobotModel`
additionally checks that its profile lists every movable joint exactly once.

``position_unit`` applies to rotational joints; prismatic joints (Orca's grippers) are always
reported in metres.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, get_args

from robots.canonical import CANONICAL_JOINT_SET, is_canonical

PositionUnit = Literal["rad", "deg"]
Encoding = Literal["packed_f32", "packed_deg_f64", "map"]

_UNITS: Final = frozenset(get_args(PositionUnit))
_ENCODINGS: Final = frozenset(get_args(Encoding))


@dataclass(frozen=True)
class TelemetryProfile:
    """One manufacturer's telemetry conventions for one robot model.

    ``joint_names`` are vendor joint names in wire order (every movable joint exactly once);
    ``to_canonical`` maps vendor joints onto canonical joints (joints without a counterpart, such
    as grippers or the spherical joints of an external model, are absent and keep their vendor
    name).
    """

    manufacturer: str
    joint_names: tuple[str, ...]
    position_unit: PositionUnit
    rate_hz: float
    encoding: Encoding
    to_canonical: Mapping[str, str] = field(hash=False)
    _from_canonical: Mapping[str, str] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        who = self.manufacturer
        seen = set(self.joint_names)
        duplicates = sorted(n for n, count in Counter(self.joint_names).items() if count > 1)
        if duplicates:
            raise ValueError(f"{who}: joints listed more than once: {duplicates}")
        if self.position_unit not in _UNITS:
            raise ValueError(f"{who}: position unit must be one of {sorted(_UNITS)}")
        if self.encoding not in _ENCODINGS:
            raise ValueError(f"{who}: encoding must be one of {sorted(_ENCODINGS)}")
        if not self.rate_hz > 0.0:
            raise ValueError(f"{who}: rate must be positive, got {self.rate_hz}")
        unknown = sorted(set(self.to_canonical) - seen)
        if unknown:
            raise ValueError(f"{who}: to_canonical maps joints not in joint_names: {unknown}")
        bad = sorted(set(self.to_canonical.values()) - CANONICAL_JOINT_SET)
        if bad:
            raise ValueError(f"{who}: not canonical joint names: {bad}")
        inverse: dict[str, str] = {}
        for vendor, canonical in self.to_canonical.items():
            if canonical in inverse:
                raise ValueError(
                    f"{who}: canonical joint {canonical!r} mapped twice "
                    f"({inverse[canonical]!r} and {vendor!r})"
                )
            inverse[canonical] = vendor
        object.__setattr__(self, "to_canonical", MappingProxyType(dict(self.to_canonical)))
        object.__setattr__(self, "_from_canonical", MappingProxyType(inverse))

    def canonical_name(self, vendor_joint: str) -> str:
        """Canonical name of a vendor joint, or the vendor name itself when it has none.

        Raises:
            KeyError: ``vendor_joint`` is not one of this profile's joints.
        """
        if vendor_joint not in self.to_canonical and vendor_joint not in self.joint_names:
            raise KeyError(f"{vendor_joint!r} is not a joint of this {self.manufacturer} profile")
        return self.to_canonical.get(vendor_joint, vendor_joint)

    def vendor_name(self, name: str) -> str:
        """Vendor name for a vendor or canonical joint name.

        Raises:
            KeyError: ``name`` is neither a vendor joint of this profile nor a canonical joint
                that one of them maps to.
        """
        if name in self.joint_names:
            return name
        vendor = self._from_canonical.get(name)
        if vendor is not None:
            return vendor
        what = "a canonical joint this robot lacks" if is_canonical(name) else "unknown"
        raise KeyError(
            f"{name!r} is neither a vendor joint of this {self.manufacturer} profile nor a "
            f"canonical joint mapped by it ({what}); vendor joints: {', '.join(self.joint_names)}"
        )

    @property
    def canonical_joint_names(self) -> tuple[str, ...]:
        """:meth:`canonical_name` of every joint, in wire order."""
        return tuple(self.to_canonical.get(n, n) for n in self.joint_names)
