"""Whole-body balance of a plan's standing poses: the centre of mass kept over the feet.

The compiler's keyframes put the hands where a step needs them with the arms alone; a forward
reach then carries the centre of mass (CoM) past the toes, which only a hidden support could
hold. :class:`WholeBody` re-solves each keyframe outside walks with placo's whole-body inverse
kinematics (QP on Pinocchio, https://github.com/Rhoban/placo): both feet as hard frame tasks
where the keyframe has them, the CoM constrained inside the feet's support polygon shrunk by
:data:`COM_MARGIN_M`, each hand a soft position task at where the keyframe put it, and a soft
joints task towards the keyframe's posture (so a squat stays a squat). The ankles, hips and
torso move to keep the robot over its feet; a pose that cannot be balanced keeps the best the
solver found, and physics then judges it (the preview's balance check).

placo's model is the same URDF PyBullet loads (unscaled). A model it cannot use (a scaled
model, spherical joints, no feet) is reported by :func:`whole_body_for` as unsupported and
the preview keeps the stabilised base for it, saying so. Frames are the robot's heading frame
with the pelvis at the origin: X forward, Z up, SI units.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from robots import RobotModel
from robots.bullet import pb
from twin.plan.model import PlanFrame
from twin.preview.checks import convex_hull, push_shift_m, support_margin
from twin.preview.compiled import GraspSpan, HandTarget, StepSpan, WrenchLoad
from twin.preview.kinematics import Kinematics, hand_joint

log = logging.getLogger(__name__)

COM_MARGIN_M: Final = 0.05
"""The CoM stays this far inside the support polygon's edges (the physics must also hold it)."""
HAND_WEIGHT: Final = 1000.0
HAND_TURN_WEIGHT: Final = 10.0
CENTRE_WEIGHT: Final = 3.0
"""The CoM is drawn towards the middle of the feet (the most room for the motion's own pushes)."""
LEVEL_WEIGHT: Final = 100.0
"""The pelvis kept level and facing the frame's heading (its roll and yaw are not in a plan)."""
POSTURE_WEIGHT: Final = 1e-2
PELVIS_WEIGHT: Final = 1e-2
ITERATIONS: Final = 40
LOAD_SHARE: Final = 1.0
"""How much of a hand load's tipping moment the CoM leans against (strokes come and go)."""
FOOT_CORNERS: Final = 4
ARM_PARTS: Final = ("shoulder", "elbow", "wrist")


@dataclass(frozen=True)
class Balanced:
    """One keyframe's pose after balancing: canonical joints (rad), the pelvis lean (rad), and
    the CoM's margin inside the support polygon before and after (m; negative: outside)."""

    joints_rad: dict[str, float]
    pitch_rad: float
    margin_before_m: float
    margin_after_m: float


