"""One emulated robot and one emulated crane inside the emulator's PyBullet world.

:class:`EmulatedRobot` owns what drives one robot: its :class:`~twin.emulator.motion.RobotMotion`,
the position motors of its joints, the stabiliser constraint that carries its pelvis, the
torque-wrench load on its wrist, a joint-target override, an injected fall, and the base
velocity history its accelerometer is differentiated from. :class:`EmulatedCrane` drives a crane's
three axes along its :class:`~twin.emulator.plans.CranePlan`. :class:`twin.emulator.physics
.EmulatedHall` orchestrates them; nothing here steps the simulation.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

from robots.bullet import pb
from twin.emulator.follow import PlanRun, blend_time_s
from twin.emulator.motion import (
    FloatArray,
    LegGeometry,
    MotionTarget,
    RobotMotion,
    lerp_target,
    quat_mul,
)
from twin.emulator.motion import pelvis_orientation as _pelvis_orientation
from twin.emulator.plans import CranePlan
from twin.world.world import GRAVITY_M_S2, CraneHandle, RobotHandle

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]

POSITION_GAIN: Final = 0.2
VELOCITY_GAIN: Final = 1.0
STABILISER_FORCE_G: Final = 4.0
"""Stabiliser force limit as a multiple of the robot's weight (N; the same number in N*m)."""
FALL_MOTOR_FRACTION: Final = 0.03
FALL_SHOVE_G: Final = 0.5
FALL_SHOVE_S: Final = 0.3
FALLEN_HEIGHT_FRACTION: Final = 0.5
FALLEN_TILT_RAD: Final = math.radians(60.0)
RETURN_BLEND_S: Final = 0.5
CRANE_POSITION_GAIN: Final = 0.02
SPHERICAL_HOLD_N_M: Final = 100.0


def leg_geometry(handle: RobotHandle, client: int) -> LegGeometry | None:
    """A robot's left-leg dimensions measured in PyBullet (call while joints are at zero)."""
    model = handle.model
    try:
        names = [model.profile.vendor_name(f"left_{j}") for j in ("hip_pitch", "knee")]
        names.append(model.profile.vendor_name("left_ankle_pitch"))
    except KeyError:
        return None
    base_z = pb.getBasePositionAndOrientation(handle.body, physicsClientId=client)[0][2]
    hip, knee, ankle = (
        pb.getLinkState(handle.body, handle.joint_index[n], physicsClientId=client)[4][2]
        for n in names
    )
    sole = base_z - model.base_height_m
    return LegGeometry(base_z - hip, hip - knee, knee - ankle, ankle - sole)


