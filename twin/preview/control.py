"""Joint control in a preview run: the motors driven towards the plan's targets; in walks the
pelvis carried by the stabilised base along the plan's path (its height following the lower
sole onto the floor), and outside walks the robot on its own feet with stiff legs and no
support at all (see :meth:`twin.preview.run_state.RunState.update_phase`); the crane moved
along its path, and the wrench's working-stroke loads at the hand.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from robots.bullet import pb
from twin.preview.kinematics import heading_quaternion
from twin.preview.result import TIME_STEP_S
from twin.preview.run_state import RunState
from twin.preview.stance import rotation_of

log = logging.getLogger(__name__)

SOLE_PRELOAD_M: Final = -0.001  # the lowest sole's target height: 1 mm into the floor
SOLE_FOLLOW_GAIN: Final = 0.5  # fraction of the sole's height error corrected per control tick
SOLE_FOLLOW_MAX_M: Final = 0.15  # the most the hold's height may differ from the plan's
CONTROL_EVERY: Final = 1
COM_SPEED_FILTER: Final = 0.2
"""Low-pass share per control tick of the centre of mass's measured velocity."""
VELOCITY_GAIN: Final = 1.0
MAX_JOINT_SPEED_RAD_S: Final = 3.0
"""Standing, no torso, arm, neck or gripper target moves faster than this, and no leg target
faster than LEG_SPEED_RAD_S (as a robot's trajectory generator limits them): where the stance
takes over from a walk, its targets are centimetres from where the walk left the joints."""
LEG_SPEED_RAD_S: Final = 1.0
PLACED_S: Final = 0.6
"""A hand that let go of an item keeps its job this long in plan time (it lifts off)."""
LOAD_FILTER: Final = 0.2
"""Low-pass share per control tick of the feet's measured floor load (letting go)."""


