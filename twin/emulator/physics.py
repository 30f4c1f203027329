"""The hall emulator's physics: a PyBullet hall standing in for the real one, robots at work.

:class:`EmulatedHall` builds its own world of a scene (a :class:`twin.world.world.World` with
free robot bases), perturbs it into "a slightly different reality" (robot link masses and
friction scaled by seeded random factors, :class:`Perturbation`), and runs every robot's station
task on a loop (:mod:`twin.emulator.motion`) and every crane round its waypoints
(:mod:`twin.emulator.plans`).

How a robot is moved: its base is free, but a *stabilised base* carries it -- a soft fixed
constraint from the pelvis to the world whose child frame follows the planned pelvis pose (lane,
height from the leg angles, heading, lean) with a bounded force (a few times the robot's
weight). Joints are driven by their own position motors (each joint's effort limit as the force)
towards the motion targets, the targets' rate of change fed forward as velocity. Feet are not
planned contact by contact, so they may slide a little on the floor; that is accepted for an
emulator. :meth:`EmulatedHall.inject_fall` removes the constraint, cuts the motors and shoves
the pelvis: the robot really falls under gravity, and stays down.

Cost (see :func:`measure_step_cost`): motion targets, motor commands, the stabilisers and the
cranes are updated at :data:`CONTROL_RATE_HZ` (every second physics step at 240 Hz), one
``setJointMotorControlArray`` call per robot, targets computed with numpy over all joints; the
solver runs :data:`SOLVER_ITERATIONS` iterations (PyBullet's default is 50).

Samples are SI in the vendor's joint order (``model.profile.joint_names``): rad (m for prismatic
joints), rad/s, N*m; a spherical joint (external models only) reports its rotation angle and the
magnitudes of its angular velocity and motor torque.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from robots.bullet import pb
from scenes.model import Scene, TaskKind
from sync.closing import Closing
from twin.emulator.actors import FALL_SHOVE_S, EmulatedCrane, EmulatedRobot, leg_geometry
from twin.emulator.follow import PlanRun
from twin.emulator.motion import (
    FloatArray,
    MotionTarget,
    RobotMotion,
    missing_joints,
    quat_mul,
    task_period_s,
)
from twin.emulator.plans import plan_walks
from twin.plan.model import TaskPlan
from twin.world.world import UnknownNameError, World

log = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]

CONTROL_RATE_HZ: Final = 120.0
SOLVER_ITERATIONS: Final = 10
MOVING_SPEED_M_S: Final = 1e-3
_MIN_SCALE: Final = 0.3


@dataclass(frozen=True)
class Perturbation:
    """How the emulated reality differs from the nominal models: each robot link's mass (and
    inertia) times N(1, ``mass_scale_sigma``) and its friction times N(1,
    ``friction_scale_sigma``), drawn from the hall's seed (factors kept >= 0.3)."""

    mass_scale_sigma: float = 0.05
    friction_scale_sigma: float = 0.1

    @staticmethod
    def none() -> Perturbation:
        """No perturbation: the nominal models exactly."""
        return Perturbation(0.0, 0.0)


@dataclass(frozen=True)
class RobotSample:
    """One robot's true state at ``sim_time_s``, SI units, joints in the vendor's wire order.

    ``efforts`` are the motors' applied torques (N*m; N for prismatic joints). The IMU values
    ``base_angular_velocity_rad_s`` (gyro) and ``base_linear_acceleration_m_s2`` (accelerometer:
    the base velocity's finite difference over the last physics step plus the gravity reaction,
    so about (0, 0, +9.81) at rest) are in the WORLD frame. ``fallen``: pelvis below half its
    standing height, or tilted more than 60 degrees.
    """

    robot_id: str
    sim_time_s: float
    positions: FloatArray
    velocities: FloatArray
    efforts: FloatArray
    base_position_m: Vec3
    base_orientation_xyzw: Quat
    base_linear_velocity_m_s: Vec3
    base_angular_velocity_rad_s: Vec3
    base_linear_acceleration_m_s2: Vec3
    fallen: bool


