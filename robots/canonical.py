"""Canonical humanoid skeleton shared by every robot model in the hall.

Each vendor names its joints differently (``l_knee_joint``, ``L_KNEE``, ``LeftKnee``); the
twin, the sync layer and the viewer talk about joints by the vendor-neutral names below. There
is exactly one canonical name per rotational degree of freedom; a physical joint with several
degrees of freedom (a hip, a shoulder) therefore appears as several canonical joints whose suffix
gives the rotation axis in the body frame (Z up, X forward, Y to the robot's left):

* ``yaw``   -- rotation about Z (for a hanging limb: about the limb's long axis),
* ``roll``  -- rotation about X,
* ``pitch`` -- rotation about Y.

The names are inspired by the joints of ISO/IEC 19774 (H-Anim); the table relates them:

=================================================  ==========================================
canonical joint(s)                                 H-Anim joint
=================================================  ==========================================
``left_hip_yaw``, ``_roll``, ``_pitch``            ``l_hip``
``left_knee``                                      ``l_knee``
``left_ankle_pitch``                               ``l_talocrural`` (upper ankle joint)
``left_ankle_roll``                                ``l_talocalcaneonavicular`` (subtalar)
``spine_yaw``, ``spine_roll``, ``spine_pitch``     ``vl5`` .. ``vt1`` (lumbar/thoracic spine)
``neck_yaw``, ``neck_pitch``, ``neck_roll``        ``skullbase`` (with ``vc1`` .. ``vc7``)
``left_shoulder_pitch``, ``_roll``, ``_yaw``       ``l_shoulder``
``left_elbow``                                     ``l_elbow``
``left_wrist_yaw``                                 ``l_radiocarpal`` (forearm pro-/supination)
``left_wrist_pitch``, ``left_wrist_roll``          ``l_radiocarpal``
=================================================  ==========================================

``right_*`` joints relate to the ``r_*`` H-Anim joints in the same way.

Sign conventions (all joints at zero: standing upright, arms hanging): positive ``*_pitch``
rotates about +Y (hip pitch < 0 swings the leg forward, knee > 0 flexes it, elbow < 0 flexes it),
positive ``*_roll`` about +X (left hip roll > 0 abducts), positive ``*_yaw`` about +Z. These are
the conventions of the generated models; a mapping to a canonical name carries no sign, so an
external model whose joint turns the other way (pybullet_humanoid's knees and elbows, about
their own axes) reports opposite signs.
"""

from __future__ import annotations

from typing import Final

_LEG: Final = ("hip_yaw", "hip_roll", "hip_pitch", "knee", "ankle_pitch", "ankle_roll")
_ARM: Final = (
    "shoulder_pitch",
    "shoulder_roll",
    "shoulder_yaw",
    "elbow",
    "wrist_yaw",
    "wrist_pitch",
    "wrist_roll",
)

CANONICAL_JOINTS: Final[tuple[str, ...]] = (
    *(f"left_{j}" for j in _LEG),
    *(f"right_{j}" for j in _LEG),
    "spine_yaw",
    "spine_roll",
    "spine_pitch",
    "neck_yaw",
    "neck_pitch",
    "neck_roll",
    *(f"left_{j}" for j in _ARM),
    *(f"right_{j}" for j in _ARM),
)
"""Every canonical joint in a fixed order: left leg, right leg, spine, neck, left arm, right arm."""

CANONICAL_JOINT_SET: Final[frozenset[str]] = frozenset(CANONICAL_JOINTS)

_HANIM_BY_PART: Final[dict[str, str]] = {
    "hip": "hip",
    "knee": "knee",
    "ankle_pitch": "talocrural",
    "ankle_roll": "talocalcaneonavicular",
    "shoulder": "shoulder",
    "elbow": "elbow",
    "wrist": "radiocarpal",
}


def is_canonical(name: str) -> bool:
    """Whether ``name`` is one of :data:`CANONICAL_JOINTS`."""
    return name in CANONICAL_JOINT_SET


def hanim_joint(name: str) -> str:
    """The H-Anim joint a canonical joint belongs to (``left_knee`` -> ``l_knee``).

    Raises:
        KeyError: ``name`` is not a canonical joint.
    """
    if name not in CANONICAL_JOINT_SET:
        raise KeyError(f"{name!r} is not a canonical joint")
    if name.startswith("spine_"):
        return "vl5"
    if name.startswith("neck_"):
        return "skullbase"
    side, _, part = name.partition("_")
    prefix = "l_" if side == "left" else "r_"
    for key in ("ankle_pitch", "ankle_roll"):
        if part == key:
            return prefix + _HANIM_BY_PART[key]
    return prefix + _HANIM_BY_PART[part.split("_")[0]]


def mirror(name: str) -> str:
    """The same joint on the other side (``left_knee`` <-> ``right_knee``); centre joints map to
    themselves.

    Raises:
        KeyError: ``name`` is not a canonical joint.
    """
    if name not in CANONICAL_JOINT_SET:
        raise KeyError(f"{name!r} is not a canonical joint")
    if name.startswith("left_"):
        return "right_" + name.removeprefix("left_")
    if name.startswith("right_"):
        return "left_" + name.removeprefix("right_")
    return name
