"""Compact parametric description of a humanoid robot model, and vendor naming styles.

A :class:`ModelSpec` holds everything :mod:`robots.generate` needs to write a URDF: height,
total mass and its distribution over body segments, segment proportions (fractions of the
height), the degree-of-freedom layout (as canonical joint names), per-joint limits, colours and
the manufacturer's naming style. Everything is in SI units and radians.

Generic joint keys are the canonical joint names of :mod:`robots.canonical` plus
``left_gripper``/``right_gripper`` (a prismatic finger without a canonical counterpart) and
fixed-joint keys such as ``head_fixed``; generic link keys are ``pelvis`` or
``<side>_<part>``/``<part>`` (``left_thigh``, ``torso``). :func:`vendor_joint_name` and
:func:`vendor_link_name` turn them into the names a manufacturer uses in its URDF and telemetry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

NamingStyle = Literal["kestrel", "orca", "tessel"]
RGBA = tuple[float, float, float, float]

BASE_LINK: Final = "pelvis"
"""Name of the base link in every generated model (the pelvis, whatever the vendor style)."""

MODELS_DIR: Final = Path(__file__).resolve().parent
"""The built-in models folder: each generated model's package is ``MODELS_DIR/<name>/``."""

_SIDES: Final = ("left", "right")


def urdf_path(name: str) -> Path:
    """Path of the checked-in URDF of generated model ``name``."""
    return MODELS_DIR / name / f"{name}.urdf"


@dataclass(frozen=True)
class JointLimits:
    """Limits of one joint: position (rad or m), velocity (rad/s or m/s), effort (N·m or N)."""

    lower: float
    upper: float
    velocity: float
    effort: float

    def mirrored(self) -> JointLimits:
        """Limits of the same joint on the other body side for a roll or yaw axis."""
        return JointLimits(-self.upper, -self.lower, self.velocity, self.effort)


@dataclass(frozen=True)
class Proportions:
    """Segment dimensions as fractions of the robot's total height.

    Vertical chain from the soles up: ``ankle_height`` (sole to ankle joint), ``shank`` (ankle to
    knee), ``thigh`` (knee to hip pitch), ``hip_drop`` (hip pitch up to hip yaw, which sits at the
    bottom face of the pelvis), ``pelvis_height``, ``waist`` (spine yaw to spine pitch, only for
    models with ``spine_pitch``), torso (the remainder), ``neck`` and the head (``2*head_radius``).
    """

    ankle_height: float
    shank: float
    thigh: float
    hip_drop: float
    pelvis_height: float
    waist: float
    neck: float
    head_radius: float
    shoulder_drop: float
    upper_arm: float
    forearm: float
    hand: float
    foot_length: float
    foot_width: float
    foot_forward: float
    hip_width: float
    pelvis_width: float
    pelvis_depth: float
    shoulder_width: float
    torso_width: float
    torso_depth: float
    thigh_radius: float
    shank_radius: float
    upper_arm_radius: float
    forearm_radius: float
    joint_radius: float