@dataclass(frozen=True)
class CraneSample:
    """A crane's axes at ``sim_time_s``: bridge x, trolley y, hook height (m, hall frame, as
    :mod:`twin.world.crane`); ``moving`` when any axis moves faster than 1 mm/s."""

    crane_id: str
    sim_time_s: float
    bridge_m: float
    trolley_m: float
    hoist_m: float
    moving: bool


class EmulatedHall(Closing):
    """A scene's hall emulated in its own PyBullet world (see the module docstring).

    Also usable as a context manager. ``world`` is the underlying :class:`twin.world.world.World`.
    """

    def __init__(
        self,
        scene: Scene,
        *,
        seed: int = 0,
        perturbation: Perturbation = Perturbation(),
        time_step_s: float = 1.0 / 240.0,
    ) -> None:
        self.scene = scene
        self.seed = seed
        self.perturbation = perturbation
        self.time_step_s = time_step_s
        self.world = World(scene, time_step_s=time_step_s, robots_fixed_base=False)
        self._client = self.world.client
        self._tick = 0
        self._divisor = max(1, round(1.0 / (CONTROL_RATE_HZ * time_step_s)))
        self._robots: dict[str, EmulatedRobot] = {}
        self._cranes: dict[str, EmulatedCrane] = {}
        try:
            pb.setPhysicsEngineParameter(
                numSolverIterations=SOLVER_ITERATIONS,
                deterministicOverlappingPairs=1,
                physicsClientId=self._client,
            )
            walks = plan_walks(scene)
            for robot in scene.robots:
                handle = self.world.robot(robot.id)
                station = scene.station(robot.station)
                walk = walks.get(robot.id)
                rng = np.random.default_rng([seed, zlib.crc32(robot.id.encode())])
                task: TaskKind = robot.task
                missing = missing_joints(handle.model, task)
                if missing:
                    log.warning(
                        "%s (%s): %s needs the canonical joints %s, which its package does not "
                        "map; it idles",
                        robot.id,
                        handle.model.name,
                        task,
                        ", ".join(missing),
                    )
                    task, walk = "idle", None
                motion = RobotMotion(
                    handle.model,
                    task,
                    (station.pose.xyz[0], station.pose.xyz[1]),
                    station.pose.yaw_rad,
                    leg_geometry(handle, self._client),
                    walk=walk,
                    phase_offset_s=float(rng.uniform(0.0, task_period_s(task, walk))),
                )
                self._robots[robot.id] = EmulatedRobot(handle, motion, self._client)
            self._perturb()
            for crane_id, crane in self.world.cranes.items():
                self._cranes[crane_id] = EmulatedCrane(crane, self._client)
            self._control()
        except BaseException:
            self.world.close()
            raise

    def _perturb(self) -> None:
        mass_sigma = self.perturbation.mass_scale_sigma
        friction_sigma = self.perturbation.friction_scale_sigma
        if mass_sigma == 0.0 and friction_sigma == 0.0:
            return
        rng = np.random.default_rng(self.seed)
        client = self._client
        for robot in self._robots.values():
            body = robot.handle.body
            for link in range(-1, pb.getNumJoints(body, physicsClientId=client)):
                mass_scale = max(_MIN_SCALE, 1.0 + mass_sigma * float(rng.standard_normal()))
                friction_scale = max(
                    _MIN_SCALE, 1.0 + friction_sigma * float(rng.standard_normal())
                )
                info = pb.getDynamicsInfo(body, link, physicsClientId=client)
                pb.changeDynamics(
                    body,
                    link,
                    mass=info[0] * mass_scale,
                    localInertiaDiagonal=[v * mass_scale for v in info[2]],
                    lateralFriction=info[1] * friction_scale,
                    physicsClientId=client,
                )

    # -- lifetime ---------------------------------------------------------------

    def close(self) -> None:
        """Release the PyBullet world (idempotent)."""
        self.world.close()

    # -- stepping ---------------------------------------------------------------

    @property
    def sim_time_s(self) -> float:
        """Simulated time since the start (s)."""
        return self._tick * self.time_step_s

    @property
    def robot_ids(self) -> tuple[str, ...]:
        """Every emulated robot, in scene order."""
        return tuple(self._robots)

    @property
    def crane_ids(self) -> tuple[str, ...]:
        """Every emulated crane, in scene order."""
        return tuple(self._cranes)

    def step(self, steps: int = 1) -> None:
        """Advance ``steps`` physics steps: motion targets -> motors -> stabiliser -> crane ->
        ``stepSimulation`` (the first four at :data:`CONTROL_RATE_HZ`)."""
        client = self._client
        robots = list(self._robots.values())
        for _ in range(steps):
            phase = self._tick % self._divisor
            if phase == 0 and self._tick > 0:
                self._control()
            t = self.sim_time_s
            for robot in robots:
                if phase:
                    robot.advance_stabiliser(phase * self.time_step_s)
                robot.apply_loads(t)
            pb.stepSimulation(physicsClientId=client)
            self._tick += 1
            for robot in robots:
                robot.record_velocity()

    def _control(self) -> None:
        t = self.sim_time_s
        dt = self._divisor * self.time_step_s
        for robot in self._robots.values():
            robot.command(t, dt)
        for crane in self._cranes.values():
            crane.command(t)

    # -- reading ----------------------------------------------------------------

    def _robot(self, robot_id: str) -> EmulatedRobot:
        try:
            return self._robots[robot_id]
        except KeyError:
            raise UnknownNameError(
                f"no robot {robot_id!r} (robots: {', '.join(self._robots) or 'none'})"
            ) from None

    def sample(self, robot_id: str) -> RobotSample:
        """The robot's true state now (see :class:`RobotSample`)."""
        robot = self._robot(robot_id)
        body, client = robot.handle.body, self._client
        positions, velocities, efforts = robot.joint_state()
        position, orientation = pb.getBasePositionAndOrientation(body, physicsClientId=client)
        linear, angular = pb.getBaseVelocity(body, physicsClientId=client)
        base = (float(position[0]), float(position[1]), float(position[2]))
        quat = (
            float(orientation[0]),
            float(orientation[1]),
            float(orientation[2]),
            float(orientation[3]),
        )
        return RobotSample(
            robot_id=robot_id,
            sim_time_s=self.sim_time_s,
            positions=positions,
            velocities=velocities,
            efforts=efforts,
            base_position_m=base,
            base_orientation_xyzw=quat,
            base_linear_velocity_m_s=(float(linear[0]), float(linear[1]), float(linear[2])),
            base_angular_velocity_rad_s=(float(angular[0]), float(angular[1]), float(angular[2])),
            base_linear_acceleration_m_s2=robot.acceleration(self.time_step_s),
            fallen=robot.is_fallen(base, quat),
        )

    def task_cycle(self, robot_id: str) -> int:
        """Which run of its task loop the robot is in now (see :meth:`EmulatedRobot.task_cycle`)."""
        return self._robot(robot_id).task_cycle(self.sim_time_s)

    def task_step(self, robot_id: str) -> str:
        """The motion phase the robot is in now (see :meth:`EmulatedRobot.task_step`)."""
        return self._robot(robot_id).task_step(self.sim_time_s)

    def take_lesson(
        self, robot_id: str, lesson_id: str, pace: float, grip_force_scale: float
    ) -> str:
        """The robot acts on a lesson from now on (:meth:`EmulatedRobot.take_lesson`): what
        changed, in words."""
        return self._robot(robot_id).take_lesson(lesson_id, pace, grip_force_scale, self.sim_time_s)

    def lessons(self, robot_id: str) -> tuple[str, ...]:
        """The lessons the robot acts on (ids, oldest first)."""
        return tuple(self._robot(robot_id).lessons)

    def joint_targets(self, robot_id: str) -> FloatArray:
        """The targets the robot's motors track now, in the vendor's wire order (SI; spherical
        joints, which are only held upright, report 0)."""
        return self._robot(robot_id).targets_in_wire_order()

    def motion_target(self, robot_id: str) -> MotionTarget:
        """What the robot is commanded to do now: joint targets (in
        :attr:`RobotMotion.joints` order), pelvis pose, the torque-wrench wrist load."""
        return self._robot(robot_id).last

    def link_masses_kg(self, robot_id: str) -> FloatArray:
        """Mass of every link of a robot (base first) as this hall's reality has it."""
        body = self._robot(robot_id).handle.body
        client = self._client
        links = range(-1, pb.getNumJoints(body, physicsClientId=client))
        return np.array([pb.getDynamicsInfo(body, i, physicsClientId=client)[0] for i in links])

    def crane_sample(self, crane_id: str) -> CraneSample:
        """A crane's axes now (see :class:`CraneSample`)."""
        try:
            crane = self._cranes[crane_id]
        except KeyError:
            raise UnknownNameError(
                f"no crane {crane_id!r} (cranes: {', '.join(self._cranes) or 'none'})"
            ) from None
        (bridge, trolley, hook), velocities = crane.read()
        moving = any(abs(v) > MOVING_SPEED_M_S for v in velocities)
        return CraneSample(crane_id, self.sim_time_s, bridge, trolley, hook, moving)

    # -- commanding -------------------------------------------------------------

    def inject_fall(self, robot_id: str) -> None:
        """Make the robot really fall: release its stabiliser, cut its motors to a few percent of
        their strength and shove its pelvis forward; it is down within about a second and stays
        down (calling again does nothing)."""
        robot = self._robot(robot_id)
        if not robot.fallen_injected:
            log.info("robot %s: fall injected at t=%.3f s", robot_id, self.sim_time_s)
        robot.inject_fall(self.sim_time_s)

    def set_joint_targets(self, robot_id: str, targets: Mapping[str, float]) -> None:
        """Override the task loop: hold the robot where it is (its task clock pauses) and drive
        the named joints (canonical or vendor names; rad, m for prismatic joints) to these
        targets, clipped into their limits; other joints keep their current targets and the
        pelvis follows the legs over the feet. Later calls add to the override, until
        :meth:`clear_joint_targets`.

        Raises:
            UnknownNameError: a joint the robot lacks (nothing is applied).
            ValueError: a non-finite target (nothing is applied).
        """
        robot = self._robot(robot_id)
        profile = robot.handle.model.profile
        resolved: dict[int, float] = {}
        for name, value in targets.items():
            try:
                index = robot.motion.index_of[profile.vendor_name(name)]
            except KeyError:
                raise UnknownNameError(f"robot:{robot_id} has no joint {name!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"robot:{robot_id}/{name}: non-finite target {value!r}")
            resolved[index] = float(value)
        robot.set_override(resolved, self.sim_time_s)

    def restore(
        self,
        robot_id: str,
        joint_positions: Mapping[str, float],
        base_position_m: Vec3,
        base_orientation_xyzw: Quat,
        *,
        task_time_s: float = 0.0,
        fallen: bool = False,
    ) -> None:
        """Put a robot into a recorded state, at rest: joints (canonical or vendor names; rad,
        m for prismatic joints; names the robot lacks are ignored), base pose, and the
        stabiliser there; the task loop goes on from ``task_time_s``, blending from the
        recorded state over half a second. ``fallen``: stabiliser released and motors cut, as
        after :meth:`inject_fall` but without the shove."""
        robot = self._robot(robot_id)
        handle, client, now = robot.handle, self._client, self.sim_time_s
        targets = robot.last.joint_targets.copy()
        for name, value in joint_positions.items():
            try:
                vendor = handle.model.profile.vendor_name(name)
                index = handle.joint_index[vendor]
            except KeyError:
                continue
            if index in robot.spherical:
                continue
            pb.resetJointState(handle.body, index, float(value), 0.0, physicsClientId=client)
            if vendor in robot.motion.index_of:
                targets[robot.motion.index_of[vendor]] = float(value)
        pb.resetBasePositionAndOrientation(
            handle.body, base_position_m, base_orientation_xyzw, physicsClientId=client
        )
        pb.resetBaseVelocity(handle.body, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), physicsClientId=client)
        bx, by, bz, bw = handle.model.base_orientation_xyzw
        x, y, z, w = quat_mul(base_orientation_xyzw, (-bx, -by, -bz, bw))
        yaw = math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
        pitch = math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))
        plan = robot.motion.at(task_time_s)
        # the task clock: paused "for" -task_time_s, then back with a blend from the record
        robot.set_override({}, now + task_time_s)
        robot.last = MotionTarget(
            targets, base_position_m, yaw, pitch, plan.feet_xy_m, plan.wrist_load
        )
        robot.clear_override(now)
        dt = self._divisor * self.time_step_s
        for _ in range(2):  # twice: the stabiliser's planned velocity starts at zero
            robot.command(now, dt)
        if fallen:
            robot.inject_fall(now - FALL_SHOVE_S)  # released and limp, shove already over

    def stand_up(self, robot_id: str) -> None:
        """Help a fallen robot back up at its planned pose (nothing if it is standing)."""
        self._robot(robot_id).stand_up()

    def follow_plan(self, robot_id: str, plan: TaskPlan) -> None:
        """Leave the task loop and follow a dispatched plan (:mod:`twin.emulator.follow`);
        back to the loop at its end. The plan must be checked already (known joints)."""
        robot = self._robot(robot_id)
        robot.start_plan(PlanRun(plan, robot.motion, robot.last, self.sim_time_s), self.sim_time_s)

    def following(self, robot_id: str) -> bool:
        """Whether the robot is still following a dispatched plan."""
        robot = self._robot(robot_id)
        return robot.plan_run is not None and not robot.plan_run.finished(self.sim_time_s)

    def stop_plan(self, robot_id: str) -> None:
        """Cut a dispatched plan short (back to the loop); nothing if none runs."""
        self._robot(robot_id).end_plan(self.sim_time_s)

    def clear_joint_targets(self, robot_id: str) -> None:
        """Return the robot to its task loop where it paused, blending back over half a second
        (nothing happens when nothing is overridden)."""
        self._robot(robot_id).clear_override(self.sim_time_s)


