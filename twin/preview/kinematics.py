"""A robot alone in its own kinematic PyBullet client: hand IK and where the pelvis sits.

The plan compiler solves hand targets here (damped least squares on the arm's joints only,
clamped into the joint limits less a margin, several seeds, best kept) so the plan holds joint
targets; the preview engine asks it how high the pelvis stands over flat feet for a pose. The
body is never stepped: joints are reset and forward kinematics read back. Hall frame, SI units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from robots import RobotModel
from robots.bullet import pb, quiet_stdout
from sync.closing import Closing

Vec3 = tuple[float, float, float]

LIMIT_MARGIN_RAD: Final = 0.05
"""IK keeps every joint this far inside its limits (joint-limit margins stay visible)."""
_DAMPING: Final = 0.05
_MAX_STEP_RAD: Final = 0.2
_ITERATIONS: Final = 150
_ARM: Final = (
    "shoulder_pitch",
    "shoulder_roll",
    "shoulder_yaw",
    "elbow",
    "wrist_yaw",
    "wrist_pitch",
    "wrist_roll",
)
_SEEDS: Final = (
    {"shoulder_pitch": -0.6, "shoulder_roll": 0.15, "elbow": -1.0},
    {"shoulder_pitch": -1.2, "shoulder_roll": 0.1, "elbow": -0.6},
    {"shoulder_pitch": -0.3, "shoulder_roll": 0.3, "elbow": -1.6},
    {"shoulder_pitch": -1.6, "shoulder_roll": 0.2, "elbow": -0.2},
)


@dataclass(frozen=True)
class IkSolution:
    """Arm joint targets (canonical names, rad) and how far the hand stays from the target."""

    joints_rad: dict[str, float]
    hand_m: Vec3
    residual_m: float


def hand_joint(model: RobotModel, side: str) -> str:
    """The last canonical joint of an arm (its child link is the hand)."""
    for name in (f"{side}_wrist_roll", f"{side}_wrist_pitch", f"{side}_wrist_yaw", f"{side}_elbow"):
        if _has(model, name):
            return name
    raise KeyError(f"{model.name} has no {side} arm")


def arm_joints(model: RobotModel, side: str) -> list[str]:
    """Canonical names of one arm's joints the model has, shoulder to wrist."""
    return [f"{side}_{j}" for j in _ARM if _has(model, f"{side}_{j}")]


def _has(model: RobotModel, name: str) -> bool:
    try:
        model.joint(name)
    except KeyError:
        return False
    return True


def heading_quaternion(
    model: RobotModel, yaw_rad: float, pitch_rad: float = 0.0
) -> tuple[float, float, float, float]:
    """Base orientation (x, y, z, w) for a heading and a forward lean (about the body's Y after
    the heading), the model's own frame applied."""
    lean = pb.getQuaternionFromEuler((0.0, pitch_rad, yaw_rad))  # yaw, then pitch in the body
    _, q = pb.multiplyTransforms((0, 0, 0), lean, (0, 0, 0), model.base_orientation_xyzw)
    return (float(q[0]), float(q[1]), float(q[2]), float(q[3]))


