"""Gantry cranes as articulated PyBullet bodies, built from a scene's crane description.

A crane is a fixed base (the two rails, running along X at the scene's ``rail_y``)
with three prismatic joints in series: ``bridge`` (along X), ``trolley`` (along Y, on
the bridge) and ``hoist`` (down, from the trolley to the hook); the load hangs from the
hook on a fixed joint. Joint values are hall coordinates except the hoist, whose
joint value is the cable length: hook height = rail height - cable length. The URDF
carries the travel limits and speeds, so PyBullet enforces them in dynamics as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from scenes.model import Crane

AXES: Final[tuple[str, ...]] = ("bridge", "trolley", "hoist")
LINKS: Final[tuple[str, ...]] = ("bridge", "trolley", "hook", "load")

_RAIL_SECTION_M: Final = 0.4
_BRIDGE_SECTION_M: Final = 0.6
_TROLLEY_SIZE_M: Final = (1.4, 1.2, 0.5)
_HOOK_SIZE_M: Final = (0.3, 0.3, 0.4)
# masses of the moving parts, typical of a 10 t overhead crane
_BRIDGE_MASS_KG: Final = 6000.0
_TROLLEY_MASS_KG: Final = 800.0
_HOOK_MASS_KG: Final = 60.0
_BRIDGE_RGBA: Final = "0.95 0.72 0.1 1"
# drive forces: enough to move each part at its rated speed
_BRIDGE_FORCE_N: Final = 20000.0
_TROLLEY_FORCE_N: Final = 5000.0
_HOIST_FORCE_N: Final = 40000.0


class CraneLimitError(ValueError):
    """A crane position outside that axis's travel."""


@dataclass(frozen=True)
class CraneGeometry:
    """Where a crane's parts sit, derived from its scene entry (m, hall frame)."""

    crane: Crane
    floor_length_m: float

    @property
    def span_m(self) -> float:
        """Distance between the two rails."""
        return abs(self.crane.rail_y[1] - self.crane.rail_y[0])

    @property
    def mid_y_m(self) -> float:
        """Y of the bridge's centre line."""
        return (self.crane.rail_y[0] + self.crane.rail_y[1]) / 2.0

    def hoist_joint_from_height(self, hook_height_m: float) -> float:
        """Cable length (joint value) that puts the hook at ``hook_height_m``."""
        return self.crane.rail_height - hook_height_m

    def height_from_hoist_joint(self, cable_m: float) -> float:
        """Hook height above the floor for a cable length."""
        return self.crane.rail_height - cable_m

    def joint_limits(self) -> dict[str, tuple[float, float]]:
        """Joint limits per axis, in joint coordinates."""
        lo, hi = self.crane.hoist.travel
        return {
            "bridge": self.crane.bridge.travel,
            "trolley": self.crane.trolley.travel,
            "hoist": (self.hoist_joint_from_height(hi), self.hoist_joint_from_height(lo)),
        }

    def check(self, axis: str, value_m: float) -> None:
        """Raise :class:`CraneLimitError` if ``value_m`` (hall coordinate) is outside travel."""
        low, high = getattr(self.crane, axis).travel
        if not low <= value_m <= high:
            raise CraneLimitError(
                f"crane:{self.crane.id}/{axis}: {value_m:g} m is outside travel {low:g}..{high:g} m"
            )


def _box_inertia(mass: float, x: float, y: float, z: float) -> str:
    ixx = mass * (y * y + z * z) / 12.0
    iyy = mass * (x * x + z * z) / 12.0
    izz = mass * (x * x + y * y) / 12.0
    return (
        f'<inertial><mass value="{mass:.6g}"/>'
        f'<inertia ixx="{ixx:.6g}" iyy="{iyy:.6g}" izz="{izz:.6g}" ixy="0" ixz="0" iyz="0"/>'
        "</inertial>"
    )


def _box(
    name: str, x: float, y: float, z: float, cx: float, cy: float, cz: float, rgba: str
) -> str:
    geometry = f'<geometry><box size="{x:.6g} {y:.6g} {z:.6g}"/></geometry>'
    origin = f'<origin xyz="{cx:.6g} {cy:.6g} {cz:.6g}"/>'
    return (
        f'<visual name="{name}">{origin}{geometry}'
        f'<material name="{name}_mat"><color rgba="{rgba}"/></material></visual>'
        f"<collision>{origin}{geometry}</collision>"
    )