def measure_step_cost(
    scene: Scene, steps: int = 2400, *, warmup_steps: int = 240
) -> dict[str, Any]:
    """Time :meth:`EmulatedHall.step` for ``scene``: wall time of each single step after a
    warm-up, in ms.

    Returns ``steps``, ``median_ms``, ``mean_ms``, ``p95_ms``, ``max_ms``, ``time_step_ms`` (the
    real-time budget of one step), ``realtime_factor`` (simulated over wall time),
    ``control_rate_hz``, ``solver_iterations`` and the scene's ``robots`` and ``cranes`` counts.
    """
    with EmulatedHall(scene) as hall:
        hall.step(warmup_steps)
        times: list[float] = []
        started = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            hall.step()
            times.append(time.perf_counter() - t0)
        wall = time.perf_counter() - started
        budget = hall.time_step_s
    times.sort()
    return {
        "steps": steps,
        "median_ms": round(statistics.median(times) * 1e3, 4),
        "mean_ms": round(statistics.fmean(times) * 1e3, 4),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))] * 1e3, 4),
        "max_ms": round(times[-1] * 1e3, 4),
        "time_step_ms": round(budget * 1e3, 4),
        "realtime_factor": round(steps * budget / wall, 3),
        "control_rate_hz": CONTROL_RATE_HZ,
        "solver_iterations": SOLVER_ITERATIONS,
        "robots": len(scene.robots),
        "cranes": len(scene.cranes),
    }
