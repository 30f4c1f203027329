"""Joint control in a preview run: the motors driven towards the plan's targets, the pelvis
carried by the stabilised base along the plan's path (its height following the lower sole onto
the floor), the crane moved along its path, and the wrench's working-stroke loads at the hand.
"""

from __future__ import annotations

import itertools
import logging
from typing import Final

import numpy as np

from robots.bullet import pb
from twin.preview.result import TIME_STEP_S
from twin.preview.run_state import RunState

log = logging.getLogger(__name__)

SOLE_PRELOAD_M: Final = -0.001  # the lowest sole's target height: 1 mm into the floor
SOLE_FOLLOW_GAIN: Final = 0.5  # fraction of the sole's height error corrected per control tick
SOLE_FOLLOW_MAX_M: Final = 0.15  # the most the hold's height may differ from the plan's
CONTROL_EVERY: Final = 1
VELOCITY_GAIN: Final = 1.0


class Control(RunState):
    """The controllers of a run (every CONTROL_EVERY physics steps) and the hand loads."""

    def _control(self, t_s: float) -> None:
        hall = self.hall
        tp = self.plan_time(t_s)
        sample = self.table.at(tp)
        targets = np.array([sample.joints_rad.get(name, 0.0) for name in hall.canonical])
        if self.gripper.any():
            targets = np.where(
                self.gripper, self.lower + (1.0 - sample.grip) * (self.upper - self.lower), targets
            )
        dt = CONTROL_EVERY * TIME_STEP_S
        previous = self._previous_targets if self._previous_targets is not None else targets
        velocities = (targets - previous) / dt
        self._previous_targets = targets
        pb.setJointMotorControlArray(
            hall.body, hall.motors, pb.POSITION_CONTROL,
            targetPositions=targets.tolist(), targetVelocities=velocities.tolist(),
            forces=self.forces, positionGains=self.position_gains,
            velocityGains=[VELOCITY_GAIN] * self.n, physicsClientId=hall.client,
        )  # fmt: skip
        i = int(np.searchsorted(self.frame_times, tp, side="right")) - 1
        i = min(max(i, 0), len(self.heights) - 1)
        height = self.heights[i]
        if i + 1 < len(self.heights):
            span = self.frame_times[i + 1] - self.frame_times[i]
            w = 0.0 if span <= 0 else min(1.0, max(0.0, (tp - self.frame_times[i]) / span))
            height += w * (self.heights[i + 1] - height)
        x, y, yaw = sample.base_xy_yaw
        hall.carry((x, y, height + self._sole_follow()), yaw, sample.pelvis_pitch_rad)
        if self.c.crane_id is not None:
            bridge, trolley, hoist = _crane_at(self.c.crane_path, tp)
            hall.set_crane(self.c.crane_id, bridge, trolley, hoist)

    def _sole_follow(self) -> float:
        """The stabilised base keeps the lower sole on the floor: the planned pelvis height,
        corrected by the lowest foot's distance from the floor (integrated at SOLE_FOLLOW_GAIN
        per control tick, so a leg never pushes the floor away or hangs above it)."""
        hall = self.hall
        if not self.feet:
            return 0.0
        lowest = min(
            pb.getAABB(hall.body, link, physicsClientId=hall.client)[0][2] for link in self.feet
        )
        error = lowest - SOLE_PRELOAD_M
        self._sole_offset_m -= SOLE_FOLLOW_GAIN * error
        self._sole_offset_m = max(-SOLE_FOLLOW_MAX_M, min(SOLE_FOLLOW_MAX_M, self._sole_offset_m))
        return self._sole_offset_m

    def _loads(self, t_s: float) -> None:
        tp = self.plan_time(t_s)
        for load in self.c.loads:
            if load.start_s <= tp < load.end_s and load.hand in self.hand_link:
                link = self.hand_link[load.hand]
                hall = self.hall
                where = pb.getLinkState(hall.body, link, physicsClientId=hall.client)[0]
                force = tuple(load.force_n * d for d in load.direction)
                pb.applyExternalForce(
                    hall.body, link, force, where, pb.WORLD_FRAME, physicsClientId=hall.client
                )


def _crane_at(
    path: tuple[tuple[float, float, float, float], ...], t_s: float
) -> tuple[float, float, float]:
    """The crane's planned axes at ``t_s``: straight per axis between waypoints."""
    if t_s <= path[0][0]:
        return path[0][1], path[0][2], path[0][3]
    for a, b in itertools.pairwise(path):
        if t_s <= b[0]:
            w = (t_s - a[0]) / (b[0] - a[0]) if b[0] > a[0] else 1.0
            return (a[1] + w * (b[1] - a[1]), a[2] + w * (b[2] - a[2]), a[3] + w * (b[3] - a[3]))
    last = path[-1]
    return last[1], last[2], last[3]
