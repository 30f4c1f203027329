"""The preview's hall: a PyBullet world of the scene with one robot free to move.

Everything but the previewed robot is as the scene says: floor, hub, benches with their items
(loose ones dynamic), panels, cranes (driven along the task's crane path, or held at home), and
the other robots standing at their stations. Those stand still, so each is loaded from its URDF
with every joint made fixed and the links merged: one static rigid body of the same collision
shapes (about 30x cheaper to step than an articulated body holding still). The previewed robot
is loaded with a free base, its joints under position control, carried by a stabiliser (a
bounded fixed constraint whose frame follows the plan's pelvis pose).

Names follow :mod:`twin.world.world`: ``robot:K1-01/r_hand_link`` for the previewed robot's links,
``robot:T3-02`` for a standing robot, ``crane:C1/load``, ``bench:B1``, ``item:wrench-1``.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from robots import RobotModel, get_model
from robots.bullet import pb, quiet_stdout
from scenes.model import Scene
from sync.closing import Closing
from twin.preview.kinematics import heading_quaternion
from twin.preview.surroundings import Surroundings
from twin.world.crane import AXES
from twin.world.world import World

log = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]

SOLVER_ITERATIONS: Final = 10
STABILISER_FORCE_G: Final = 4.0
"""The stabiliser's force limit as a multiple of the robot's weight (N; the same in N*m)."""
_JOINT_TYPES = re.compile(r'type="(revolute|continuous|prismatic)"')


@dataclass(frozen=True)
class Other:
    """A body the previewed robot must keep clear of: its stable name and PyBullet id."""

    name: str
    body: int


class PreviewHall(Closing):
    """The world of one preview (see the module docstring). Close it, or use ``with``."""

    def __init__(
        self,
        scene: Scene,
        robot_id: str,
        start_xyz: Vec3,
        start_yaw_rad: float,
        start_pitch_rad: float,
        start_joints: dict[str, float],
        *,
        time_step_s: float = 1.0 / 240.0,
        surroundings: Surroundings | None = None,
    ) -> None:
        """``surroundings``: where the other robots and the cranes are (default: the scene's
        stations and the cranes' homes)."""
        self.scene = scene
        self.surroundings = surroundings or Surroundings.from_scene(scene)
        self.robot_id = robot_id
        bare = scene.model_copy(update={"robots": ()})
        self.world = World(bare, time_step_s=time_step_s, robots_fixed_base=True)
        self.client = self.world.client
        self._tmp = tempfile.TemporaryDirectory(prefix="hall-preview-")
        try:
            pb.setPhysicsEngineParameter(
                numSolverIterations=SOLVER_ITERATIONS,
                deterministicOverlappingPairs=1,
                physicsClientId=self.client,
            )
            self.others: list[Other] = [
                Other(name, self.world.resolve(name).body)
                for name in self.world.body_names()
                if name != "floor"
            ]
            self.floor = self.world.resolve("floor").body
            for robot in scene.robots:
                if robot.id != robot_id:
                    self.others.append(Other(f"robot:{robot.id}", self._statue(robot.id)))
            for crane_id, (bridge, trolley, hoist) in self.surroundings.cranes.items():
                self.set_crane(crane_id, bridge, trolley, hoist)
            self.model: RobotModel = get_model(scene.robot(robot_id).model)
            self._load_robot(start_xyz, start_yaw_rad, start_pitch_rad, start_joints)
        except BaseException:
            self.close()
            raise

    # -- building -----------------------------------------------------------------------

    def _statue(self, robot_id: str) -> int:
        """A standing robot as one static body (joints fixed at zero, links merged), its pelvis
        where the surroundings say."""
        robot = self.scene.robot(robot_id)
        model = get_model(robot.model)
        path = Path(self._tmp.name) / f"{model.name}_static.urdf"
        if not path.exists():
            text = model.loadable_urdf.read_text(encoding="utf-8")
            path.write_text(_JOINT_TYPES.sub('type="fixed"', text), encoding="utf-8")
        position, orientation = self.surroundings.robots[robot_id]
        with quiet_stdout():
            body = pb.loadURDF(
                str(path),
                basePosition=position,
                baseOrientation=orientation,
                useFixedBase=True,
                flags=pb.URDF_MERGE_FIXED_LINKS,
                globalScaling=model.scale,
                physicsClientId=self.client,
            )
        return int(body)

    def _load_robot(self, xyz: Vec3, yaw: float, pitch: float, joints: dict[str, float]) -> None:
        model, client = self.model, self.client
        with quiet_stdout():
            self.body = int(
                pb.loadURDF(
                    str(model.loadable_urdf),
                    basePosition=xyz,
                    baseOrientation=heading_quaternion(model, yaw, pitch),
                    useFixedBase=False,
                    flags=pb.URDF_USE_INERTIA_FROM_FILE,
                    globalScaling=model.scale,
                    physicsClientId=client,
                )
            )
        self.joint_index: dict[str, int] = {}
        self.link_names: dict[int, str] = {-1: model.base_link}
        for i in range(pb.getNumJoints(self.body, physicsClientId=client)):
            info = pb.getJointInfo(self.body, i, physicsClientId=client)
            self.joint_index[info[1].decode()] = i
            self.link_names[i] = info[12].decode()
        self.motor_joints = [j for j in model.joints if j.kind != "spherical"]
        self.motors = [self.joint_index[j.name] for j in self.motor_joints]
        self.canonical = [model.profile.canonical_name(j.name) for j in self.motor_joints]
        for name, value in joints.items():
            index = self.joint_index[model.joint(name).name]
            pb.resetJointState(self.body, index, value, 0.0, physicsClientId=client)
        self.mass_kg = sum(
            pb.getDynamicsInfo(self.body, link, physicsClientId=client)[0]
            for link in range(-1, pb.getNumJoints(self.body, physicsClientId=client))
        )
        self.weight_n = self.mass_kg * 9.81
        self.offload_n = 0.0
        # the stabiliser: a fixed joint that carries the pelvis along the plan (its height
        # corrected so the lower sole stays on the floor, see the engine); the body's weight is
        # on it, not on the legs, so leg efforts are those of moving the legs
        self.constraint = pb.createConstraint(
            self.body, -1, -1, -1, pb.JOINT_FIXED, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), xyz,
            childFrameOrientation=heading_quaternion(model, yaw, pitch), physicsClientId=client,
        )  # fmt: skip
        pb.changeConstraint(
            self.constraint, maxForce=STABILISER_FORCE_G * self.weight_n, physicsClientId=client
        )

    # -- names --------------------------------------------------------------------------

    def link_name(self, link: int) -> str:
        """Stable name of one of the previewed robot's links."""
        return f"robot:{self.robot_id}/{self.link_names.get(link, str(link))}"

    def link_of(self, canonical_joint: str) -> int:
        """PyBullet link index of the link a joint moves."""
        return self.joint_index[self.model.joint(canonical_joint).name]

    def item_body(self, item_id: str) -> int:
        """The body of an item on a bench."""
        return self.world.resolve(f"item:{item_id}").body

    # -- driving ------------------------------------------------------------------------

    def carry(self, xyz: Vec3, yaw_rad: float, pitch_rad: float, share: float = 1.0) -> None:
        """Move the stabiliser's frame (where it pulls the pelvis to), with ``share`` of its
        force limit."""
        self.offload_n = 0.0
        pb.changeConstraint(
            self.constraint,
            jointChildPivot=xyz,
            jointChildFrameOrientation=heading_quaternion(self.model, yaw_rad, pitch_rad),
            maxForce=share * STABILISER_FORCE_G * self.weight_n,
            physicsClientId=self.client,
        )

    def offload(self, share: float) -> None:
        """Letting go: the stabiliser's constraint applies nothing, and ``share`` of the
        robot's weight is lifted straight up at its pelvis this step (a harness paying out:
        it pulls the body towards no pose, so the legs take the weight as it decreases)."""
        self.release()
        self.offload_n = share * self.weight_n
        position = pb.getBasePositionAndOrientation(self.body, physicsClientId=self.client)[0]
        pb.applyExternalForce(
            self.body, -1, (0.0, 0.0, self.offload_n), position, pb.WORLD_FRAME,
            physicsClientId=self.client,
        )  # fmt: skip

    def release(self) -> None:
        """The stabiliser lets go: no force until the next :meth:`carry`; its frame follows the
        pelvis so that taking hold again starts where the robot is."""
        position, orientation = pb.getBasePositionAndOrientation(
            self.body, physicsClientId=self.client
        )
        pb.changeConstraint(
            self.constraint,
            jointChildPivot=position,
            jointChildFrameOrientation=orientation,
            maxForce=0.0,
            physicsClientId=self.client,
        )

    def stabiliser_force_n(self) -> float:
        """Magnitude of the force the stabiliser applied in the last step (N): its constraint's,
        or what :meth:`offload` lifted."""
        state = pb.getConstraintState(self.constraint, physicsClientId=self.client)
        return math.sqrt(sum(float(v) ** 2 for v in state[:3])) + self.offload_n

    def set_crane(self, crane_id: str, bridge_m: float, trolley_m: float, hoist_m: float) -> None:
        """Put a crane's axes on its path (kinematically; the crane is far heavier)."""
        handle = self.world.crane(crane_id)
        values = {"bridge": bridge_m, "trolley": trolley_m, "hoist": hoist_m}
        for axis in AXES:
            value = values[axis]
            joint = handle.geometry.hoist_joint_from_height(value) if axis == "hoist" else value
            pb.resetJointState(
                handle.body, handle.joint_index[axis], joint, 0.0, physicsClientId=self.client
            )

    def step(self) -> None:
        """One physics step."""
        pb.stepSimulation(physicsClientId=self.client)

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Release the world and temporary files (idempotent)."""
        self.world.close()
        self._tmp.cleanup()