class Control(RunState):
    """The controllers of a run (every CONTROL_EVERY physics steps) and the hand loads."""

    def _control(self, t_s: float) -> None:
        hall = self.hall
        tp = self.plan_time(t_s)
        te = self._eased(tp)
        sample, targets = self.table.at_array(te, self.plan_matrix)
        if self.gripper.any():
            targets = np.where(
                self.gripper, self.lower + (1.0 - sample.grip) * (self.upper - self.lower), targets
            )
        dt = CONTROL_EVERY * TIME_STEP_S
        previous = self._previous_targets if self._previous_targets is not None else targets
        velocities = (targets - previous) / dt
        self._previous_targets = targets
        x, y, yaw = sample.base_xy_yaw
        height = float(self._between(self.heights, te))
        self.update_phase(t_s)
        share, stepping = self.share, self.stepping
        if stepping and share < 1.0:  # taking hold: the legs soften as the stabiliser takes over
            gains = [
                g + share * (w - g)
                for w, g in zip(self.walk_gains, self.standing_gains, strict=True)
            ]
        elif stepping:
            gains = self.walk_gains
        elif share > 0.0:  # letting go: the legs stiffen as the stabiliser gives up the weight
            gains = [
                w + (1.0 - share) * (g - w)
                for w, g in zip(self.walk_gains, self.standing_gains, strict=True)
            ]
        else:
            gains = self.standing_gains
        if stepping:
            self._standing, self._letting_go = False, False
        if not stepping:
            commanded = self._balanced(targets, te, (x, y, height), yaw, sample.pelvis_pitch_rad)
        elif share < 1.0 and self._stance_last is not None:
            # a walk takes over from a stance: from the stance's last targets to the gait's
            # as the stabiliser takes hold (a jump between them spun the robot on its feet)
            commanded = self._stance_last + share * (targets - self._stance_last)
        else:
            commanded = targets
            self._stance_last = None
        pb.setJointMotorControlArray(
            hall.body, hall.motors, pb.POSITION_CONTROL,
            targetPositions=commanded.tolist(), targetVelocities=velocities.tolist(),
            forces=self.forces, positionGains=gains,
            velocityGains=[VELOCITY_GAIN] * self.n, physicsClientId=hall.client,
        )  # fmt: skip
        if share > 0.0 and stepping:
            # the sole follower integrates only once the stabiliser holds the weight: while it
            # takes hold the legs still carry the body, and a sagging body wound it up
            follow = self._sole_follow() if share >= 1.0 else self._sole_offset_m
            hall.carry((x, y, height + follow), yaw, sample.pelvis_pitch_rad, share)
        elif share > 0.0:  # letting go: the weight handed to the legs
            # a slack harness: it lifts what the feet do not yet carry, never more (lifting a
            # fixed share while the stiffening legs pushed threw the robot off the floor)
            contacts = pb.getContactPoints(hall.body, hall.floor, physicsClientId=hall.client)
            load = sum(float(c[9]) for c in contacts or ()) / hall.weight_n
            if not self._letting_go:  # from what the landed feet carry, not from nothing
                self._load_share, self._letting_go = load, True
            self._load_share += LOAD_FILTER * (load - self._load_share)
            hall.offload(share * min(1.0, max(0.0, 1.0 - self._load_share)))
        else:
            hall.release()
            hall.offload_n = 0.0
            self._load_share, self._letting_go = 0.0, False
            self._sole_offset_m = 0.0
        if self.c.crane_id is not None:
            bridge, trolley, hoist = _crane_at(self.c.crane_path, tp)
            hall.set_crane(self.c.crane_id, bridge, trolley, hoist)

    def _between(self, values: Any, tp: float) -> Any:
        """A per-keyframe value (float or array) at plan time ``tp``, straight between frames."""
        i = int(np.searchsorted(self.frame_times, tp, side="right")) - 1
        i = min(max(i, 0), len(values) - 1)
        value = values[i]
        if i + 1 < len(values):
            span = self.frame_times[i + 1] - self.frame_times[i]
            w = 0.0 if span <= 0 else min(1.0, max(0.0, (tp - self.frame_times[i]) / span))
            value = value + w * (values[i + 1] - value)
        return value

    def _balanced(
        self,
        targets: NDArray[np.float64],
        tp: float,
        pelvis_xyz: tuple[float, float, float],
        yaw_rad: float,
        pitch_rad: float,
    ) -> NDArray[np.float64]:
        """The motor targets with the legs' from the stance controller (see
        :mod:`twin.preview.stance`): feet where they are, the centre of mass where the plan
        has it over them, damped by its measured velocity."""
        stance = self.stance
        if stance is None:
            return targets
        hall = self.hall
        com_xy = self.com_world_xy()
        dt = CONTROL_EVERY * TIME_STEP_S
        if self._com_last is not None:
            raw = (com_xy - self._com_last) / dt
            self._com_speed = self._com_speed + COM_SPEED_FILTER * (raw - self._com_speed)
        self._com_last = com_xy
        planned = self._between(self.planned_com, tp)
        if not self._standing:
            position, orientation = pb.getBasePositionAndOrientation(
                hall.body, physicsClientId=hall.client
            )
            states = pb.getJointStates(hall.body, hall.motors, physicsClientId=hall.client)
            measured = np.array([s[0] for s in states])
            stance.begin(position, rotation_of(orientation), measured)
            self._stance_last = measured
            self._standing = True
        plan_base = np.eye(4)
        plan_base[:3, :3] = rotation_of(heading_quaternion(self.c.model, yaw_rad, pitch_rad))
        plan_base[:3, 3] = pelvis_xyz
        working = self._working_hands(tp)
        hands_xyz = self._free_hands_xyz(working)
        wanted = stance.targets(
            targets, plan_base, (float(planned[0]), float(planned[1])), com_xy,
            self._com_speed, yaw_rad, working, hands_xyz,
        )  # fmt: skip
        # no joint faster than a robot's trajectory generator allows
        step = np.where(self._leg_mask, LEG_SPEED_RAD_S, MAX_JOINT_SPEED_RAD_S) * dt
        last = self._stance_last if self._stance_last is not None else wanted
        commanded: NDArray[np.float64] = last + np.clip(wanted - last, -step, step)
        self._stance_last = commanded
        return commanded

    def _free_hands_xyz(self, working: frozenset[str]) -> list[NDArray[np.float64] | None]:
        """Each working hand's measured link frame (hall frame), in the order of the hand
        links; None for an idle hand (the stance does not use it) and for a hand that touches
        something (pressed on a bench top, it must not be pushed harder towards its point)."""
        hall = self.hall
        names = hall.link_names
        out: list[NDArray[np.float64] | None] = []
        for link in self.hand_link.values():
            if names[link] not in working or pb.getContactPoints(
                bodyA=hall.body, linkIndexA=link, physicsClientId=hall.client
            ):
                out.append(None)
                continue
            state = pb.getLinkState(hall.body, link, physicsClientId=hall.client)
            out.append(np.array(state[4]))
        return out

    def _working_hands(self, tp: float) -> frozenset[str]:
        """The hands' links with a job in the hall's frame at plan time ``tp``: a hand target
        in the running step, or an item held."""
        step = self.step_at(tp * self.time_scale)
        sides = {h.hand for h in self.c.hands if h.step == step}
        sides |= {
            g.hand for g in self.c.grasps
            if g.grasp_s <= tp and (g.release_s is None or tp < g.release_s + PLACED_S)
        }  # fmt: skip
        names = self.hall.link_names
        return frozenset(names[self.hand_link[s]] for s in sides if s in self.hand_link)

    def _eased(self, tp: float) -> float:
        """Plan time eased within its keyframe span (smoothstep): each move between keyframes
        starts and stops with zero speed, as a robot's trajectory generator does, instead of
        jumping to a constant speed (on its own feet, the jolt of a sudden stop topples it).
        Walks keep their linear gait."""
        if self.stepping:
            return tp
        times = self.frame_times
        i = int(np.searchsorted(times, tp, side="right")) - 1
        if i < 0 or i + 1 >= len(times):
            return tp
        span = float(times[i + 1] - times[i])
        if span <= 0.0:
            return tp
        u = (tp - float(times[i])) / span
        return float(times[i]) + span * u * u * (3.0 - 2.0 * u)

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