class Kinematics(Closing):
    """One robot model in a private DIRECT client, fixed base. Close it (or use ``with``)."""

    def __init__(self, model: RobotModel) -> None:
        self.model = model
        self.client = pb.connect(pb.DIRECT)
        try:
            with quiet_stdout():
                self.body = pb.loadURDF(
                    str(model.loadable_urdf),
                    useFixedBase=True,
                    flags=pb.URDF_USE_INERTIA_FROM_FILE,
                    globalScaling=model.scale,
                    physicsClientId=self.client,
                )
        except BaseException:
            pb.disconnect(physicsClientId=self.client)
            raise
        self.index: dict[str, int] = {}
        self.movable: list[int] = []  # PyBullet indices of 1-DOF movable joints (Jacobian columns)
        for i in range(pb.getNumJoints(self.body, physicsClientId=self.client)):
            info = pb.getJointInfo(self.body, i, physicsClientId=self.client)
            self.index[info[1].decode()] = i
            if info[2] in (pb.JOINT_REVOLUTE, pb.JOINT_PRISMATIC):
                self.movable.append(i)
        self._feet = [
            self.index[model.joint(f"{side}_ankle_roll").name]
            for side in ("left", "right")
            if _has(model, f"{side}_ankle_roll")
        ] or [
            self.index[model.joint(f"{side}_ankle_pitch").name]
            for side in ("left", "right")
            if _has(model, f"{side}_ankle_pitch")
        ]

    @property
    def feet_links(self) -> list[int]:
        """PyBullet link indices of the feet (the ankle's last link), left first."""
        return list(self._feet)

    def close(self) -> None:
        """Disconnect (idempotent)."""
        if self.client >= 0:
            pb.disconnect(physicsClientId=self.client)
            self.client = -1

    # -- posing -------------------------------------------------------------------------

    def pose(
        self,
        joints_rad: Mapping[str, float],
        base_xyz: Sequence[float],
        yaw_rad: float,
        pitch_rad: float = 0.0,
    ) -> None:
        """Put the base at ``base_xyz`` heading ``yaw_rad`` leaning ``pitch_rad`` forward and
        set the named joints."""
        orientation = heading_quaternion(self.model, yaw_rad, pitch_rad)
        pb.resetBasePositionAndOrientation(
            self.body, base_xyz, orientation, physicsClientId=self.client
        )
        for name, value in joints_rad.items():
            vendor = self.model.joint(name).name
            pb.resetJointState(self.body, self.index[vendor], value, physicsClientId=self.client)

    def link_com(self, joint: str) -> Vec3:
        """World position of the centre of mass of the link a joint moves."""
        index = self.index[self.model.joint(joint).name]
        state = pb.getLinkState(
            self.body, index, computeForwardKinematics=True, physicsClientId=self.client
        )
        return (float(state[0][0]), float(state[0][1]), float(state[0][2]))

    def depth_below_com_m(self, joint: str) -> float:
        """How far the collision shape of the link ``joint`` moves reaches below that link's
        centre of mass, in the current pose (m; PyBullet's bounding box)."""
        index = self.index[self.model.joint(joint).name]
        lo, _ = pb.getAABB(self.body, index, physicsClientId=self.client)
        return max(0.0, self.link_com(joint)[2] - float(lo[2]))

    def pelvis_over_feet(self, joints_rad: Mapping[str, float], pitch_rad: float = 0.0) -> Vec3:
        """(forward, left, height) of the pelvis frame over the point between the feet's soles,
        in the robot's heading frame, for a pose with the pelvis leaning ``pitch_rad`` and the
        lower foot on the floor (m)."""
        self.pose(joints_rad, (0.0, 0.0, 0.0), 0.0, pitch_rad)
        lows, centres = [], []
        for index in self._feet:
            lo, hi = pb.getAABB(self.body, index, physicsClientId=self.client)
            lows.append(float(lo[2]))
            centres.append(((lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0))
        if not lows:
            return (0.0, 0.0, self.model.base_height_m)
        cx = sum(c[0] for c in centres) / len(centres)
        cy = sum(c[1] for c in centres) / len(centres)
        return (-cx, -cy, -min(lows))

    def com_over_feet(
        self, joints_rad: Mapping[str, float], pitch_rad: float, masses: Mapping[int, float]
    ) -> tuple[float, float]:
        """(forward, left) of the centre of mass from the midpoint of the feet's ankle frames,
        in the robot's heading frame, for a pose with the pelvis leaning ``pitch_rad`` (m).
        ``masses``: kg per link index (-1: the base), from the dynamic body (this one is fixed,
        so PyBullet gives its base no mass)."""
        self.pose(joints_rad, (0.0, 0.0, 0.0), 0.0, pitch_rad)
        total = masses.get(-1, 0.0)
        com = np.zeros(2)  # the base's centre of mass is at the origin
        links = [i for i in masses if i >= 0]
        states = pb.getLinkStates(
            self.body, links, computeForwardKinematics=True, physicsClientId=self.client
        )
        for i, state in zip(links, states, strict=True):
            com += np.array(state[0][:2]) * masses[i]
            total += masses[i]
        feet = pb.getLinkStates(
            self.body, self._feet, computeForwardKinematics=True, physicsClientId=self.client
        )
        mid = np.mean([np.array(f[4][:2]) for f in feet], axis=0)
        out = com / max(total, 1e-9) - mid
        return (float(out[0]), float(out[1]))

    def feet_outline(self) -> NDArray[np.float64]:
        """The corners of the feet's bounding boxes on the floor plane as posed last (the
        support polygon's points when both feet stand flat), relative to the midpoint of the
        feet's ankle frames, in the robot's heading frame when posed with yaw 0 (m)."""
        corners = []
        for link in self._feet:
            lo, hi = pb.getAABB(self.body, link, physicsClientId=self.client)
            corners += [(lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1])]
        feet = pb.getLinkStates(
            self.body, self._feet, computeForwardKinematics=True, physicsClientId=self.client
        )
        mid = np.mean([np.array(f[4][:2]) for f in feet], axis=0)
        outline: NDArray[np.float64] = np.array(corners, dtype=np.float64) - mid
        return outline

    # -- inverse kinematics -------------------------------------------------------------

    def solve_hand(
        self,
        side: str,
        target_m: Vec3,
        joints_rad: Mapping[str, float],
        base_xyz: Sequence[float],
        yaw_rad: float,
        pitch_rad: float = 0.0,
    ) -> IkSolution:
        """Arm joints putting the hand's centre of mass at ``target_m``, base and other joints
        as given. Tries the current arm pose and a few seeds; keeps the closest."""
        names = arm_joints(self.model, side)
        hand = hand_joint(self.model, side)
        lower, upper = self._limits(names)
        starts = [np.array([joints_rad.get(n, 0.0) for n in names])]
        for seed in _SEEDS:
            starts.append(np.array([self._seed(seed, n, side) for n in names]))
        best: IkSolution | None = None
        for start in starts:
            solution = self._dls(names, hand, np.clip(start, lower, upper), lower, upper,
                                 target_m, joints_rad, base_xyz, yaw_rad, pitch_rad)  # fmt: skip
            if best is None or solution.residual_m < best.residual_m - 1e-6:
                best = solution
            if best.residual_m < 1e-3:
                break
        assert best is not None
        return best

    @staticmethod
    def _seed(seed: Mapping[str, float], name: str, side: str) -> float:
        part = name.removeprefix(f"{side}_")
        value = seed.get(part, 0.0)
        return -value if side == "right" and part.endswith(("_roll", "_yaw")) else value

    def _limits(self, names: Sequence[str]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        lower, upper = [], []
        for name in names:
            joint = self.model.joint(name)
            lo = joint.lower + LIMIT_MARGIN_RAD if math.isfinite(joint.lower) else -math.pi
            hi = joint.upper - LIMIT_MARGIN_RAD if math.isfinite(joint.upper) else math.pi
            lower.append(min(lo, hi))
            upper.append(max(lo, hi))
        return np.array(lower), np.array(upper)

    def _dls(
        self,
        names: Sequence[str],
        hand: str,
        q: NDArray[np.float64],
        lower: NDArray[np.float64],
        upper: NDArray[np.float64],
        target_m: Vec3,
        joints_rad: Mapping[str, float],
        base_xyz: Sequence[float],
        yaw_rad: float,
        pitch_rad: float,
    ) -> IkSolution:
        client, body = self.client, self.body
        self.pose(joints_rad, base_xyz, yaw_rad, pitch_rad)
        hand_index = self.index[self.model.joint(hand).name]
        local = pb.getLinkState(body, hand_index, physicsClientId=client)[2]
        columns = [self.movable.index(self.index[self.model.joint(n).name]) for n in names]
        target = np.array(target_m)
        error = np.zeros(3)
        # PyBullet's Jacobian of a fixed-base body is in the base frame: turn it into the hall's
        orientation = heading_quaternion(self.model, yaw_rad, pitch_rad)
        rotation = np.array(pb.getMatrixFromQuaternion(orientation)).reshape(3, 3)
        for _ in range(_ITERATIONS):
            self.pose(dict(zip(names, q.tolist(), strict=True)), base_xyz, yaw_rad, pitch_rad)
            position = np.array(
                pb.getLinkState(body, hand_index, computeForwardKinematics=True,
                                physicsClientId=client)[0]
            )  # fmt: skip
            error = target - position
            if float(np.linalg.norm(error)) < 5e-4:
                break
            states = pb.getJointStates(body, self.movable, physicsClientId=client)
            positions = [float(s[0]) for s in states]
            zeros = [0.0] * len(positions)
            linear, _ = pb.calculateJacobian(
                body, hand_index, local, positions, zeros, zeros, physicsClientId=client
            )
            jac = rotation @ np.array(linear)[:, columns]
            free = np.ones(len(columns), dtype=bool)
            dq = np.zeros(len(columns))
            for _ in range(3):  # active set: a joint at a limit, pushed outwards, is frozen
                sub = jac[:, free]
                dq[:] = 0.0
                dq[free] = sub.T @ np.linalg.solve(sub @ sub.T + _DAMPING**2 * np.eye(3), error)
                pushed = ((q <= lower + 1e-9) & (dq < 0)) | ((q >= upper - 1e-9) & (dq > 0))
                if not np.any(pushed & free):
                    break
                free &= ~pushed
            norm = float(np.max(np.abs(dq)))
            if norm > _MAX_STEP_RAD:
                dq *= _MAX_STEP_RAD / norm
            q = np.clip(q + dq, lower, upper)
        self.pose(dict(zip(names, q.tolist(), strict=True)), base_xyz, yaw_rad, pitch_rad)
        hand_now = self.link_com(hand)
        residual = float(np.linalg.norm(target - np.array(hand_now)))
        return IkSolution(dict(zip(names, q.tolist(), strict=True)), hand_now, residual)
