"""What each emulated robot does at time t: joint targets and a pelvis pose, from its station task.

A :class:`RobotMotion` turns a robot's task (scenes TaskKind) into, for any time ``t_s``:

* joint targets for its motors, in the model's movable-joint order (:attr:`RobotMotion.joints`),
  clipped into each joint's limits with a small margin; canonical targets a model lacks are
  skipped, grippers (prismatic joints without a canonical name) follow the ``grip`` channel,
* where the pelvis should be (position, heading, forward lean), consistent with the legs: the
  feet stay flat where they stand and the pelvis sits where the stance leg's hip, knee and ankle
  angles put it (so a squat lowers the pelvis as much as the knees bend),
* the resisting load on the wrist during a torque-wrench turning stroke.

Motion is a pure, deterministic function of time, the task, the station and a phase offset
(the emulator derives that from its seed). Tasks other than walking are keyframe loops
(:mod:`twin.emulator.tasks`); walking follows a lane (:mod:`twin.emulator.plans`) with an
alternating-leg gait and counter-swinging arms. Every task fades in from standing over
:data:`BLEND_IN_S` so a robot never jumps at start. Values are SI: rad, m, s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from robots import CANONICAL_JOINTS, RobotModel
from scenes.model import TaskKind
from twin.emulator.plans import WalkPath
from twin.emulator.tasks import REST, TABLES, Keyframes, phase_name

FloatArray = npt.NDArray[np.float64]

EXTRA_CHANNELS: Final = ("pelvis_pitch", "grip", "wrist_load")
CHANNELS: Final[tuple[str, ...]] = (*CANONICAL_JOINTS, *EXTRA_CHANNELS)
"""Every motion channel: the canonical joints, then the extra channels of the task tables."""
_CH: Final[Mapping[str, int]] = {name: i for i, name in enumerate(CHANNELS)}

BLEND_IN_S: Final = 1.0
LIMIT_MARGIN_RAD: Final = 0.02
WALK_STEP_HZ: Final = 0.9
"""Gait cycles (a left and a right step) per second while walking."""
WALK_SPOT_SWING_RAD: Final = 0.08
"""Thigh swing while stepping on the spot (turning); walking, the swing matches the speed."""
WALK_KNEE_LIFT_RAD: Final = 0.38
WALK_KNEE_BASE_RAD: Final = 0.12
WALK_ARM_SWING_RAD: Final = 0.35
WRIST_LOAD_JOINT: Final = "right_wrist_yaw"
WRIST_LOAD_FRACTION: Final = 0.6
"""Bolt resistance at ``wrist_load`` 1, as a fraction of the wrist joint's effort limit."""

Quat = tuple[float, float, float, float]

_LEGS: Final = ("left_hip_pitch", "left_knee", "right_hip_pitch", "right_knee")
_RIGHT_ARM: Final = ("right_shoulder_pitch", "right_elbow")
_ARMS: Final = (*_RIGHT_ARM, "left_shoulder_pitch", "left_elbow")
REQUIRED_JOINTS: Final[Mapping[TaskKind, tuple[str, ...]]] = {
    "walking": _LEGS,
    "squats": _LEGS,
    "pick_and_place": _RIGHT_ARM,
    "torque_wrench": (*_RIGHT_ARM, WRIST_LOAD_JOINT),
    "precision_assembly": _RIGHT_ARM,
    "sensor_calibration": _ARMS,
    "idle": (),
}
"""The canonical joints a model must map to do each task in a way one would recognise."""


def missing_joints(model: RobotModel, task: TaskKind) -> list[str]:
    """Canonical joints ``task`` needs that ``model`` does not map (:data:`REQUIRED_JOINTS`)."""
    mapped = set(model.profile.to_canonical.values())
    return [name for name in REQUIRED_JOINTS.get(task, ()) if name not in mapped]


def _smooth(u: FloatArray | float) -> FloatArray | float:
    return u * u * (3.0 - 2.0 * u)


@dataclass(frozen=True)
class LegGeometry:
    """Sagittal leg dimensions (m): pelvis frame to hip pitch axis, thigh, shank, ankle to sole.

    Measured from the model at zero joints (:func:`twin.emulator.actors.leg_geometry`); the
    standing pelvis height is their sum.
    """

    pelvis_to_hip_m: float
    thigh_m: float
    shank_m: float
    ankle_height_m: float

    def pelvis_over_foot(
        self, pelvis_pitch_rad: float, hip_rad: float, knee_rad: float
    ) -> tuple[float, float]:
        """(forward offset, height) of the pelvis frame over the sole of a flat foot.

        ``hip_rad`` is the hip pitch joint angle (relative to the pelvis); positive pitch swings a
        hanging segment backwards.
        """
        thigh = pelvis_pitch_rad + hip_rad
        shank = thigh + knee_rad
        forward = (
            self.pelvis_to_hip_m * math.sin(pelvis_pitch_rad)
            + self.thigh_m * math.sin(thigh)
            + self.shank_m * math.sin(shank)
        )
        height = (
            self.ankle_height_m
            + self.pelvis_to_hip_m * math.cos(pelvis_pitch_rad)
            + self.thigh_m * math.cos(thigh)
            + self.shank_m * math.cos(shank)
        )
        return forward, height


