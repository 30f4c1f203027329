"""The hall as a PyBullet world: built from a scene, with stable human-readable names.

Every body and link has a name a person can read and that stays the same from run
to run: ``floor``, ``hub:HUB``, ``bench:B2``, ``item:wrench-1``, ``panel:P1``,
``crane:C1`` (links ``crane:C1/bridge``, ``/trolley``, ``/hook``, ``/load``) and
``robot:K1-03`` (links by URDF name, ``robot:K1-03/pelvis``, or by canonical joint
name, ``robot:K1-03/left_knee`` meaning the link that joint moves).

The world always runs in PyBullet DIRECT mode with its own client, so several worlds
(the twin's, the emulator's, a preview's) live side by side in one process. SI units
and radians throughout; quaternions are PyBullet's (x, y, z, w).
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from robots import RobotModel, get_model
from robots.bullet import pb, quiet_stdout
from scenes.model import Scene
from sync.closing import Closing
from twin.world.bodies import build_static_bodies
from twin.world.crane import AXES, CraneGeometry, crane_urdf

log = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]

DEFAULT_TIME_STEP_S: Final = 1.0 / 240.0
GRAVITY_M_S2: Final = 9.81
_END_STOP_FORCE_N: Final = 1.0e6


class UnknownNameError(KeyError):
    """A body, link or joint name the world does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Ref:
    """A resolved name: a PyBullet body and optionally one of its links (-1 = base)."""

    name: str
    body: int
    link: int | None


@dataclass(frozen=True)
class Contact:
    """A contact or near-contact between two named bodies (negative distance = overlap)."""

    a: str
    b: str
    distance_m: float
    point_on_a_m: Vec3
    point_on_b_m: Vec3


@dataclass
class RobotHandle:
    """A robot in the world: its model and the PyBullet indices of its joints and links."""

    robot_id: str
    model: RobotModel
    body: int
    joint_index: dict[str, int]  # vendor (URDF) joint name -> PyBullet joint index
    link_index: dict[str, int]  # URDF link name -> PyBullet link index (-1 = base)


@dataclass
class CraneHandle:
    """A crane in the world: geometry and the joint indices of its three axes."""

    geometry: CraneGeometry
    body: int
    joint_index: dict[str, int]  # "bridge" / "trolley" / "hoist"
    link_index: dict[str, int]


