"""Standing on its own feet: the legs' joint targets from whole-body inverse kinematics closed
on the simulated state, every control tick outside walks.

The plan's leg angles assume both feet exactly where the compiler put them; after a walk they
stand a few millimetres elsewhere, and stiff position-controlled legs in that closed chain fight
each other through the floor (hundreds of N*m at the hips), while soft ones let the body sag and
rock. So outside walks the legs are not driven to the plan's angles: each tick
:class:`StanceControl` loads the robot's measured state into placo (floating base and joints,
the arms and torso at the plan's targets), keeps both feet where they are now, flat, as hard
tasks, and puts the centre of mass (CoM) at the plan's CoM over the feet, corrected by its
measured velocity (a capture-point damping: target = planned - ``sqrt(h/g)`` * velocity), with
the pelvis leaning as planned (about the heading the feet stand at) as a softer task. The solver
moves the legs and torso, and the arm of a hand with a job in the hall's frame (a target in the
running step, or an item held: that hand is a task at the plan's point); an arm with no such job
is masked and follows the plan's angles, as the neck and grippers do. The joints the solver
returns are the motor targets. Physics then decides whether the robot stands: nothing holds it.

Frames: the hall's, SI units. The model must be one placo can load (see
:func:`twin.preview.balance.whole_body_for`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from robots import RobotModel
from twin.preview.builder import PLAN_LIMIT_MARGIN_RAD

log = logging.getLogger(__name__)

COM_WEIGHT: Final = 10.0
PELVIS_WEIGHT: Final = 0.05
POSTURE_WEIGHT: Final = 0.05
STABILISER_KP: Final = 1.0
"""The reference CoM moves this many metres against each metre of measured CoM error."""
STABILISER_KD_S: Final = 0.1
"""... and this many metres per m/s of the measured CoM's velocity."""
CONTROLLED_PARTS: Final = ("hip", "knee", "ankle", "shoulder", "elbow", "wrist", "spine")
"""The joints the stance solver moves (legs, arms, torso); the neck and grippers follow the plan."""
ARM_PARTS: Final = ("shoulder", "elbow", "wrist")
"""An arm's joints: the solver moves them only while the hand has a job in the hall's frame."""
HAND_WEIGHT: Final = 3.0
"""A working hand's pull towards where the plan has it (against the CoM's COM_WEIGHT)."""
HAND_KP: Final = 1.0
"""A working hand's target moves this many metres against each metre the measured hand is off
the plan's point (the arm's servos yield under a load, and a stroke's push bends the body)..."""
HAND_CORRECTION_MAX_M: Final = 0.03
"""... by at most this much (a hand pressed against what it works on is not pushed harder)."""
GRAVITY_M_S2: Final = 9.81