def crane_urdf(geometry: CraneGeometry) -> str:
    """The URDF text of one crane (deterministic)."""
    crane = geometry.crane
    limits = geometry.joint_limits()
    length = geometry.floor_length_m
    rail_z = crane.rail_height - _RAIL_SECTION_M / 2.0
    rails = "".join(
        _box(
            "rail",
            length,
            _RAIL_SECTION_M,
            _RAIL_SECTION_M,
            length / 2.0,
            y,
            rail_z,
            "0.35 0.38 0.42 1",
        )
        for y in crane.rail_y
    )
    bridge_z = _RAIL_SECTION_M / 2.0 + _BRIDGE_SECTION_M / 2.0
    span = geometry.span_m + _RAIL_SECTION_M
    trolley_z = _BRIDGE_SECTION_M / 2.0 + _TROLLEY_SIZE_M[2] / 2.0
    hook_z = -_HOOK_SIZE_M[2] / 2.0
    parts = [
        f'<robot name="crane_{crane.id}">',
        f'<link name="rails">{rails}{_box_inertia(0.0, 1.0, 1.0, 1.0)}</link>',  # fixed: mass 0
        (
            '<link name="bridge">'
            f"{_box('bridge', _BRIDGE_SECTION_M, span, _BRIDGE_SECTION_M, 0, 0, 0, _BRIDGE_RGBA)}"
            f"{_box_inertia(_BRIDGE_MASS_KG, _BRIDGE_SECTION_M, span, _BRIDGE_SECTION_M)}</link>"
        ),
        (
            f'<link name="trolley">{_box("trolley", *_TROLLEY_SIZE_M, 0, 0, 0, "0.9 0.55 0.08 1")}'
            f"{_box_inertia(_TROLLEY_MASS_KG, *_TROLLEY_SIZE_M)}</link>"
        ),
        (
            f'<link name="hook">{_box("hook", *_HOOK_SIZE_M, 0, 0, hook_z, "0.2 0.2 0.22 1")}'
            f"{_box_inertia(_HOOK_MASS_KG, *_HOOK_SIZE_M)}</link>"
        ),
        _joint(
            "bridge",
            "rails",
            "bridge",
            (0.0, geometry.mid_y_m, rail_z + bridge_z),
            "1 0 0",
            limits["bridge"],
            _BRIDGE_FORCE_N,
            crane.bridge.speed,
        ),
        _joint(
            "trolley",
            "bridge",
            "trolley",
            (0.0, -geometry.mid_y_m, trolley_z),
            "0 1 0",
            limits["trolley"],
            _TROLLEY_FORCE_N,
            crane.trolley.speed,
        ),
        _joint(
            "hoist",
            "trolley",
            "hook",
            (0.0, 0.0, crane.rail_height - rail_z - bridge_z - trolley_z),
            "0 0 -1",
            limits["hoist"],
            _HOIST_FORCE_N,
            crane.hoist.speed,
        ),
    ]
    if crane.load is not None:
        lx, ly, lz = crane.load.size
        parts.append(
            f'<link name="load">{_box("load", lx, ly, lz, 0, 0, 0, "0.3 0.45 0.6 1")}'
            f"{_box_inertia(crane.load.mass, lx, ly, lz)}</link>"
        )
        parts.append(
            '<joint name="load_mount" type="fixed"><parent link="hook"/><child link="load"/>'
            f'<origin xyz="0 0 {-_HOOK_SIZE_M[2] - lz / 2.0:.6g}"/></joint>'
        )
    parts.append("</robot>")
    return "\n".join(parts) + "\n"


def _joint(
    name: str,
    parent: str,
    child: str,
    xyz: tuple[float, float, float],
    axis: str,
    limits: tuple[float, float],
    effort: float,
    velocity: float,
) -> str:
    return (
        f'<joint name="{name}" type="prismatic"><parent link="{parent}"/><child link="{child}"/>'
        f'<origin xyz="{xyz[0]:.6g} {xyz[1]:.6g} {xyz[2]:.6g}"/><axis xyz="{axis}"/>'
        f'<limit lower="{limits[0]:.6g}" upper="{limits[1]:.6g}" effort="{effort:.6g}" '
        f'velocity="{velocity:.6g}"/><dynamics damping="0" friction="0"/></joint>'
    )
