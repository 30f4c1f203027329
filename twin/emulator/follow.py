"""An emulated robot following a dispatched :class:`~twin.plan.model.TaskPlan`.

The robot leaves its looping station task where it is, moves over to the plan's first
frame (at :data:`RETURN_SPEED_M_S`, at least :data:`MIN_BLEND_S`), then follows
``plan.at(t)``: the plan's canonical joint targets (joints it does not name keep the targets
the robot had when it left its loop), grippers from ``grip``, and the stabilised base along
the plan's x/y/yaw path with the pelvis height the legs give. At the plan's end it goes back
to its loop the same way (:meth:`twin.emulator.actors.EmulatedRobot.end_plan`).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from twin.emulator.motion import FloatArray, MotionTarget, RobotMotion, lerp_target
from twin.plan.model import PlanSample, PlanTable, TaskPlan

RETURN_SPEED_M_S: Final = 0.5
MIN_BLEND_S: Final = 1.0


def blend_time_s(a: MotionTarget, b: MotionTarget) -> float:
    """How long to move from one target to another: the pelvis at :data:`RETURN_SPEED_M_S`,
    at least :data:`MIN_BLEND_S`."""
    distance = math.dist(a.pelvis_xyz_m[:2], b.pelvis_xyz_m[:2])
    return max(MIN_BLEND_S, distance / RETURN_SPEED_M_S)


class PlanRun:
    """One plan being followed from ``start_t_s`` (simulation time), from ``start``."""

    def __init__(
        self, plan: TaskPlan, motion: RobotMotion, start: MotionTarget, start_t_s: float
    ) -> None:
        self.plan = plan
        self.motion = motion
        self.start = start
        profile = motion.model.profile
        self._index: dict[str, int] = {}
        for frame in plan.frames:
            for name in frame.joints_rad:
                self._index[name] = motion.index_of[profile.vendor_name(name)]
        self._rest = {name: float(start.joint_targets[i]) for name, i in self._index.items()}
        self._table = PlanTable(plan, self._rest)
        first = self._target(self._table.at(0.0))
        self.blend_s = blend_time_s(start, first)
        self.start_t_s = start_t_s
        self.end_t_s = start_t_s + self.blend_s + plan.duration_s

    def finished(self, t_s: float) -> bool:
        return t_s >= self.end_t_s

    def target(self, t_s: float) -> MotionTarget:
        """Where the robot should be at simulation time ``t_s``."""
        since = t_s - self.start_t_s
        if since < self.blend_s:
            w = max(0.0, since / self.blend_s)
            first = self._target(self._table.at(0.0))
            return lerp_target(self.start, first, w * w * (3.0 - 2.0 * w))
        return self._target(self._table.at(since - self.blend_s))

    def _target(self, sample: PlanSample) -> MotionTarget:
        motion = self.motion
        targets: FloatArray = self.start.joint_targets.copy()
        for name, value in sample.joints_rad.items():
            targets[self._index[name]] = value
        targets = np.clip(motion.grip_targets(targets, sample.grip), motion.lower, motion.upper)
        pitch = sample.pelvis_pitch_rad
        forward, height = motion.pelvis_over_feet(targets, pitch)
        x, y, yaw = sample.base_xy_yaw
        feet = (x - math.cos(yaw) * forward, y - math.sin(yaw) * forward)
        return MotionTarget(targets, (x, y, height), yaw, pitch, feet, 0.0, sample.grip)