class World(Closing):
    """A PyBullet world of one scene. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        scene: Scene,
        *,
        time_step_s: float = DEFAULT_TIME_STEP_S,
        robots_fixed_base: bool = True,
    ) -> None:
        """Build the world.

        ``robots_fixed_base`` keeps each robot's pelvis where it is put (the mirror's
        kinematic mode); False leaves the bases free for dynamics.
        """
        self.scene = scene
        self.time_step_s = time_step_s
        self.client = pb.connect(pb.DIRECT)
        self._tmp = tempfile.TemporaryDirectory(prefix="hall-twin-")
        self._bodies: dict[str, int] = {}
        self.robots: dict[str, RobotHandle] = {}
        self.cranes: dict[str, CraneHandle] = {}
        try:
            pb.setGravity(0.0, 0.0, -GRAVITY_M_S2, physicsClientId=self.client)
            pb.setTimeStep(time_step_s, physicsClientId=self.client)
            self._bodies.update(build_static_bodies(scene, self.client))
            for crane in scene.cranes:
                self._add_crane(CraneGeometry(crane, scene.floor.size[0]))
            for robot in scene.robots:
                self._add_robot(robot.id, get_model(robot.model), robot.station, robots_fixed_base)
        except BaseException:
            self.close()
            raise
        log.debug("world built: %d bodies", len(self._bodies))

    # -- lifetime ---------------------------------------------------------------

    def close(self) -> None:
        """Disconnect from PyBullet and remove temporary files (idempotent)."""
        if self.client >= 0:
            pb.disconnect(physicsClientId=self.client)
            self.client = -1
        self._tmp.cleanup()

    # -- building ---------------------------------------------------------------

    def _add_crane(self, geometry: CraneGeometry) -> None:
        crane = geometry.crane
        path = Path(self._tmp.name) / f"crane_{crane.id}.urdf"
        path.write_text(crane_urdf(geometry), encoding="utf-8")
        with quiet_stdout():
            body = pb.loadURDF(
                str(path),
                useFixedBase=True,
                flags=pb.URDF_USE_INERTIA_FROM_FILE,
                physicsClientId=self.client,
            )
        joints, links = self._indices(body)
        handle = CraneHandle(geometry, body, {a: joints[a] for a in AXES}, links)
        self.cranes[crane.id] = handle
        self._bodies[f"crane:{crane.id}"] = body
        # hold every axis where it is put; motors off so reset positions stick. The limit
        # constraint's default force lets a 6 t bridge overshoot its end stop by ~0.1 m; a stiff
        # end stop keeps it within a millimetre.
        for axis in AXES:
            pb.changeDynamics(
                body,
                handle.joint_index[axis],
                jointLimitForce=_END_STOP_FORCE_N,
                physicsClientId=self.client,
            )
            pb.setJointMotorControl2(
                body,
                handle.joint_index[axis],
                pb.VELOCITY_CONTROL,
                force=0.0,
                physicsClientId=self.client,
            )
        self.set_crane(
            crane.id,
            bridge_m=crane.home.bridge,
            trolley_m=crane.home.trolley,
            hoist_m=crane.home.hoist,
        )

    def _add_robot(self, robot_id: str, model: RobotModel, station_id: str, fixed: bool) -> None:
        station = self.scene.station(station_id)
        x, y, _ = station.pose.xyz
        with quiet_stdout():  # the URDF importer printf()s its warnings
            body = pb.loadURDF(
                str(model.loadable_urdf),
                basePosition=(x, y, station.pose.xyz[2] + model.base_height_m),
                baseOrientation=self._heading(station.pose.yaw_rad, model),
                useFixedBase=fixed,
                flags=pb.URDF_USE_INERTIA_FROM_FILE,
                globalScaling=model.scale,
                physicsClientId=self.client,
            )
        joints, links = self._indices(body)
        links[model.base_link] = -1
        self.robots[robot_id] = RobotHandle(robot_id, model, body, joints, links)
        self._bodies[f"robot:{robot_id}"] = body

    def _heading(self, yaw_rad: float, model: RobotModel) -> Quat:
        heading = pb.getQuaternionFromEuler((0.0, 0.0, yaw_rad))
        _, orientation = pb.multiplyTransforms(
            (0, 0, 0), heading, (0, 0, 0), model.base_orientation_xyzw, physicsClientId=self.client
        )
        return _quat(orientation)

    def _indices(self, body: int) -> tuple[dict[str, int], dict[str, int]]:
        joints: dict[str, int] = {}
        links: dict[str, int] = {}
        for index in range(pb.getNumJoints(body, physicsClientId=self.client)):
            info = pb.getJointInfo(body, index, physicsClientId=self.client)
            joints[info[1].decode()] = index
            links[info[12].decode()] = index
        return joints, links

    # -- names ------------------------------------------------------------------

    def body_names(self) -> list[str]:
        """Every named body, in build order."""
        return list(self._bodies)

    def resolve(self, name: str) -> Ref:
        """Resolve ``kind:id`` or ``kind:id/link`` to a body (and link)."""
        body_name, _, link_name = name.partition("/")
        if body_name not in self._bodies:
            raise UnknownNameError(f"no body {body_name!r} in the world (see World.body_names())")
        body = self._bodies[body_name]
        if not link_name:
            return Ref(name, body, None)
        kind, _, key = body_name.partition(":")
        links: Mapping[str, int] = {}
        if kind == "robot":
            handle = self.robots[key]
            links = handle.link_index
            if link_name not in links:
                with contextlib.suppress(KeyError):
                    link_name = handle.model.child_link_of(link_name)
        elif kind == "crane":
            links = self.cranes[key].link_index
        if link_name not in links:
            known = ", ".join(sorted(links)) or "none"
            raise UnknownNameError(f"{body_name} has no link {link_name!r} (links: {known})")
        return Ref(name, body, links[link_name])

    # -- robots -----------------------------------------------------------------

    def robot(self, robot_id: str) -> RobotHandle:
        """The robot with this id."""
        try:
            return self.robots[robot_id]
        except KeyError:
            raise UnknownNameError(
                f"no robot {robot_id!r} (robots: {', '.join(self.robots) or 'none'})"
            ) from None

    def set_joint_positions(
        self,
        robot_id: str,
        positions_rad: Mapping[str, float],
        velocities_rad_s: Mapping[str, float] | None = None,
    ) -> None:
        """Set joints by canonical or vendor name (rad, or m for prismatic joints).

        Unknown names and non-finite values are refused before anything is applied.
        Spherical joints are not set by this call (they take quaternions).
        """
        handle = self.robot(robot_id)
        resolved: list[tuple[int, float, float]] = []
        velocities = velocities_rad_s or {}
        for name, value in positions_rad.items():
            try:
                vendor = handle.model.joint(name).name
            except KeyError:
                raise UnknownNameError(f"robot:{robot_id} has no joint {name!r}") from None
            velocity = velocities.get(name, 0.0)
            if not (math.isfinite(value) and math.isfinite(velocity)):
                raise ValueError(f"robot:{robot_id}/{name}: non-finite value {value!r}")
            resolved.append((handle.joint_index[vendor], float(value), float(velocity)))
        if resolved:  # one call for all (a viewer poses 100 robots x 32 joints per frame)
            pb.resetJointStatesMultiDof(
                handle.body,
                [index for index, _, _ in resolved],
                [[value] for _, value, _ in resolved],
                targetVelocities=[[velocity] for _, _, velocity in resolved],
                physicsClientId=self.client,
            )

    def joint_positions(self, robot_id: str, *, canonical: bool = True) -> dict[str, float]:
        """Every 1-DOF joint's position, keyed by canonical name (vendor name where none)."""
        handle = self.robot(robot_id)
        out: dict[str, float] = {}
        for joint in handle.model.joints:
            if joint.kind == "spherical":
                continue
            state = pb.getJointState(
                handle.body, handle.joint_index[joint.name], physicsClientId=self.client
            )
            key = handle.model.profile.canonical_name(joint.name) if canonical else joint.name
            out[key] = float(state[0])
        return out

    def set_base_pose(
        self, robot_id: str, position_m: Sequence[float], orientation_xyzw: Sequence[float]
    ) -> None:
        """Put a robot's base (pelvis) at a position and orientation in the hall frame.

        Refused (ValueError, nothing moves): not 3 + 4 finite numbers, or an orientation
        that is not a unit quaternion (|q| off 1 by more than 1e-3).
        """
        handle = self.robot(robot_id)
        values = (*position_m, *orientation_xyzw)
        if (
            len(position_m) != 3
            or len(orientation_xyzw) != 4
            or not all(math.isfinite(v) for v in values)
        ):
            raise ValueError(
                f"robot:{robot_id}: base pose needs 3 finite coordinates and a quaternion"
            )
        norm = math.sqrt(sum(q * q for q in orientation_xyzw))
        if abs(norm - 1.0) > 1e-3:
            raise ValueError(f"robot:{robot_id}: orientation is not a unit quaternion ({norm:.4g})")
        pb.resetBasePositionAndOrientation(
            handle.body, position_m, orientation_xyzw, physicsClientId=self.client
        )

    def base_pose(self, robot_id: str) -> tuple[Vec3, Quat]:
        """A robot's base position (m) and orientation (x, y, z, w)."""
        position, orientation = pb.getBasePositionAndOrientation(
            self.robot(robot_id).body, physicsClientId=self.client
        )
        return _vec(position), _quat(orientation)

    # -- cranes -----------------------------------------------------------------

    def crane(self, crane_id: str) -> CraneHandle:
        """The crane with this id."""
        try:
            return self.cranes[crane_id]
        except KeyError:
            raise UnknownNameError(
                f"no crane {crane_id!r} (cranes: {', '.join(self.cranes) or 'none'})"
            ) from None

    def set_crane(
        self,
        crane_id: str,
        *,
        bridge_m: float | None = None,
        trolley_m: float | None = None,
        hoist_m: float | None = None,
    ) -> None:
        """Put crane axes at hall positions (bridge x, trolley y, hook height; m).

        A value outside its axis's travel raises :class:`~twin.world.crane.CraneLimitError`
        and nothing moves.
        """
        handle = self.crane(crane_id)
        wanted = {"bridge": bridge_m, "trolley": trolley_m, "hoist": hoist_m}
        for axis, value in wanted.items():
            if value is not None:
                handle.geometry.check(axis, value)
        for axis, value in wanted.items():
            if value is None:
                continue
            joint = handle.geometry.hoist_joint_from_height(value) if axis == "hoist" else value
            pb.resetJointState(
                handle.body, handle.joint_index[axis], joint, 0.0, physicsClientId=self.client
            )

    def drive_crane(self, crane_id: str, axis: str, velocity_m_s: float) -> None:
        """Drive one axis at a speed (clamped to its rated speed); physics enforces the limits.

        Positive hoist velocity raises the hook.
        """
        handle = self.crane(crane_id)
        if axis not in AXES:
            raise UnknownNameError(
                f"crane:{crane_id} has no axis {axis!r} (axes: {', '.join(AXES)})"
            )
        rated = getattr(handle.geometry.crane, axis).speed
        speed = max(-rated, min(rated, velocity_m_s))
        joint_speed = -speed if axis == "hoist" else speed
        info = pb.getJointInfo(handle.body, handle.joint_index[axis], physicsClientId=self.client)
        pb.setJointMotorControl2(
            handle.body,
            handle.joint_index[axis],
            pb.VELOCITY_CONTROL,
            targetVelocity=joint_speed,
            force=float(info[10]),
            physicsClientId=self.client,
        )

    def crane_positions(self, crane_id: str) -> dict[str, float]:
        """Current bridge x, trolley y and hook height (m, hall frame)."""
        handle = self.crane(crane_id)
        out: dict[str, float] = {}
        for axis in AXES:
            value = pb.getJointState(
                handle.body, handle.joint_index[axis], physicsClientId=self.client
            )[0]
            out[axis] = handle.geometry.height_from_hoist_joint(value) if axis == "hoist" else value
        return out

    # -- geometry queries -------------------------------------------------------

    def link_pose(self, name: str) -> tuple[Vec3, Quat]:
        """World pose of a named body's base or link (the link frame, not its centre of mass)."""
        ref = self.resolve(name)
        if ref.link is None or ref.link == -1:
            position, orientation = pb.getBasePositionAndOrientation(
                ref.body, physicsClientId=self.client
            )
        else:
            state = pb.getLinkState(
                ref.body, ref.link, computeForwardKinematics=True, physicsClientId=self.client
            )
            position, orientation = state[4], state[5]
        return _vec(position), _quat(orientation)

    def link_poses(self, robot_id: str) -> dict[str, tuple[Vec3, Quat]]:
        """World pose of every link of a robot, keyed by URDF link name."""
        handle = self.robot(robot_id)
        return {link: self.link_pose(f"robot:{robot_id}/{link}") for link in handle.link_index}

    def contacts(self, a: str, b: str, *, margin_m: float = 0.0) -> list[Contact]:
        """Points where ``a`` and ``b`` touch or overlap (closer than ``margin_m``).

        Works for any pair, static ones included, from geometry alone: no step needed.
        """
        return list(self._closest(a, b, margin_m))

    def min_distance(self, a: str, b: str, *, max_distance_m: float = 10.0) -> float | None:
        """Smallest distance between two named bodies or links (m; negative when overlapping).

        None when they are farther apart than ``max_distance_m``.
        """
        distances = [c.distance_m for c in self._closest(a, b, max_distance_m)]
        return min(distances) if distances else None

    def _closest(self, a: str, b: str, distance_m: float) -> Iterator[Contact]:
        ref_a, ref_b = self.resolve(a), self.resolve(b)
        kwargs: dict[str, int] = {}
        if ref_a.link is not None:
            kwargs["linkIndexA"] = ref_a.link
        if ref_b.link is not None:
            kwargs["linkIndexB"] = ref_b.link
        points = pb.getClosestPoints(
            ref_a.body, ref_b.body, distance_m, physicsClientId=self.client, **kwargs
        )
        for point in points or ():
            yield Contact(
                a=self._link_name(ref_a, int(point[3])),
                b=self._link_name(ref_b, int(point[4])),
                distance_m=float(point[8]),
                point_on_a_m=_vec(point[5]),
                point_on_b_m=_vec(point[6]),
            )

    def _link_name(self, ref: Ref, link: int) -> str:
        body_name = ref.name.partition("/")[0]
        kind, _, key = body_name.partition(":")
        index: Mapping[str, int] = {}
        if kind == "robot":
            index = self.robots[key].link_index
        elif kind == "crane":
            index = self.cranes[key].link_index
        for link_name, link_index in index.items():
            if link_index == link:
                return f"{body_name}/{link_name}"
        return body_name

    # -- physics ----------------------------------------------------------------

    def step(self, steps: int = 1) -> None:
        """Advance physics by ``steps`` fixed time steps."""
        for _ in range(steps):
            pb.stepSimulation(physicsClientId=self.client)


def _vec(values: Sequence[float]) -> Vec3:
    return (float(values[0]), float(values[1]), float(values[2]))


def _quat(values: Sequence[float]) -> Quat:
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))