class WholeBody:
    """placo's whole-body solver for one model (see the module docstring)."""

    def __init__(self, model: RobotModel, kinematics: Kinematics) -> None:
        import placo  # heavy (Pinocchio): only when a plan is balanced

        self.model = model
        self.kin = kinematics
        self.robot: Any = placo.RobotWrapper(
            str(model.loadable_urdf), placo.Flags.ignore_collisions
        )
        self.feet = [_child_link(kinematics, index) for index in kinematics.feet_links]
        self.hands: dict[str, str] = {}
        for side in ("left", "right"):
            try:
                joint = model.joint(hand_joint(model, side)).name
            except KeyError:
                continue
            self.hands[side] = _child_link(kinematics, kinematics.index[joint])
        self.vendor = {
            model.profile.canonical_name(j.name): j.name
            for j in model.joints
            if j.kind != "spherical"
        }
        self.base = model.base_link
        self.arms = {
            side: [
                vendor for name, vendor in self.vendor.items()
                if name.startswith(f"{side}_") and any(p in name for p in ARM_PARTS)
            ]
            for side in self.hands
        }  # fmt: skip

    def balance(
        self,
        joints_rad: Mapping[str, float],
        pitch_rad: float,
        hand_force_n: tuple[str, NDArray[np.float64]] | None = None,
        working: frozenset[str] | None = None,
    ) -> Balanced:
        """The pose balanced over its feet (see the module docstring). ``hand_force_n``: a
        hand ("left"/"right") pushed by a force (N, heading frame) during the pose: the CoM
        stands back by its tipping moment. ``working``: the sides whose hands have a job in the
        hall's frame (default: both); an idle arm keeps the keyframe's angles (held still in
        the hall's frame, it pinned the torso and kept the CoM from moving)."""
        import placo

        robot = self.robot
        self._pose(joints_rad, pitch_rad)
        polygon = self._support_polygon(joints_rad, pitch_rad)
        centre_xy = polygon.mean(axis=0)
        if hand_force_n is not None and hand_force_n[0] in self.hands:
            # the push's tipping moment moves the centre of pressure F*h/(m*g) from under the
            # CoM: the CoM is drawn that far back from the middle, so the centre of pressure
            # stays there (the preview then checks the pushed pose's centre of pressure)
            side, force = hand_force_n
            hand_z = float(robot.get_T_world_frame(self.hands[side])[2, 3])
            floor_z = min(float(robot.get_T_world_frame(f)[2, 3]) for f in self.feet)
            weight_n = float(robot.total_mass()) * 9.81
            centre_xy = centre_xy - LOAD_SHARE * push_shift_m(force[:2], hand_z - floor_z, weight_n)
        before = _margin(polygon, np.asarray(robot.com_world()[:2], dtype=np.float64))
        solver = placo.KinematicsSolver(robot)
        solver.mask_fbase(False)
        solver.enable_joint_limits(True)
        for foot in self.feet:
            task = solver.add_frame_task(foot, robot.get_T_world_frame(foot))
            task.configure(foot, "hard", 1.0, 1.0)
        for side, hand in self.hands.items():
            if working is not None and side not in working:
                for name in self.arms[side]:
                    solver.mask_dof(name)
                continue
            # where the keyframe has the hand, and how it is turned (a grasp's reach below the
            # hand and a wrench's angle depend on it)
            task = solver.add_frame_task(hand, robot.get_T_world_frame(hand).copy())
            task.configure(f"{side}_hand", "soft", HAND_WEIGHT, HAND_TURN_WEIGHT)
        pelvis = solver.add_orientation_task(self.base, robot.get_T_world_frame(self.base)[:3, :3])
        pelvis.configure("pelvis", "soft", PELVIS_WEIGHT)
        # a frame holds only the pelvis' lean (pitch): a yaw or roll the solver gave it would be
        # dropped from the plan, swinging the hands centimetres off their targets
        level = solver.add_orientation_task(self.base, np.eye(3))
        level.mask.set_axises("xz")
        level.configure("pelvis_level", "soft", LEVEL_WEIGHT)
        posture = solver.add_joints_task()
        posture.set_joints(
            {self.vendor[n]: float(v) for n, v in joints_rad.items() if n in self.vendor}
        )
        posture.configure("posture", "soft", POSTURE_WEIGHT)
        centre = solver.add_com_task(np.array([*centre_xy, 0.0]))
        centre.mask.set_axises("xy")
        centre.configure("com_centre", "soft", CENTRE_WEIGHT)
        inner = _shrunk(polygon, COM_MARGIN_M)
        if inner is not None:
            com = solver.add_com_polygon_constraint([np.array(p) for p in inner[::-1]], 0.0)
            com.configure("com", "hard", 1.0)
        solver.add_regularization_task(1e-4)
        for _ in range(ITERATIONS):
            try:
                solver.solve(True)
            except RuntimeError as exc:  # an infeasible QP: keep the best found so far
                log.debug("balancing a keyframe stopped early: %s", exc)
                break
            robot.update_kinematics()
        out = {n: float(robot.get_joint(v)) for n, v in self.vendor.items() if n in joints_rad}
        rotation = robot.get_T_world_frame(self.base)[:3, :3]
        pitch = math.atan2(-float(rotation[2, 0]), float(rotation[2, 2]))
        after = _margin(polygon, np.asarray(robot.com_world()[:2], dtype=np.float64))
        return Balanced(out, pitch, before, after)

    def _pose(self, joints_rad: Mapping[str, float], pitch_rad: float) -> None:
        robot = self.robot
        for name, value in joints_rad.items():
            vendor = self.vendor.get(name)
            if vendor is not None:
                robot.set_joint(vendor, float(value))
        c, s = math.cos(pitch_rad), math.sin(pitch_rad)
        transform = np.eye(4)
        transform[:3, :3] = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
        robot.set_T_world_fbase(transform)
        robot.update_kinematics()

    def _support_polygon(
        self, joints_rad: Mapping[str, float], pitch_rad: float
    ) -> NDArray[np.float64]:
        """The feet's soles' convex hull (counter-clockwise) for the pose, pelvis at origin."""
        kin = self.kin
        kin.pose(joints_rad, (0.0, 0.0, 0.0), 0.0, pitch_rad)
        corners = []
        for link in kin.feet_links:
            lo, hi = pb.getAABB(kin.body, link, physicsClientId=kin.client)
            corners += [(lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1])]
        return np.array(convex_hull(np.array(corners, dtype=np.float64)), dtype=np.float64)