@dataclass(frozen=True)
class MotionTarget:
    """Targets at one instant: joints in :attr:`RobotMotion.joints` order and the pelvis pose."""

    joint_targets: FloatArray
    pelvis_xyz_m: tuple[float, float, float]
    pelvis_yaw_rad: float
    pelvis_pitch_rad: float
    feet_xy_m: tuple[float, float]
    """Where the feet stand (the pelvis minus its forward offset over them)."""
    wrist_load: float
    grip: float = 0.0
    """0 open .. 1 closed."""


def pelvis_orientation(model: RobotModel, yaw_rad: float, pitch_rad: float) -> Quat:
    """Base orientation (x, y, z, w) for a heading and a forward lean, model's own frame applied."""
    cy, sy = math.cos(yaw_rad / 2.0), math.sin(yaw_rad / 2.0)
    cp, sp = math.cos(pitch_rad / 2.0), math.sin(pitch_rad / 2.0)
    heading_lean = (-sy * sp, cy * sp, sy * cp, cy * cp)  # yaw about Z, then pitch about body Y
    return quat_mul(heading_lean, model.base_orientation_xyzw)


def quat_mul(a: Quat, b: Quat) -> Quat:
    """Hamilton product of two (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


class _Table:
    """A keyframe loop as arrays: frame times and channel values, smoothstep between frames."""

    def __init__(self, keyframes: Keyframes) -> None:
        pose = np.zeros(len(CHANNELS))
        for name, value in REST.items():
            pose[_CH[name]] = value
        times, rows = [], []
        for time_s, changes in keyframes:
            for name, value in changes.items():
                pose[_CH[name]] = value
            times.append(time_s)
            rows.append(pose.copy())
        self.period_s = times[-1]
        rows.append(rows[0])  # a zero-length closing frame keeps indexing simple
        times.append(self.period_s + 1e-9)
        self.times = np.asarray(times)
        self.rows = np.asarray(rows)

    def at(self, t_s: float) -> FloatArray:
        u = t_s % self.period_s
        i = int(np.searchsorted(self.times, u, side="right")) - 1
        i = min(max(i, 0), len(self.times) - 2)
        span = self.times[i + 1] - self.times[i]
        w = float(_smooth(min(1.0, max(0.0, (u - self.times[i]) / span))))
        out: FloatArray = self.rows[i] + w * (self.rows[i + 1] - self.rows[i])
        return out


_TABLES: Final[dict[str, _Table]] = {task: _Table(frames) for task, frames in TABLES.items()}
_REST_ROW: Final[FloatArray] = _Table(((0.0, {}), (1.0, {}))).rows[0]


def _leg_phase(u: float) -> tuple[float, float]:
    """One leg over a gait cycle ``u`` in [0, 1): (thigh swing in -1 forward .. 1 back, knee lift
    0..1). Stance (first half): the thigh sweeps back at a constant rate, so the planted foot
    keeps pace with the pelvis; swing (second half): it comes forward with the knee lifted."""
    if u < 0.5:
        return -1.0 + 4.0 * u, 0.0
    w = (u - 0.5) / 0.5
    return 1.0 - 2.0 * float(_smooth(w)), math.sin(math.pi * w)


def task_period_s(task: TaskKind, walk: WalkPath | None = None) -> float:
    """Length of one loop of ``task`` (a walking loop needs its lane)."""
    if task == "walking":
        return walk.period_s if walk is not None else 1.0 / WALK_STEP_HZ
    return _TABLES[task].period_s


class RobotMotion:
    """The looping motion of one robot on its station (see the module docstring)."""

    def __init__(
        self,
        model: RobotModel,
        task: TaskKind,
        home_xy_m: tuple[float, float],
        home_yaw_rad: float,
        legs: LegGeometry | None,
        *,
        walk: WalkPath | None = None,
        phase_offset_s: float = 0.0,
    ) -> None:
        if task == "walking" and walk is None:
            raise ValueError(f"{model.name}: a walking robot needs a lane")
        self.model = model
        self.task = task
        self.home_xy_m = home_xy_m
        self.home_yaw_rad = home_yaw_rad
        self.legs = legs
        self.walk = walk
        self.phase_offset_s = 0.0 if task == "walking" else phase_offset_s
        self.joints = tuple(j for j in model.joints if j.kind != "spherical")
        """Joints driven by position motors (spherical joints are only held upright)."""
        canonical = [model.profile.canonical_name(j.name) for j in self.joints]
        self._channel = np.array([_CH.get(name, -1) for name in canonical], dtype=np.intp)
        self._gripper = np.array(
            [
                j.kind == "prismatic" and c not in _CH
                for j, c in zip(self.joints, canonical, strict=True)
            ]
        )
        prismatic = np.array([j.kind == "prismatic" for j in self.joints], dtype=bool)
        margin = np.where(prismatic, 0.0, LIMIT_MARGIN_RAD)
        self.lower = np.array([j.lower for j in self.joints]) + margin
        self.upper = np.array([j.upper for j in self.joints]) - margin
        self.upper = np.maximum(self.upper, self.lower)
        self._finite_lower = np.where(np.isfinite(self.lower), self.lower, 0.0)
        self._grip_span = np.where(self._gripper, self.upper - self._finite_lower, 0.0)
        self._leg_index = self._leg_joint_indices()
        # thigh swing amplitude whose stride (two steps per gait cycle) matches the lane speed,
        # so the stance foot moves back under the pelvis as fast as the pelvis moves on
        leg_m = legs.thigh_m + legs.shank_m if legs is not None else 0.8 * model.base_height_m
        speed = walk.cruise_m_s if walk is not None else 0.0
        self._stride_rad = math.asin(min(0.5, speed / (4.0 * WALK_STEP_HZ * leg_m)))
        self.index_of = {j.name: i for i, j in enumerate(self.joints)}

    @property
    def gripper_mask(self) -> npt.NDArray[np.bool_]:
        """Which of :attr:`joints` are gripper fingers (prismatic, not canonical)."""
        return self._gripper

    def cycle(self, t_s: float) -> int:
        """Which run of the task loop ``t_s`` falls in (0: the first, from the task's start)."""
        period_s = task_period_s(self.task, self.walk)
        return max(0, int((t_s + self.phase_offset_s) // period_s)) if period_s > 0 else 0

    def phase(self, t_s: float) -> str:
        """The named motion phase of the task loop at ``t_s`` (:data:`twin.emulator.tasks.PHASES`;
        "" before the task starts)."""
        if t_s < 0.0:
            return ""
        period_s = task_period_s(self.task, self.walk)
        u_s = (t_s + self.phase_offset_s) % period_s if period_s > 0 else 0.0
        return phase_name(self.task, u_s)

    def _leg_joint_indices(self) -> tuple[tuple[int, int], ...]:
        """(hip pitch, knee) positions in :attr:`joints` for each leg the model has."""
        names = [j.name for j in self.joints]
        out = []
        for side in ("left", "right"):
            try:
                hip = self.model.profile.vendor_name(f"{side}_hip_pitch")
                knee = self.model.profile.vendor_name(f"{side}_knee")
            except KeyError:
                continue
            if hip in names and knee in names:
                out.append((names.index(hip), names.index(knee)))
        return tuple(out)

    def channels(self, t_s: float) -> tuple[FloatArray, float, float, float]:
        """Raw task channels at ``t_s`` (:data:`CHANNELS`, before the blend-in) and the planar
        pelvis pose (x, y in m, yaw in rad)."""
        x, y = self.home_xy_m
        if self.task != "walking" or self.walk is None:
            row = _TABLES[self.task].at(t_s + self.phase_offset_s)
            return row, x, y, self.home_yaw_rad
        state = self.walk.at(t_s)
        return self._gait(t_s, state.speed_fraction), state.x_m, state.y_m, state.yaw_rad

    def _gait(self, t_s: float, speed_fraction: float) -> FloatArray:
        row = _REST_ROW.copy()
        swing = max(self._stride_rad * speed_fraction, WALK_SPOT_SWING_RAD)
        cycle = WALK_STEP_HZ * t_s
        for side, offset in (("left", 0.0), ("right", 0.5)):
            thigh, lift = _leg_phase((cycle + offset) % 1.0)
            row[_CH[f"{side}_hip_pitch"]] = swing * thigh
            row[_CH[f"{side}_knee"]] = WALK_KNEE_BASE_RAD + WALK_KNEE_LIFT_RAD * lift
            # the arm swings against its own leg (forward as that leg goes back)
            row[_CH[f"{side}_shoulder_pitch"]] = (
                -WALK_ARM_SWING_RAD * (0.3 + 0.7 * speed_fraction) * thigh
            )
            row[_CH[f"{side}_elbow"]] = -0.4
        row[_CH["spine_yaw"]] = 0.05 * speed_fraction * _leg_phase(cycle % 1.0)[0]
        row[_CH["pelvis_pitch"]] = 0.05
        return row

    def at(self, t_s: float) -> MotionTarget:
        """Targets at simulated time ``t_s`` (0 = the emulator's start)."""
        row, x, y, yaw = self.channels(t_s)
        if t_s < BLEND_IN_S:
            row = _REST_ROW + float(_smooth(max(0.0, t_s) / BLEND_IN_S)) * (row - _REST_ROW)
        row = self._compensate_legs(row)
        targets = self.vendor_targets(row)
        pitch = float(row[_CH["pelvis_pitch"]])
        forward, height = self.pelvis_over_feet(targets, pitch)
        cx, cy = math.cos(yaw), math.sin(yaw)
        if self.task == "walking":
            feet = (x - cx * forward, y - cy * forward)
            pelvis = (x, y, height)
        else:
            feet = (x, y)
            pelvis = (x + cx * forward, y + cy * forward, height)
        return MotionTarget(
            targets,
            pelvis,
            yaw,
            pitch,
            feet,
            float(row[_CH["wrist_load"]]),
            float(row[_CH["grip"]]),
        )

    @staticmethod
    def _compensate_legs(row: FloatArray) -> FloatArray:
        """Turn keyed thigh angles into hip joint angles under a leaning pelvis; flat feet."""
        out = row.copy()
        lean = row[_CH["pelvis_pitch"]]
        for side in ("left", "right"):
            thigh, knee = row[_CH[f"{side}_hip_pitch"]], row[_CH[f"{side}_knee"]]
            out[_CH[f"{side}_hip_pitch"]] = thigh - lean
            out[_CH[f"{side}_ankle_pitch"]] = row[_CH[f"{side}_ankle_pitch"]] - (thigh + knee)
        return out

    def vendor_targets(self, row: FloatArray) -> FloatArray:
        """Channels -> targets in :attr:`joints` order, clipped into the joint limits."""
        values = np.where(self._channel >= 0, row[self._channel], 0.0)
        grip = row[_CH["grip"]]
        values = np.where(
            self._gripper, self._finite_lower + (1.0 - grip) * self._grip_span, values
        )
        out: FloatArray = np.clip(values, self.lower, self.upper)
        return out

    def grip_targets(self, targets: FloatArray, grip: float) -> FloatArray:
        """``targets`` with the grippers (prismatic joints without a canonical name) set for
        ``grip`` (0 open .. 1 closed)."""
        values = np.where(
            self._gripper, self._finite_lower + (1.0 - grip) * self._grip_span, targets
        )
        out: FloatArray = values
        return out

    def pelvis_over_feet(self, targets: FloatArray, pelvis_pitch_rad: float) -> tuple[float, float]:
        """(forward offset, height) of the pelvis over the feet for joint targets: the stance leg
        (the longer one) carries it. Without leg geometry: no offset, standing height."""
        if self.legs is None or not self._leg_index:
            return 0.0, self.model.base_height_m
        best = (0.0, -math.inf)
        for hip, knee in self._leg_index:
            forward, height = self.legs.pelvis_over_foot(
                pelvis_pitch_rad, float(targets[hip]), float(targets[knee])
            )
            if height > best[1]:
                best = (forward, height)
        return best

    def wrist_load_joint(self) -> tuple[int, float] | None:
        """(position in :attr:`joints`, full-load torque N*m) of the wrench wrist, if any."""
        for name in (WRIST_LOAD_JOINT, "right_elbow"):
            try:
                vendor = self.model.profile.vendor_name(name)
            except KeyError:
                continue
            if vendor in self.index_of:
                joint = self.joints[self.index_of[vendor]]
                effort = joint.effort_limit if math.isfinite(joint.effort_limit) else 10.0
                return self.index_of[vendor], WRIST_LOAD_FRACTION * effort
        return None


def lerp_target(a: MotionTarget, b: MotionTarget, w: float) -> MotionTarget:
    """Blend two motion targets (``w`` = 0: ``a``, 1: ``b``); yaw the short way round."""

    def mix(p: Sequence[float], q: Sequence[float]) -> list[float]:
        return [x + w * (y - x) for x, y in zip(p, q, strict=True)]

    px, py, pz = mix(a.pelvis_xyz_m, b.pelvis_xyz_m)
    fx, fy = mix(a.feet_xy_m, b.feet_xy_m)
    yaw = a.pelvis_yaw_rad + w * math.remainder(b.pelvis_yaw_rad - a.pelvis_yaw_rad, math.tau)
    return MotionTarget(
        a.joint_targets + w * (b.joint_targets - a.joint_targets),
        (px, py, pz),
        yaw,
        a.pelvis_pitch_rad + w * (b.pelvis_pitch_rad - a.pelvis_pitch_rad),
        (fx, fy),
        a.wrist_load + w * (b.wrist_load - a.wrist_load),
        a.grip + w * (b.grip - a.grip),
    )
