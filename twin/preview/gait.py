"""Gait steps of the task→plan compiler: walks (turn towards the goal, an alternating-leg gait
with the base on the straight path, turn to the final heading, or a short shuffle), turns on the
spot, and squats.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Final

from scenes.task_model import Step
from twin.preview.builder import REST_ARM, BuilderCore, _arm

log = logging.getLogger(__name__)

Where = Callable[[float], tuple[tuple[float, float], float]]
"""``where(w) -> ((x, y), yaw)``: the base along a motion, w from 0 to 1."""

TURN_RATE_RAD_S: Final = 0.8
GAIT_HZ: Final = 0.9
GAIT_FRAMES: Final = 8
SPOT_SWING_RAD: Final = 0.08
KNEE_BASE_RAD: Final = 0.12
KNEE_LIFT_RAD: Final = 0.38
ARM_SWING_RAD: Final = 0.3
SHUFFLE_M: Final = 1.0
"""Walks shorter than this shuffle to the goal without turning towards it first."""
SHUFFLE_SPEED_M_S: Final = 0.25


class Gait(BuilderCore):
    """Walk, turn, gait and squat keyframes."""

    def _walk(self, step: Step) -> str:
        walk = step.walk
        assert walk is not None
        self._to_rest()
        final_yaw: float | None
        if isinstance(walk.to, str):
            station = self.scene.station(walk.to)
            goal = (station.pose.xyz[0], station.pose.xyz[1])
            final_yaw = station.pose.yaw_rad if walk.yaw is None else walk.yaw
            label = f"walk to {walk.to}"
        else:
            goal = (walk.to[0], walk.to[1])
            final_yaw = walk.yaw
            label = f"walk to ({goal[0]:g}, {goal[1]:g})"
        start = self.pelvis_xy()
        dx, dy = goal[0] - start[0], goal[1] - start[1]
        distance = math.hypot(dx, dy)
        heading = math.atan2(dy, dx) if distance > 0.02 else self.yaw
        if final_yaw is None:
            final_yaw = heading
        leg = 0.8 * self.model.base_height_m
        swing = math.asin(min(0.5, walk.speed / (4.0 * GAIT_HZ * leg)))
        if distance > SHUFFLE_M:
            self._turn(heading, start)
            self._gait(start, goal, distance / walk.speed, swing)
        elif distance > 0.02:  # a short way (up to a bench): shuffle there, facing as it is
            self._gait(start, goal, distance / min(walk.speed, SHUFFLE_SPEED_M_S), swing)
        self._turn(final_yaw, goal)
        stand = self.kin.pelvis_over_feet(self.joints, 0.0)
        self.feet = self._feet_from_pelvis(goal, stand[0], stand[1])
        return label

    def _turn(self, yaw: float, at: tuple[float, float]) -> None:
        delta = math.remainder(yaw - self.yaw, math.tau)
        if abs(delta) < 1e-3:
            return
        duration = max(0.6, abs(delta) / TURN_RATE_RAD_S)
        start_yaw = self.yaw
        self._stepping(duration, SPOT_SWING_RAD, lambda w: (at, start_yaw + w * delta))
        self.yaw = start_yaw + delta

    def _gait(
        self, start: tuple[float, float], goal: tuple[float, float], duration: float, swing: float
    ) -> None:
        def along(w: float) -> tuple[tuple[float, float], float]:
            point = (start[0] + w * (goal[0] - start[0]), start[1] + w * (goal[1] - start[1]))
            return point, self.yaw

        # arms swing on a walk of some length (not on a short shuffle up to a bench)
        arm = ARM_SWING_RAD if math.dist(start, goal) > 1.0 else 0.0
        self._stepping(duration, swing, along, arm)

    def _stepping(
        self,
        duration: float,
        swing: float,
        where: Where,
        arm_swing: float = 0.0,
    ) -> None:
        """Whole gait cycles spanning ``duration``: keyframes of the alternating legs while the
        base follows ``where(w)`` (w from 0 to 1), ending standing."""
        cycles = max(1, math.ceil(duration * GAIT_HZ - 1e-9))
        count = cycles * GAIT_FRAMES
        dt = 1.0 / (GAIT_HZ * GAIT_FRAMES)  # whole cycles at the gait's own rate
        for k in range(1, count + 1):
            w = k / count
            u = (k / GAIT_FRAMES) % 1.0
            joints: dict[str, float] = {}
            holding = {span.hand for span in self.held.values()}
            for side, offset in (("left", 0.0), ("right", 0.5)):
                thigh, lift = _leg_phase((u + offset) % 1.0)
                hip = swing * thigh
                knee = KNEE_BASE_RAD + KNEE_LIFT_RAD * lift
                joints[f"{side}_hip_pitch"] = hip if k < count else 0.0
                joints[f"{side}_knee"] = knee if k < count else 0.0
                joints[f"{side}_ankle_pitch"] = -(hip + knee) if k < count else 0.0
                if side not in holding:  # a hand that holds something does not swing
                    swung = -arm_swing * thigh if k < count else 0.0
                    joints[f"{side}_shoulder_pitch"] = swung
            self._set(joints)
            point, yaw = where(w)
            self.yaw = yaw
            self._emit(dt, point)

    def _squat(self, step: Step) -> None:
        squat = step.squat
        assert squat is not None
        self._to_rest()
        down = {
            **self._legs(squat.depth, 0.35 * squat.depth),
            **_arm("left", {"shoulder_pitch": -1.2, "elbow": -0.3}),
            **_arm("right", {"shoulder_pitch": -1.2, "elbow": -0.3}),
        }
        up = {**self._legs(0.0, 0.0), **_arm("left", REST_ARM), **_arm("right", REST_ARM)}
        for _ in range(squat.count):
            self._set(down)
            self.pitch = 0.35 * squat.depth
            self._emit(0.4 * squat.period)
            self._emit(0.1 * squat.period)
            self._set(up)
            self.pitch = 0.0
            self._emit(0.4 * squat.period)
            self._emit(0.1 * squat.period)


def _leg_phase(u: float) -> tuple[float, float]:
    """One leg over a gait cycle ``u`` in [0, 1): (thigh swing -1 forward .. 1 back, knee lift
    0..1); stance in the first half, swing in the second."""
    if u < 0.5:
        return -1.0 + 4.0 * u, 0.0
    w = (u - 0.5) / 0.5
    return 1.0 - 2.0 * (w * w * (3.0 - 2.0 * w)), math.sin(math.pi * w)