def whole_body_for(model: RobotModel, kinematics: Kinematics) -> WholeBody | str:
    """A whole-body solver for the model, or why there is none (the preview then keeps the
    stabilised base and says so)."""
    if model.scale != 1.0:
        return f"{model.name} is scaled ({model.scale:g}x); placo loads URDFs unscaled"
    if any(j.kind == "spherical" for j in model.joints):
        return f"{model.name} has spherical joints"
    if len(kinematics.feet_links) != 2:
        return f"{model.name} has no two feet"
    try:
        return WholeBody(model, kinematics)
    except ImportError as exc:  # pragma: no cover - placo is a dependency
        return f"placo is not installed ({exc})"


def balance_frames(
    frames: Sequence[PlanFrame],
    spans: Sequence[StepSpan],
    body: WholeBody,
    rest_rad: Mapping[str, float],
    clip: Callable[[Mapping[str, float]], dict[str, float]],
    loads: Sequence[WrenchLoad] = (),
    hands: Sequence[HandTarget] = (),
    grasps: Sequence[GraspSpan] = (),
) -> tuple[list[PlanFrame], float, float]:
    """The frames with every keyframe outside walk steps balanced, and the worst CoM margin
    before and after (m). A frame keeps its feet: its pelvis moves with the new pose. A step
    with wrench strokes leans its poses against the strokes' push (:meth:`WholeBody.balance`)."""
    walks = {s.index for s in spans if s.kind == "walk"}
    pushes = {load.step: load for load in loads}
    # a step leans against its strokes' push only from the first stroke's start to the last
    # one's end: leaning while walking up to the bolt only carried the CoM off centre
    stroking = {
        step: (
            min(load.start_s for load in loads if load.step == step),
            max(load.end_s for load in loads if load.step == step),
        )
        for step in pushes
    }
    kin = body.kin
    current = dict(rest_rad)
    out: list[PlanFrame] = []
    worst_before = worst_after = math.inf
    for frame in frames:
        current = {**current, **frame.joints_rad}
        if frame.step in walks:
            out.append(frame)
            continue
        push = None
        load = pushes.get(frame.step)
        span = stroking.get(frame.step)
        during = span is not None and span[0] - 1e-6 <= frame.t_s <= span[1] + 1e-6
        if load is not None and during:
            yaw = frame.base_xy_yaw[2]
            c, s = math.cos(yaw), math.sin(yaw)
            dx, dy = load.direction[0] * load.force_n, load.direction[1] * load.force_n
            push = (load.hand, np.array([c * dx + s * dy, -s * dx + c * dy]))
        working = frozenset(h.hand for h in hands if h.step == frame.step) | frozenset(
            g.hand for g in grasps
            if g.grasp_s <= frame.t_s and (g.release_s is None or frame.t_s <= g.release_s)
        )  # fmt: skip
        balanced = body.balance(current, frame.pelvis_pitch_rad, push, working)
        worst_before = min(worst_before, balanced.margin_before_m)
        worst_after = min(worst_after, balanced.margin_after_m)
        joints = clip({**current, **balanced.joints_rad})
        # the feet stay: where they were under the old pose, the pelvis over them in the new
        x, y, yaw = frame.base_xy_yaw
        old_fwd, old_left, _ = kin.pelvis_over_feet(current, frame.pelvis_pitch_rad)
        new_fwd, new_left, _ = kin.pelvis_over_feet(joints, balanced.pitch_rad)
        c, s = math.cos(yaw), math.sin(yaw)
        dx, dy = new_fwd - old_fwd, new_left - old_left
        out.append(
            PlanFrame(
                t_s=frame.t_s,
                step=frame.step,
                base_xy_yaw=(x + c * dx - s * dy, y + s * dx + c * dy, yaw),
                joints_rad={k: v for k, v in joints.items() if k in frame.joints_rad},
                grip=frame.grip,
                pelvis_pitch_rad=balanced.pitch_rad,
            )
        )
        current = {**current, **joints}
    return out, worst_before, worst_after


def _child_link(kinematics: Kinematics, index: int) -> str:
    info = pb.getJointInfo(kinematics.body, index, physicsClientId=kinematics.client)
    return str(info[12].decode())


def _margin(polygon: NDArray[np.float64], point: NDArray[np.float64]) -> float:
    """Signed distance of a point inside a convex polygon (negative: outside)."""
    margin = support_margin(polygon, point)
    return -math.inf if margin is None else margin


def _shrunk(polygon: NDArray[np.float64], margin_m: float) -> NDArray[np.float64] | None:
    """The polygon shrunk towards its centroid so each vertex is about ``margin_m`` further
    inside (None when the polygon is too small to shrink)."""
    centre = polygon.mean(axis=0)
    inside = _margin(polygon, centre)
    if not math.isfinite(inside) or inside <= margin_m * 1.5:
        return None
    shrunk: NDArray[np.float64] = centre + (polygon - centre) * (1.0 - margin_m / inside)
    return shrunk