class EmulatedRobot:
    """A robot doing its task in the emulator's world (see the module docstring)."""

    def __init__(self, handle: RobotHandle, motion: RobotMotion, client: int) -> None:
        self.handle = handle
        self.motion = motion
        self.client = client
        body = handle.body
        self.motors = [handle.joint_index[j.name] for j in motion.joints]
        self.forces = [
            j.effort_limit if math.isfinite(j.effort_limit) else 100.0 for j in motion.joints
        ]
        self._gains = ([POSITION_GAIN] * len(self.motors), [VELOCITY_GAIN] * len(self.motors))
        profile = handle.model.profile
        self.profile_index = [handle.joint_index[n] for n in profile.joint_names]
        self._target_of_profile = np.array(
            [motion.index_of.get(n, -1) for n in profile.joint_names], dtype=np.intp
        )
        self.spherical = {
            handle.joint_index[j.name] for j in handle.model.joints if j.kind == "spherical"
        }
        if self.spherical:  # hold an external model's ball joints upright
            pb.setJointMotorControlMultiDofArray(
                body,
                sorted(self.spherical),
                pb.POSITION_CONTROL,
                targetPositions=[[0.0, 0.0, 0.0, 1.0]] * len(self.spherical),
                forces=[[SPHERICAL_HOLD_N_M] * 3] * len(self.spherical),
                physicsClientId=client,
            )
        mass = sum(
            pb.getDynamicsInfo(body, link, physicsClientId=client)[0]
            for link in range(-1, pb.getNumJoints(body, physicsClientId=client))
        )
        self.weight_n = mass * GRAVITY_M_S2
        self.last = motion.at(0.0)
        self._previous_targets = self.last.joint_targets
        for index, value in zip(self.motors, self.last.joint_targets.tolist(), strict=True):
            pb.resetJointState(body, index, value, 0.0, physicsClientId=client)
        position, orientation = self.pelvis_pose(self.last)
        self._pivot, self._orientation = position, orientation
        self._pivot_velocity: Vec3 = (0.0, 0.0, 0.0)
        self.constraint: int | None = pb.createConstraint(
            body,
            -1,
            -1,
            -1,
            pb.JOINT_FIXED,
            (0.0, 0.0, 0.0),
            (0.0, 0.0, 0.0),
            position,
            childFrameOrientation=orientation,
            physicsClientId=client,
        )
        self.wrist: tuple[int, float, Vec3] | None = None  # joint, full-load torque, axis
        wrist = motion.wrist_load_joint() if motion.task == "torque_wrench" else None
        if wrist is not None:
            index = self.motors[wrist[0]]
            axis = pb.getJointInfo(body, index, physicsClientId=client)[13]
            self.wrist = (index, wrist[1], (float(axis[0]), float(axis[1]), float(axis[2])))
        self._wrist_torque_n_m = 0.0
        self.override: dict[int, float] | None = None
        self._override_since_s = 0.0
        self._paused_s = 0.0
        self._held: MotionTarget | None = None
        self._blend_from: tuple[MotionTarget, float, float] | None = None  # from, since, for
        self.plan_run: PlanRun | None = None  # a dispatched plan being followed
        self.fallen_injected = False
        self._nominal_forces = list(self.forces)
        self._shove_until_s = -1.0
        self._velocity_prev: Vec3 = (0.0, 0.0, 0.0)
        self._velocity_now: Vec3 = (0.0, 0.0, 0.0)
        # the task loop's own clock: real time until a lesson slows the robot to `_pace`
        self._pace = 1.0
        self._pace_since_s = 0.0
        self._clock_at_pace_since_s = 0.0
        self._override_clock_s = 0.0
        self.lessons: list[str] = []
        """The lessons this robot acts on (ids, oldest first)."""

    # -- commanding -------------------------------------------------------------

    def pelvis_pose(self, target: MotionTarget) -> tuple[Vec3, Quat]:
        """Stabiliser pose for a target: pelvis position and orientation (x, y, z, w)."""
        model = self.handle.model
        orientation = _pelvis_orientation(model, target.pelvis_yaw_rad, target.pelvis_pitch_rad)
        return target.pelvis_xyz_m, orientation

    def command(self, t_s: float, dt_s: float) -> None:
        """Evaluate the motion at ``t_s`` and send it: one motor array call, the stabiliser."""
        target = self._target(t_s)
        self.last = target
        velocities = (target.joint_targets - self._previous_targets) / dt_s
        self._previous_targets = target.joint_targets
        pb.setJointMotorControlArray(
            self.handle.body,
            self.motors,
            pb.POSITION_CONTROL,
            targetPositions=target.joint_targets.tolist(),
            targetVelocities=velocities.tolist(),
            forces=self.forces,
            positionGains=self._gains[0],
            velocityGains=self._gains[1],
            physicsClientId=self.client,
        )
        position, orientation = self.pelvis_pose(target)
        before = self._pivot
        self._pivot_velocity = (
            (position[0] - before[0]) / dt_s,
            (position[1] - before[1]) / dt_s,
            (position[2] - before[2]) / dt_s,
        )
        self._pivot, self._orientation = position, orientation
        self._move_stabiliser(position)
        if self.wrist is not None:
            self._wrist_torque_n_m = target.wrist_load * self.wrist[1]

    def advance_stabiliser(self, since_command_s: float) -> None:
        """Between commands, carry the stabiliser on along the pelvis's planned velocity, so the
        pelvis moves smoothly instead of in steps at the control rate."""
        p, v = self._pivot, self._pivot_velocity
        if v != (0.0, 0.0, 0.0):
            dt = since_command_s
            self._move_stabiliser((p[0] + v[0] * dt, p[1] + v[1] * dt, p[2] + v[2] * dt))

    def _move_stabiliser(self, position: Vec3) -> None:
        if self.constraint is not None:
            pb.changeConstraint(
                self.constraint,
                jointChildPivot=position,
                jointChildFrameOrientation=self._orientation,
                maxForce=STABILISER_FORCE_G * self.weight_n,
                physicsClientId=self.client,
            )

    def _clock(self, t_s: float) -> float:
        """The task loop's clock at simulated time ``t_s``: simulated time until a lesson slows
        the robot, then ``pace`` seconds of the loop per second (continuous at the change)."""
        return self._clock_at_pace_since_s + (t_s - self._pace_since_s) * self._pace

    def take_lesson(self, lesson_id: str, pace: float, grip_force_scale: float, t_s: float) -> str:
        """Act on a lesson from now on: the task loop at ``pace`` of its speed (the slowest pace
        of all lessons taken holds), grippers at ``grip_force_scale`` times their force; what
        changed, in words."""
        if lesson_id in self.lessons:
            return "already applied"
        self.lessons.append(lesson_id)
        done = []
        if pace < self._pace:
            self._clock_at_pace_since_s = self._clock(t_s)
            self._pace_since_s = t_s
            self._pace = pace
            done.append(f"task loop at {pace:.0%} speed")
        gripper = self.motion.gripper_mask
        if grip_force_scale > 1.0 and gripper.any():
            self._nominal_forces = [
                f * grip_force_scale if g else f
                for f, g in zip(self._nominal_forces, gripper.tolist(), strict=True)
            ]
            if not self.fallen_injected:
                self.forces = list(self._nominal_forces)
            done.append(f"grip force x{grip_force_scale:g}")
        return ", ".join(done) or "nothing to change"

    def _target(self, t_s: float) -> MotionTarget:
        if self.plan_run is not None:
            if not self.plan_run.finished(t_s):
                return self.plan_run.target(t_s)
            self.end_plan(t_s)
        if self.override is not None and self._held is not None:
            held = self._held
            targets = held.joint_targets.copy()
            for index, value in self.override.items():
                targets[index] = value
            targets = np.clip(targets, self.motion.lower, self.motion.upper)
            forward, height = self.motion.pelvis_over_feet(targets, held.pelvis_pitch_rad)
            yaw = held.pelvis_yaw_rad
            x = held.feet_xy_m[0] + math.cos(yaw) * forward
            y = held.feet_xy_m[1] + math.sin(yaw) * forward
            return MotionTarget(
                targets, (x, y, height), yaw, held.pelvis_pitch_rad, held.feet_xy_m, 0.0, held.grip
            )
        target = self.motion.at(self._clock(t_s) - self._paused_s)
        if self._blend_from is not None:
            start, since, span_s = self._blend_from
            w = (t_s - since) / span_s
            if w >= 1.0:
                self._blend_from = None
            else:
                target = lerp_target(start, target, w * w * (3.0 - 2.0 * w))
        return target

    def task_cycle(self, t_s: float) -> int:
        """Which run of its task loop the robot is in at ``t_s`` (0: the first); the loop's
        clock stands still while it holds an override or follows a plan."""
        clock = self._clock(t_s)
        held_s = clock - self._override_clock_s if self.override is not None else 0.0
        return self.motion.cycle(clock - self._paused_s - held_s)

    def task_step(self, t_s: float) -> str:
        """The motion phase of its task loop at ``t_s`` (``dispatched`` while it follows a
        dispatched plan or holds an override)."""
        if self.override is not None:
            return "dispatched"
        clock = self._clock(t_s)
        return self.motion.phase(clock - self._paused_s)

    def apply_loads(self, t_s: float) -> None:
        """External loads for the coming step: the bolt on the wrench wrist, a falling shove."""
        body, client = self.handle.body, self.client
        if self.wrist is not None and self._wrist_torque_n_m > 0.0:
            # the bolt resists the working stroke (wrist yaw turning positive)
            torque = tuple(-self._wrist_torque_n_m * a for a in self.wrist[2])
            pb.applyExternalTorque(
                body, self.wrist[0], torque, pb.LINK_FRAME, physicsClientId=client
            )
        if t_s < self._shove_until_s:
            yaw = self.last.pelvis_yaw_rad
            push = FALL_SHOVE_G * self.weight_n
            force = (push * math.cos(yaw), push * math.sin(yaw), 0.0)
            where = pb.getBasePositionAndOrientation(body, physicsClientId=client)[0]
            pb.applyExternalForce(body, -1, force, where, pb.WORLD_FRAME, physicsClientId=client)

    def set_override(self, resolved: dict[int, float], t_s: float) -> None:
        """Hold still and drive these joints (keys: positions in the motion's joint order); the
        task clock pauses from ``t_s`` until :meth:`clear_override`."""
        if self.override is None:
            self.override = {}
            self._override_since_s = t_s
            self._override_clock_s = self._clock(t_s)
            self._held = self.last
            self._blend_from = None
        self.override.update(resolved)

    def clear_override(self, t_s: float, blend_s: float = RETURN_BLEND_S) -> None:
        """Back to the task loop where it paused, blending over ``blend_s``."""
        if self.override is None:
            return
        self._paused_s += self._clock(t_s) - self._override_clock_s
        self.override = None
        self._held = None
        self._blend_from = (self.last, t_s, blend_s)

    def start_plan(self, run: PlanRun, t_s: float) -> None:
        """Leave the task loop (its clock pauses) and follow a dispatched plan."""
        self.set_override({}, t_s)
        self.plan_run = run

    def end_plan(self, t_s: float) -> None:
        """Stop following the plan (at its end, or cut short); back to the loop, blending over
        the time a walk back at :data:`twin.emulator.follow.RETURN_SPEED_M_S` takes."""
        if self.plan_run is None:
            return
        self.plan_run = None
        loop = self.motion.at(self._override_clock_s - self._paused_s)
        span_s = blend_time_s(self.last, loop)
        self.clear_override(t_s, span_s)

    def inject_fall(self, t_s: float) -> None:
        """Release the stabiliser, cut the motors, shove the pelvis; it stays down."""
        if self.fallen_injected:
            return
        self.fallen_injected = True
        if self.constraint is not None:
            pb.removeConstraint(self.constraint, physicsClientId=self.client)
            self.constraint = None
        self.forces = [FALL_MOTOR_FRACTION * f for f in self.forces]
        self._shove_until_s = t_s + FALL_SHOVE_S

    def stand_up(self) -> None:
        """After a fall, helped back up (the hall crew's job): at its last planned pose, the
        stabiliser back on, motors at full strength."""
        if not self.fallen_injected:
            return
        body, client = self.handle.body, self.client
        self.forces = list(self._nominal_forces)
        for index, value in zip(self.motors, self.last.joint_targets.tolist(), strict=True):
            pb.resetJointState(body, index, value, 0.0, physicsClientId=client)
        position, orientation = self.pelvis_pose(self.last)
        pb.resetBasePositionAndOrientation(body, position, orientation, physicsClientId=client)
        pb.resetBaseVelocity(body, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), physicsClientId=client)
        self._pivot, self._orientation = position, orientation
        self._pivot_velocity = (0.0, 0.0, 0.0)
        self.constraint = pb.createConstraint(
            body, -1, -1, -1, pb.JOINT_FIXED, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), position,
            childFrameOrientation=orientation, physicsClientId=client,
        )  # fmt: skip
        self.fallen_injected = False
        self._shove_until_s = -1.0

    # -- reading ----------------------------------------------------------------

    def record_velocity(self) -> None:
        """Keep the base velocity after each physics step (the accelerometer differentiates)."""
        self._velocity_prev = self._velocity_now
        v = pb.getBaseVelocity(self.handle.body, physicsClientId=self.client)[0]
        self._velocity_now = (v[0], v[1], v[2])

    def acceleration(self, dt_s: float) -> Vec3:
        """Base acceleration over the last physics step plus the gravity reaction (world)."""
        now, before = self._velocity_now, self._velocity_prev
        return (
            (now[0] - before[0]) / dt_s,
            (now[1] - before[1]) / dt_s,
            (now[2] - before[2]) / dt_s + GRAVITY_M_S2,
        )

    def joint_state(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Positions, velocities and applied motor efforts in the vendor's wire order."""
        body, client = self.handle.body, self.client
        states = pb.getJointStates(body, self.profile_index, physicsClientId=client)
        if not self.spherical:
            array = np.array([(s[0], s[1], s[3]) for s in states], dtype=np.float64)
            return array[:, 0].copy(), array[:, 1].copy(), array[:, 2].copy()
        count = len(self.profile_index)
        positions, velocities, efforts = np.zeros(count), np.zeros(count), np.zeros(count)
        for i, (index, state) in enumerate(zip(self.profile_index, states, strict=True)):
            if index in self.spherical:
                quat, omega, torque = pb.getJointStateMultiDof(body, index, physicsClientId=client)[
                    :3
                ]
                positions[i] = 2.0 * math.acos(min(1.0, abs(float(quat[3]))))
                velocities[i] = _norm(omega)
                efforts[i] = _norm(torque)
            else:
                positions[i], velocities[i], efforts[i] = state[0], state[1], state[3]
        return positions, velocities, efforts

    def targets_in_wire_order(self) -> FloatArray:
        """Current motor targets in the vendor's wire order (0 for spherical joints)."""
        index = self._target_of_profile
        values = self.last.joint_targets[np.maximum(index, 0)]
        out: FloatArray = np.where(index >= 0, values, 0.0)
        return out

    def is_fallen(self, position: Vec3, orientation: Quat) -> bool:
        """Pelvis below half its standing height, or tilted more than 60 degrees."""
        model = self.handle.model
        if position[2] < FALLEN_HEIGHT_FRACTION * model.base_height_m:
            return True
        bx, by, bz, bw = model.base_orientation_xyzw
        upright = quat_mul(orientation, (-bx, -by, -bz, bw))  # undo the model's own frame
        cos_tilt = 1.0 - 2.0 * (upright[0] ** 2 + upright[1] ** 2)
        return cos_tilt < math.cos(FALLEN_TILT_RAD)


class EmulatedCrane:
    """A crane following its waypoint loop with position motors capped at the rated speeds."""

    def __init__(self, handle: CraneHandle, client: int) -> None:
        crane = handle.geometry.crane
        self.body = handle.body
        self.client = client
        self.joints = [handle.joint_index[a] for a in ("bridge", "trolley", "hoist")]
        self.forces = [
            float(pb.getJointInfo(self.body, j, physicsClientId=client)[10]) for j in self.joints
        ]
        self.speeds_m_s = [crane.bridge.speed, crane.trolley.speed, crane.hoist.speed]
        self.rail_height_m = crane.rail_height
        self.plan = CranePlan(crane)

    def command(self, t_s: float) -> None:
        """Drive every axis towards the plan at ``t_s`` (speed capped by the motor itself)."""
        state = self.plan.at(t_s)
        for axis in range(3):
            position, velocity = state.position_m[axis], state.velocity_m_s[axis]
            if axis == 2:  # the hoist joint is the cable length, paid out downwards
                position, velocity = self.rail_height_m - position, -velocity
            pb.setJointMotorControl2(
                self.body,
                self.joints[axis],
                pb.POSITION_CONTROL,
                targetPosition=position,
                targetVelocity=velocity,
                force=self.forces[axis],
                positionGain=CRANE_POSITION_GAIN,
                velocityGain=1.0,
                maxVelocity=self.speeds_m_s[axis],
                physicsClientId=self.client,
            )

    def read(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """(bridge x, trolley y, hook height) in m and their velocities in m/s (hook: up > 0)."""
        states = pb.getJointStates(self.body, self.joints, physicsClientId=self.client)
        (b, vb), (t, vt), (c, vc) = ((float(s[0]), float(s[1])) for s in states)
        return (b, t, self.rail_height_m - c), (vb, vt, -vc)


def _norm(values: Any) -> float:
    return math.sqrt(sum(float(v) ** 2 for v in values))