DEFAULT_MASS_FRACTIONS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "pelvis": 0.12,
        "waist": 0.02,
        "torso": 0.28,
        "neck": 0.01,
        "head": 0.06,
        "thigh": 0.085,
        "shank": 0.045,
        "foot": 0.018,
        "upper_arm": 0.025,
        "forearm": 0.018,
        "hand": 0.008,
        "finger": 0.002,
        "joint": 0.01,
    }
)
"""Relative mass per link role; ``joint`` is any small intermediate link of a multi-DOF joint.
The generator normalises the fractions of the links a model actually has to its total mass."""


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """Parametric description of one robot model (see the module docstring); compared and hashed
    by identity."""

    name: str
    manufacturer: str
    style: NamingStyle
    height_m: float
    mass_kg: float
    proportions: Proportions
    dofs: tuple[str, ...]
    limits: Mapping[str, JointLimits]
    colors: Mapping[str, RGBA]
    wire_order: tuple[str, ...]
    rate_hz: float
    position_unit: Literal["rad", "deg"]
    encoding: Literal["packed_f32", "packed_deg_f64", "map"]
    mass_fractions: Mapping[str, float] = field(default_factory=lambda: DEFAULT_MASS_FRACTIONS)

    def __post_init__(self) -> None:
        if sorted(self.wire_order) != sorted(self.dofs):
            raise ValueError(f"{self.name}: wire order must list every DOF exactly once")
        if self.torso_length <= 0.0:
            raise ValueError(f"{self.name}: proportions leave no room for the torso")

    def has(self, dof: str) -> bool:
        """Whether the model has the generic joint ``dof``."""
        return dof in self.dofs

    def length(self, field: str) -> float:
        """A proportion scaled to metres (``spec.length("thigh")``)."""
        ratio = getattr(self.proportions, field)
        assert isinstance(ratio, float)
        return ratio * self.height_m

    @property
    def torso_length(self) -> float:
        """Spine pitch (or spine yaw) joint to neck base, in metres: whatever height is left."""
        p = self.proportions
        used = (
            p.ankle_height
            + p.shank
            + p.thigh
            + p.hip_drop
            + p.pelvis_height
            + (p.waist if self.has("spine_pitch") else 0.0)
            + p.neck
            + 2.0 * p.head_radius
        )
        return (1.0 - used) * self.height_m

    @property
    def base_height_m(self) -> float:
        """Height of the pelvis frame (pelvis box centre) above the soles at zero joints."""
        p = self.proportions
        return (
            p.ankle_height + p.shank + p.thigh + p.hip_drop + 0.5 * p.pelvis_height
        ) * self.height_m

    def segment_lengths(self) -> dict[str, float]:
        """Main segment lengths in metres (pelvis, thigh, shank, foot, torso, arm, hand, head)."""
        return {
            "pelvis": self.length("pelvis_height"),
            "thigh": self.length("thigh"),
            "shank": self.length("shank"),
            "foot": self.length("foot_length"),
            "torso": self.torso_length,
            "upper_arm": self.length("upper_arm"),
            "forearm": self.length("forearm"),
            "hand": self.length("hand"),
            "head": 2.0 * self.length("head_radius"),
        }

    def limits_for(self, dof: str) -> JointLimits:
        """Limits of a generic joint; right-side roll/yaw limits mirror the left side's."""
        side, part = split_side(dof)
        limits = self.limits[part]
        if side == "right" and (part.endswith("_roll") or part.endswith("_yaw")):
            return limits.mirrored()
        return limits

    def joint_name(self, key: str) -> str:
        """Vendor name of a generic joint key."""
        return vendor_joint_name(self.style, key)

    def link_name(self, key: str) -> str:
        """Vendor name of a generic link key."""
        return vendor_link_name(self.style, key)


def split_side(key: str) -> tuple[str | None, str]:
    """``"left_hip_yaw"`` -> ``("left", "hip_yaw")``; ``"spine_yaw"`` -> ``(None, "spine_yaw")``."""
    for side in _SIDES:
        if key.startswith(side + "_"):
            return side, key.removeprefix(side + "_")
    return None, key


_ORCA_WORDS: Final[Mapping[str, str]] = {
    "hip": "HIP",
    "knee": "KNEE",
    "ankle": "ANK",
    "spine": "WAIST",
    "neck": "NECK",
    "shoulder": "SHO",
    "elbow": "ELB",
    "wrist": "WRI",
    "gripper": "GRIP",
    "yaw": "Y",
    "roll": "R",
    "pitch": "P",
}


def vendor_joint_name(style: NamingStyle, key: str) -> str:
    """Vendor joint name for a generic joint key.

    ``kestrel``: ``l_hip_yaw_joint``, ``torso_yaw_joint``; ``orca``: ``L_HIP_Y``, ``WAIST_P``,
    ``L_GRIP``; ``tessel``: ``LeftHipYaw``, ``TorsoYaw``.
    """
    side, part = split_side(key)
    if style == "kestrel":
        part = part.replace("spine_", "torso_")
        prefix = "" if side is None else side[0] + "_"
        return f"{prefix}{part}_joint"
    if style == "orca":
        words = [_ORCA_WORDS.get(w, w.upper()) for w in part.split("_")]
        prefix = "" if side is None else side[0].upper() + "_"
        return prefix + "_".join(words)
    words = ["torso" if w == "spine" else w for w in part.split("_")]
    return ("" if side is None else side.capitalize()) + "".join(w.capitalize() for w in words)


def vendor_link_name(style: NamingStyle, key: str) -> str:
    """Vendor link name for a generic link key (the base link is always :data:`BASE_LINK`)."""
    if key == BASE_LINK:
        return BASE_LINK
    side, part = split_side(key)
    if style == "kestrel":
        prefix = "" if side is None else side[0] + "_"
        return f"{prefix}{part}_link"
    if style == "orca":
        prefix = "" if side is None else side[0].upper() + "_"
        return prefix + part.upper()
    return ("" if side is None else side.capitalize()) + "".join(
        w.capitalize() for w in part.split("_")
    )