class StanceControl:
    """The legs' and arms' targets that keep a standing robot over its feet with its hands
    where the plan has them (see the module docstring); ``hands``: the hands' links, on
    ``sides`` ("left"/"right") in the same order."""

    def __init__(
        self,
        model: RobotModel,
        feet: Sequence[str],
        hands: Sequence[str],
        canonical: Sequence[str],
        sides: Sequence[str] = ("left", "right"),
    ) -> None:
        import placo  # heavy (Pinocchio): only when a robot stands on its own

        self.model = model
        self.robot: Any = placo.RobotWrapper(
            str(model.loadable_urdf), placo.Flags.ignore_collisions
        )
        self.plan_robot: Any = placo.RobotWrapper(
            str(model.loadable_urdf), placo.Flags.ignore_collisions
        )
        self.mid = np.zeros(3)
        self.feet_yaw = 0.0
        self.feet = list(feet)
        self.hands = list(hands)
        self.base = model.base_link
        self.vendor = [model.joint(name).name for name in canonical]
        self.controlled = np.array(
            [any(p in name for p in CONTROLLED_PARTS) for name in canonical], dtype=bool
        )
        # where each joint sits in placo's configuration vector (both models load the same
        # URDF): whole vectors are read and written at once, not joint by joint
        self.offsets = np.array([self.robot.get_joint_offset(v) for v in self.vendor], dtype=int)
        for vendor in self.vendor:  # no closer to a limit than the plan goes
            lo, hi = (float(v) for v in self.robot.get_joint_limits(vendor))
            if hi - lo > 2 * PLAN_LIMIT_MARGIN_RAD:
                self.robot.set_joint_limits(
                    vendor, lo + PLAN_LIMIT_MARGIN_RAD, hi - PLAN_LIMIT_MARGIN_RAD
                )
        solver = placo.KinematicsSolver(self.robot)
        solver.mask_fbase(False)
        solver.enable_joint_limits(True)
        for vendor, controlled in zip(self.vendor, self.controlled, strict=True):
            if not controlled:
                solver.mask_dof(vendor)
        # each hand's arm joints (canonical "left_..." / "right_..."), masked while the hand has
        # no job in the hall's frame: the arm then follows the plan's angles as they are
        self.arm_of = {
            link: np.array(
                [name.startswith(f"{side}_") and any(p in name for p in ARM_PARTS)
                 for name in canonical], dtype=bool,
            )
            for side, link in zip(sides, hands, strict=True)
        }  # fmt: skip
        self._idle: set[str] = set()
        self.foot_tasks = []
        for foot in self.feet:
            task = solver.add_frame_task(foot, np.eye(4))
            task.configure(foot, "hard", 1.0, 1.0)
            self.foot_tasks.append(task)
        self.hand_tasks = []
        for hand in self.hands:
            task = solver.add_position_task(hand, np.zeros(3))
            task.configure(hand, "soft", HAND_WEIGHT)
            self.hand_tasks.append(task)
        self.com_task = solver.add_com_task(np.zeros(3))
        self.com_task.mask.set_axises("xy")
        self.com_task.configure("com", "soft", COM_WEIGHT)
        self.pelvis_task = solver.add_orientation_task(self.base, np.eye(3))
        self.pelvis_task.configure("pelvis", "soft", PELVIS_WEIGHT)
        self.posture = solver.add_joints_task()
        self.posture.configure("posture", "soft", POSTURE_WEIGHT)
        solver.add_regularization_task(1e-5)
        self.solver = solver
        self.failures = 0
        self._last: NDArray[np.float64] | None = None
        self._floor_z: list[float] | None = None

    def begin(
        self,
        base_xyz: Sequence[float],
        base_rotation: NDArray[np.float64],
        positions: NDArray[np.float64],
    ) -> None:
        """A stance starts (after a walk, or at the start): the reference model takes the
        measured state, and the feet are held flat where they stand now."""
        robot = self.robot
        transform = np.eye(4)
        transform[:3, :3] = base_rotation
        transform[:3, 3] = base_xyz
        robot.set_T_world_fbase(transform)
        for vendor, value in zip(self.vendor, positions, strict=True):
            robot.set_joint(vendor, float(value))
        robot.update_kinematics()
        self.mid = np.zeros(3)
        headings = []
        for foot, task in zip(self.feet, self.foot_tasks, strict=True):
            now = robot.get_T_world_frame(foot)
            if self._floor_z is None:
                self._floor_z = [float(now[2, 3])] * len(self.feet)
            flat = np.eye(4)
            heading = math.atan2(float(now[1, 0]), float(now[0, 0]))
            headings.append(heading)
            c, s = math.cos(heading), math.sin(heading)
            flat[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
            flat[:3, 3] = (now[0, 3], now[1, 3], min(float(now[2, 3]), self._floor_z[0]))
            task.T_world_frame = flat
            self.mid += flat[:3, 3] / len(self.feet)
        self.feet_yaw = math.atan2(
            sum(math.sin(h) for h in headings), sum(math.cos(h) for h in headings)
        )

    def targets(
        self,
        plan_targets: NDArray[np.float64],
        plan_base: NDArray[np.float64],
        com_over_feet: tuple[float, float],
        com_xy: NDArray[np.float64],
        com_velocity_xy: NDArray[np.float64],
        yaw_rad: float,
        working: frozenset[str] | None = None,
        hands_xyz: Sequence[NDArray[np.float64] | None] | None = None,
    ) -> NDArray[np.float64]:
        """All motor targets: the plan's, with the legs', arms' and torso's from the reference
        model (see the module docstring).

        ``plan_targets`` follow the canonical order given at construction; ``plan_base`` is the
        plan's pelvis pose (4x4, hall frame) for them; ``com_over_feet`` the plan's CoM
        (forward, left) from the feet's midpoint in the heading ``yaw_rad``; ``com_xy`` and
        ``com_velocity_xy`` the robot's measured CoM and its velocity (hall frame); ``hands_xyz``
        the hands' measured link frames (hall frame, in the order of ``hands``), which a working
        hand's target is corrected by (HAND_KP, at most HAND_CORRECTION_MAX_M; None: a hand
        not corrected, as one touching something)."""
        plan = self.plan_robot
        plan.set_T_world_fbase(plan_base)
        plan.state.q[self.offsets] = plan_targets
        plan.update_kinematics()
        robot = self.robot
        idle = {h for h in self.hands if working is not None and h not in working}
        for hand in idle ^ self._idle:  # mask an idle arm's joints, unmask a working one's
            for vendor, arm in zip(self.vendor, self.arm_of[hand], strict=True):
                if arm:
                    (self.solver.mask_dof if hand in idle else self.solver.unmask_dof)(vendor)
            # an idle hand is no task at all: held still in the hall, it pinned the torso
            task = self.hand_tasks[self.hands.index(hand)]
            task.configure(hand, "soft", 0.0 if hand in idle else HAND_WEIGHT)
        self._idle = idle
        free = self.controlled.copy()
        for hand in idle:
            free &= ~self.arm_of[hand]
        for i, (hand, task) in enumerate(zip(self.hands, self.hand_tasks, strict=True)):
            if hand in idle:  # no job in the hall's frame: the arm follows the plan's angles
                task.target_world = robot.get_T_world_frame(hand)[:3, 3].copy()
                continue
            point = plan.get_T_world_frame(hand)[:3, 3].copy()
            measured = None if hands_xyz is None else hands_xyz[i]
            if measured is not None:  # close the loop on where the hand really is
                correction = HAND_KP * (point - measured)
                norm = float(np.linalg.norm(correction))
                if norm > HAND_CORRECTION_MAX_M:
                    correction *= HAND_CORRECTION_MAX_M / norm
                point = point + correction
            task.target_world = point
        # the pelvis leans as planned about the heading the feet stand at (a walk ends a few
        # hundredths of a radian off the plan's; turning the body to the plan's heading over
        # planted feet twisted it)
        turn = self.feet_yaw - yaw_rad
        ct, st = math.cos(turn), math.sin(turn)
        about = np.array([[ct, -st, 0.0], [st, ct, 0.0], [0.0, 0.0, 1.0]])
        self.pelvis_task.R_world_frame = about @ plan_base[:3, :3]
        robot.state.q[self.offsets[~free]] = plan_targets[~free]
        self.posture.set_joints(
            {
                vendor: float(value)
                for vendor, value, controlled in zip(
                    self.vendor, plan_targets, self.controlled, strict=True
                )
                if controlled
            }
        )
        c, s = math.cos(yaw_rad), math.sin(yaw_rad)
        fwd, left = com_over_feet
        mid = self.mid
        planned = np.array([mid[0] + c * fwd - s * left, mid[1] + s * fwd + c * left])
        error = com_xy - planned
        shifted = planned - STABILISER_KP * error - STABILISER_KD_S * com_velocity_xy
        self.com_task.target_world = np.array([shifted[0], shifted[1], 0.0])
        out = plan_targets.copy()
        try:
            self.solver.solve(True)
        except RuntimeError as exc:  # an infeasible QP: hold the last targets
            self.failures += 1
            if self.failures == 1:
                log.debug("stance solve failed (%s); joints hold their targets", exc)
            if self._last is not None:
                out[self.controlled] = self._last
            return out
        solved = robot.state.q[self.offsets[self.controlled]].copy()
        robot.update_kinematics()
        self._last = solved
        out[self.controlled] = solved
        return out


def rotation_of(quaternion_xyzw: Sequence[float]) -> NDArray[np.float64]:
    """3x3 rotation matrix of a unit quaternion (x, y, z, w)."""
    x, y, z, w = (float(v) for v in quaternion_xyzw)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
