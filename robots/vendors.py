"""The three fictional robot models of the hall and their manufacturers' telemetry conventions.

* ``kestrel_k1`` -- Kestrel Robotics, 1.65 m, 27 DOF, 500 Hz packed float32 radians,
  wire order: left leg, right leg, torso, neck, left arm, right arm.
* ``orca_h2`` -- Orca Mechatronics, 1.80 m, 32 DOF (incl. two prismatic grippers), 200 Hz packed
  float64 degrees, wire order: waist, neck, then legs and arms interleaved left/right, grippers.
* ``tessel_t3`` -- Tessel Humanoids, 1.45 m, 23 DOF, 100 Hz self-describing name->value map,
  wire order: right arm, left arm, torso, right leg, left leg.

Limits are per manufacturer and given for the left side; :meth:`ModelSpec.limits_for` mirrors
roll and yaw limits for the right side. Positions in rad (m for grippers), velocities in rad/s
(m/s), efforts in N·m (N).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from robots.spec import JointLimits, ModelSpec, Proportions

_LEG: Final = ("hip_yaw", "hip_roll", "hip_pitch", "knee", "ankle_pitch", "ankle_roll")
_ARM7: Final = (
    "shoulder_pitch",
    "shoulder_roll",
    "shoulder_yaw",
    "elbow",
    "wrist_yaw",
    "wrist_pitch",
    "wrist_roll",
)


def _side(side: str, parts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{side}_{p}" for p in parts)


def _interleaved(parts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{side}_{p}" for p in parts for side in ("left", "right"))


def _limits(table: Mapping[str, tuple[float, float, float, float]]) -> dict[str, JointLimits]:
    return {k: JointLimits(*v) for k, v in table.items()}


# --------------------------------------------------------------------------- Kestrel K1
_K1_ARM: Final = _ARM7[:6]
_K1_ORDER: Final = (
    *_side("left", _LEG),
    *_side("right", _LEG),
    "spine_yaw",
    "neck_yaw",
    "neck_pitch",
    *_side("left", _K1_ARM),
    *_side("right", _K1_ARM),
)

KESTREL_K1: Final = ModelSpec(
    name="kestrel_k1",
    manufacturer="Kestrel Robotics",
    style="kestrel",
    height_m=1.65,
    mass_kg=55.0,
    proportions=Proportions(
        ankle_height=0.050,
        shank=0.235,
        thigh=0.225,
        hip_drop=0.030,
        pelvis_height=0.070,
        waist=0.030,
        neck=0.040,
        head_radius=0.062,
        shoulder_drop=0.035,
        upper_arm=0.170,
        forearm=0.150,
        hand=0.075,
        foot_length=0.150,
        foot_width=0.060,
        foot_forward=0.030,
        hip_width=0.110,
        pelvis_width=0.160,
        pelvis_depth=0.100,
        shoulder_width=0.240,
        torso_width=0.170,
        torso_depth=0.110,
        thigh_radius=0.034,
        shank_radius=0.027,
        upper_arm_radius=0.024,
        forearm_radius=0.020,
        joint_radius=0.022,
    ),
    dofs=_K1_ORDER,
    limits=_limits(
        {
            "hip_yaw": (-0.52, 0.87, 18.0, 90.0),
            "hip_roll": (-0.44, 0.79, 18.0, 120.0),
            "hip_pitch": (-2.0, 0.9, 20.0, 180.0),
            "knee": (0.0, 2.4, 20.0, 220.0),
            "ankle_pitch": (-0.52, 0.87, 16.0, 90.0),
            "ankle_roll": (-0.35, 0.35, 16.0, 50.0),
            "spine_yaw": (-1.2, 1.2, 12.0, 90.0),
            "neck_yaw": (-1.4, 1.4, 8.0, 8.0),
            "neck_pitch": (-0.6, 0.9, 8.0, 8.0),
            "shoulder_pitch": (-3.0, 1.0, 14.0, 50.0),
            "shoulder_roll": (-0.25, 2.6, 14.0, 50.0),
            "shoulder_yaw": (-1.6, 1.6, 16.0, 30.0),
            "elbow": (-2.5, 0.0, 16.0, 35.0),
            "wrist_yaw": (-1.7, 1.7, 20.0, 20.0),
            "wrist_pitch": (-0.9, 0.9, 20.0, 20.0),
        }
    ),
    colors={
        "primary": (0.92, 0.48, 0.12, 1.0),
        "secondary": (0.22, 0.23, 0.25, 1.0),
        "joint": (0.55, 0.56, 0.58, 1.0),
        "accent": (0.05, 0.05, 0.06, 1.0),
    },
    wire_order=_K1_ORDER,
    rate_hz=500.0,
    position_unit="rad",
    encoding="packed_f32",
)

# --------------------------------------------------------------------------- Orca H2
_H2_DOFS: Final = (
    *_side("left", _LEG),
    *_side("right", _LEG),
    "spine_yaw",
    "spine_pitch",
    "neck_yaw",
    "neck_pitch",
    *_side("left", _ARM7),
    "left_gripper",
    *_side("right", _ARM7),
    "right_gripper",
)

ORCA_H2: Final = ModelSpec(
    name="orca_h2",
    manufacturer="Orca Mechatronics",
    style="orca",
    height_m=1.80,
    mass_kg=72.0,
    proportions=Proportions(
        ankle_height=0.055,
        shank=0.240,
        thigh=0.235,
        hip_drop=0.030,
        pelvis_height=0.065,
        waist=0.030,
        neck=0.035,
        head_radius=0.058,
        shoulder_drop=0.035,
        upper_arm=0.175,
        forearm=0.155,
        hand=0.070,
        foot_length=0.145,
        foot_width=0.065,
        foot_forward=0.028,
        hip_width=0.115,
        pelvis_width=0.170,
        pelvis_depth=0.110,
        shoulder_width=0.255,
        torso_width=0.185,
        torso_depth=0.120,
        thigh_radius=0.036,
        shank_radius=0.029,
        upper_arm_radius=0.026,
        forearm_radius=0.022,
        joint_radius=0.020,
    ),
    dofs=_H2_DOFS,
    limits=_limits(
        {
            "hip_yaw": (-0.6, 1.0, 12.0, 150.0),
            "hip_roll": (-0.5, 0.9, 12.0, 200.0),
            "hip_pitch": (-2.0, 1.6, 14.0, 280.0),
            "knee": (0.0, 2.3, 14.0, 300.0),
            "ankle_pitch": (-0.6, 0.9, 12.0, 150.0),
            "ankle_roll": (-0.4, 0.4, 12.0, 80.0),
            "spine_yaw": (-1.0, 1.0, 9.0, 160.0),
            "spine_pitch": (-0.3, 0.8, 9.0, 200.0),
            "neck_yaw": (-1.3, 1.3, 6.0, 15.0),
            "neck_pitch": (-0.5, 0.8, 6.0, 15.0),
            "shoulder_pitch": (-3.1, 1.1, 10.0, 80.0),
            "shoulder_roll": (-0.3, 2.8, 10.0, 80.0),
            "shoulder_yaw": (-1.9, 1.9, 12.0, 45.0),
            "elbow": (-2.6, 0.05, 12.0, 60.0),
            "wrist_yaw": (-1.9, 1.9, 14.0, 25.0),
            "wrist_pitch": (-1.0, 1.0, 14.0, 25.0),
            "wrist_roll": (-0.7, 0.7, 14.0, 25.0),
            "gripper": (0.0, 0.04, 0.15, 60.0),
        }
    ),
    colors={
        "primary": (0.08, 0.09, 0.11, 1.0),
        "secondary": (0.93, 0.94, 0.96, 1.0),
        "joint": (0.35, 0.36, 0.40, 1.0),
        "accent": (0.12, 0.45, 0.85, 1.0),
    },
    wire_order=(
        "spine_yaw",
        "spine_pitch",
        "neck_yaw",
        "neck_pitch",
        *_interleaved(_LEG),
        *_interleaved(_ARM7),
        "left_gripper",
        "right_gripper",
    ),
    rate_hz=200.0,
    position_unit="deg",
    encoding="packed_deg_f64",
)

# --------------------------------------------------------------------------- Tessel T3
_T3_ARM: Final = _ARM7[:5]
_T3_DOFS: Final = (
    *_side("left", _LEG),
    *_side("right", _LEG),
    "spine_yaw",
    *_side("left", _T3_ARM),
    *_side("right", _T3_ARM),
)

TESSEL_T3: Final = ModelSpec(
    name="tessel_t3",
    manufacturer="Tessel Humanoids",
    style="tessel",
    height_m=1.45,
    mass_kg=38.0,
    proportions=Proportions(
        ankle_height=0.045,
        shank=0.235,
        thigh=0.225,
        hip_drop=0.028,
        pelvis_height=0.075,
        waist=0.030,
        neck=0.0,
        head_radius=0.070,
        shoulder_drop=0.040,
        upper_arm=0.165,
        forearm=0.140,
        hand=0.070,
        foot_length=0.160,
        foot_width=0.070,
        foot_forward=0.035,
        hip_width=0.120,
        pelvis_width=0.175,
        pelvis_depth=0.105,
        shoulder_width=0.250,
        torso_width=0.180,
        torso_depth=0.120,
        thigh_radius=0.036,
        shank_radius=0.030,
        upper_arm_radius=0.026,
        forearm_radius=0.022,
        joint_radius=0.024,
    ),
    dofs=_T3_DOFS,
    limits=_limits(
        {
            "hip_yaw": (-0.45, 0.7, 22.0, 60.0),
            "hip_roll": (-0.35, 0.6, 22.0, 80.0),
            "hip_pitch": (-1.9, 0.7, 24.0, 100.0),
            "knee": (0.0, 2.45, 24.0, 130.0),
            "ankle_pitch": (-0.45, 0.8, 20.0, 60.0),
            "ankle_roll": (-0.3, 0.3, 20.0, 35.0),
            "spine_yaw": (-1.5, 1.5, 16.0, 60.0),
            "shoulder_pitch": (-2.9, 0.9, 18.0, 30.0),
            "shoulder_roll": (-0.2, 2.4, 18.0, 30.0),
            "shoulder_yaw": (-1.4, 1.4, 20.0, 18.0),
            "elbow": (-2.4, 0.0, 20.0, 22.0),
            "wrist_yaw": (-1.6, 1.6, 24.0, 15.0),
        }
    ),
    colors={
        "primary": (0.10, 0.62, 0.60, 1.0),
        "secondary": (0.86, 0.87, 0.84, 1.0),
        "joint": (0.40, 0.42, 0.42, 1.0),
        "accent": (0.98, 0.78, 0.20, 1.0),
    },
    wire_order=(
        *_side("right", _T3_ARM),
        *_side("left", _T3_ARM),
        "spine_yaw",
        *_side("right", _LEG),
        *_side("left", _LEG),
    ),
    rate_hz=100.0,
    position_unit="rad",
    encoding="map",
)

SPECS: Final[Mapping[str, ModelSpec]] = {
    spec.name: spec for spec in (KESTREL_K1, ORCA_H2, TESSEL_T3)
}
"""The generated models by name, in registry order."""
