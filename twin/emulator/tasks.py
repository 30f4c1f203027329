"""Keyframe tables of the hall's looping station tasks, in canonical joint names.

Each table is one loop of a task: ``(time_s, changes)`` pairs whose ``changes`` update the pose
of the frame before (the first frame updates :data:`REST`); the loop closes back on its first
frame. Values are canonical joint angles (rad) with the signs of :mod:`robots.canonical`, plus
three extra channels:

* ``pelvis_pitch`` -- forward lean of the pelvis (rad, > 0 leans forward); the legs' hip pitch
  is compensated so a leg's ``*_hip_pitch`` here is the thigh's angle from the vertical,
* ``grip`` -- 0 open, 1 closed (drives grippers where a model has them),
* ``wrist_load`` -- 0..1, the fraction of the right wrist's effort limit that a bolt resists
  with during a torque-wrench turning stroke.

Ankle pitch is never keyed: the motion keeps the feet flat from the hip and knee angles.
Walking is not a table; its gait is computed in :mod:`twin.emulator.motion`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

Keyframes = tuple[tuple[float, Mapping[str, float]], ...]

_MIRRORED: Final = ("_roll", "_yaw")


def arm(
    side: str,
    *,
    pitch: float = 0.0,
    roll: float = 0.12,
    yaw: float = 0.0,
    elbow: float = -0.3,
    wrist_yaw: float = 0.0,
    wrist_pitch: float = 0.0,
    wrist_roll: float = 0.0,
) -> dict[str, float]:
    """One arm's canonical angles; roll and yaw are given as for the left arm and mirrored for
    the right one (``roll > 0`` lifts either arm out sideways)."""
    values = {
        "shoulder_pitch": pitch,
        "shoulder_roll": roll,
        "shoulder_yaw": yaw,
        "elbow": elbow,
        "wrist_yaw": wrist_yaw,
        "wrist_pitch": wrist_pitch,
        "wrist_roll": wrist_roll,
    }
    sign = -1.0 if side == "right" else 1.0
    return {f"{side}_{k}": (sign * v if k.endswith(_MIRRORED) else v) for k, v in values.items()}


def both_arms(**kwargs: float) -> dict[str, float]:
    """The same (mirrored) angles on both arms."""
    return {**arm("left", **kwargs), **arm("right", **kwargs)}


def legs(*, thigh: float = 0.0, knee: float = 0.0) -> dict[str, float]:
    """Both legs: thigh angle from the vertical (< 0 forward) and knee flexion (> 0)."""
    return {
        "left_hip_pitch": thigh,
        "right_hip_pitch": thigh,
        "left_knee": knee,
        "right_knee": knee,
    }


REST: Final[Mapping[str, float]] = MappingProxyType(both_arms())
"""Standing: legs straight, arms hanging slightly out with the elbows a little bent."""

IDLE: Final[Keyframes] = (
    (0.0, {}),
    (2.0, {**both_arms(roll=0.16, elbow=-0.36), "spine_pitch": 0.03, "neck_pitch": -0.05}),
    (4.0, {**both_arms(), "spine_pitch": 0.0, "neck_pitch": 0.0}),
)

SQUATS: Final[Keyframes] = (
    (0.0, {}),
    (1.6, {**legs(thigh=-1.1, knee=1.5), "pelvis_pitch": 0.4, **both_arms(pitch=-1.3)}),
    (2.2, {}),
    (3.8, {**legs(), "pelvis_pitch": 0.0, **both_arms()}),
    (4.0, {}),
)

_REACH: Final = {"pelvis_pitch": 0.22, "neck_pitch": 0.35, "spine_pitch": 0.1}
_UPRIGHT: Final = {"pelvis_pitch": 0.0, "neck_pitch": 0.0, "spine_pitch": 0.0, "spine_yaw": 0.0}

PICK_AND_PLACE: Final[Keyframes] = (
    (0.0, {}),
    (1.2, {**_REACH, **arm("right", pitch=-0.85, roll=0.15, elbow=-0.75, wrist_pitch=0.2)}),
    (1.8, {"grip": 1.0}),
    (2.4, arm("right", pitch=-1.05, roll=0.15, elbow=-0.95, wrist_pitch=0.2)),
    (3.6, {"spine_yaw": -0.35, **arm("right", pitch=-1.0, roll=0.45, elbow=-0.9)}),
    (4.4, arm("right", pitch=-0.85, roll=0.45, elbow=-0.75, wrist_pitch=0.2)),
    (5.0, {"grip": 0.0}),
    (6.2, {**_UPRIGHT, **arm("right")}),
    (7.0, {}),
)

PRECISION_ASSEMBLY: Final[Keyframes] = (
    (0.0, {}),
    (1.5, {**_REACH, **both_arms(pitch=-0.8, roll=0.2, elbow=-1.1)}),
    (2.3, {"grip": 1.0, **arm("right", pitch=-0.85, roll=0.2, elbow=-1.1, wrist_yaw=0.5)}),
    (3.3, arm("right", pitch=-0.8, roll=0.05, yaw=0.3, elbow=-1.2, wrist_pitch=0.3)),
    (4.3, arm("right", pitch=-0.8, roll=0.05, yaw=0.3, elbow=-1.2, wrist_yaw=-0.4)),
    (5.3, arm("right", pitch=-0.8, roll=0.05, yaw=0.3, elbow=-1.2, wrist_yaw=0.4)),
    (6.1, {"grip": 0.0, **arm("right", pitch=-0.8, roll=0.2, elbow=-1.1)}),
    (7.4, {**_UPRIGHT, **both_arms()}),
    (8.0, {}),
)


def _ratchet(start_s: float, strokes: int) -> list[tuple[float, Mapping[str, float]]]:
    """Working strokes (wrist turning, bolt resisting) and free back strokes of a ratchet."""
    frames: list[tuple[float, Mapping[str, float]]] = []
    t = start_s
    for _ in range(strokes):
        frames.append((t, {"right_wrist_yaw": -0.5, "right_elbow": -0.95, "wrist_load": 0.0}))
        frames.append((t + 0.05, {"wrist_load": 1.0}))
        frames.append((t + 0.6, {"right_wrist_yaw": 0.5, "right_elbow": -1.05}))
        frames.append((t + 0.65, {"wrist_load": 0.0}))
        t += 1.05
    frames.append((t, {"right_wrist_yaw": -0.5, "right_elbow": -0.95}))
    return frames


TORQUE_WRENCH: Final[Keyframes] = (
    (0.0, {}),
    (1.2, {**_REACH, **arm("right", pitch=-0.9, roll=0.2, elbow=-0.95), "grip": 1.0}),
    *_ratchet(1.6, 4),
    (6.4, {**_UPRIGHT, **arm("right"), "grip": 0.0}),
    (8.0, {}),
)


def _held(poses: list[Mapping[str, float]], move_s: float, hold_s: float) -> Keyframes:
    frames: list[tuple[float, Mapping[str, float]]] = [(0.0, {})]
    t = 0.0
    for pose in [*poses, {**both_arms(), **_UPRIGHT, "neck_yaw": 0.0}]:
        t += move_s
        frames.append((t, pose))
        t += hold_s
        frames.append((t, {}))
    return tuple(frames)


SENSOR_CALIBRATION: Final[Keyframes] = _held(
    [
        {**both_arms(pitch=-1.5, roll=0.1, elbow=-0.1), "neck_pitch": 0.2},
        {**both_arms(roll=1.4, elbow=-0.05), "neck_pitch": 0.0},
        {**both_arms(roll=0.7, elbow=-0.3), "spine_yaw": 0.5, "neck_yaw": 0.4},
        {"spine_yaw": -0.5, "neck_yaw": -0.4},
        {**arm("left", pitch=-2.4, roll=0.2), **arm("right", pitch=-1.0), "spine_yaw": 0.0},
    ],
    move_s=0.8,
    hold_s=2.0,
)

TABLES: Final[Mapping[str, Keyframes]] = MappingProxyType(
    {
        "idle": IDLE,
        "squats": SQUATS,
        "pick_and_place": PICK_AND_PLACE,
        "precision_assembly": PRECISION_ASSEMBLY,
        "torque_wrench": TORQUE_WRENCH,
        "sensor_calibration": SENSOR_CALIBRATION,
    }
)
"""Keyframe table of every task except walking."""

Phases = tuple[tuple[float, str], ...]

PHASES: Final[Mapping[str, Phases]] = MappingProxyType(
    {
        "idle": ((0.0, "idle"),),
        "squats": ((0.0, "down"), (1.6, "hold"), (2.2, "up"), (3.8, "stand")),
        "pick_and_place": (
            (0.0, "reach"),
            (1.2, "grasp"),
            (1.8, "carry"),
            (4.4, "release"),
            (5.0, "return"),
        ),
        "precision_assembly": (
            (0.0, "reach"),
            (1.5, "grasp"),
            (2.3, "assemble"),
            (6.1, "return"),
        ),
        "torque_wrench": ((0.0, "reach"), (1.2, "turn"), (5.8, "return")),
        "sensor_calibration": ((0.0, "pose"),),
    }
)
"""The named motion phases of each table (start time in the loop, name): what a heartbeat's
``step`` says the robot is doing; walking is one phase, ``walk``. Coarse on purpose: a lesson is
keyed by its task step, so an item slipping while lifted or while moved is one lesson
("carry"), not two."""


def phase_name(task: str, u_s: float) -> str:
    """The phase of ``task``'s loop at ``u_s`` seconds into one run of it ("" if unknown)."""
    phases = PHASES.get(task)
    if not phases:
        return "walk" if task == "walking" else ""
    name = phases[0][1]
    for start_s, label in phases:
        if u_s >= start_s:
            name = label
    return name
