"""Hand steps of the task→plan compiler: hand targets solved by IK in a work stance, hand moves
(straight through waypoints near an item, over the chest from below), retracts, and the reach,
grasp, place, torque and calibrate steps built from them.
"""

from __future__ import annotations

import logging
import math
from typing import Final

from scenes.task_model import Hand, Step, Target
from scenes.tasks import item_on_bench, item_top, target_point
from twin.preview.builder import READY_ARM, BuilderCore, Vec3, _arm
from twin.preview.compiled import CompileNote, GraspSpan, HandTarget, WrenchLoad
from twin.preview.kinematics import IkSolution, hand_joint

log = logging.getLogger(__name__)

APPROACH_M: Final = 0.08
RETRACT_REACH_M: Final = 0.2
PLACE_ABOVE_M: Final = 0.01
"""An item is let go this far above where it rests (so the arm never presses it down)."""
RETRACT_UP_M: Final = 0.08
RETRACT_S: Final = 0.6
STRAIGHT_MOVE_M: Final = 0.25
"""Hand moves this short in a fixed stance go in a straight line (waypoints WAYPOINT_M apart)."""
WAYPOINT_M: Final = 0.03
GRIP_ABOVE_M: Final = 0.07
"""Where a hand first goes above an item to grasp (its centre of mass this far above the top,
plus APPROACH_M) before the grip height is fitted to the hand's pose (_grip_above_m)."""
GRIP_GAP_M: Final = 0.008
"""A grasping hand's collision shape stops this far above the item's top (within the grasp's
GRASP_REACH_M of 2 cm, with room for the hand's tilt and the arm's lag)."""
STROKE_M: Final = 0.10
SETTLE_AT_WORK_S: Final = 0.5
"""On its own feet, the hand holds at the bolt this long before the first stroke."""
WRENCH_LEVER_FRACTION: Final = 0.8
CALIBRATION_REACH_M: Final = 1.6
_STANCES: Final = ((0.0, 0.0), (0.15, 0.0), (0.3, 0.0), (0.3, 0.5), (0.45, 0.5), (0.45, 0.9))
"""(pelvis lean, knee bend) work stances tried in order for hand targets."""

_CALIBRATION: Final = (
    {"shoulder_pitch": -1.5, "shoulder_roll": 0.1, "elbow": -0.1, "neck_pitch": 0.2},
    {"shoulder_pitch": 0.0, "shoulder_roll": 1.4, "elbow": -0.05, "neck_pitch": 0.0},
    {"shoulder_roll": 0.7, "elbow": -0.3, "spine_yaw": 0.5, "neck_yaw": 0.4},
    {"shoulder_roll": 0.7, "elbow": -0.3, "spine_yaw": -0.5, "neck_yaw": -0.4},
    {"shoulder_pitch": -1.0, "shoulder_roll": 0.2, "elbow": -0.3, "spine_yaw": 0.0},
)


class Hands(BuilderCore):
    """Hand moves, stances and retracts; reach, grasp, place, torque and calibrate keyframes."""

    def _solve(
        self, hand: Hand, target: Vec3, *, stance: tuple[float, float] | None = None
    ) -> tuple[IkSolution, tuple[float, float]]:
        """IK in the first work stance that reaches (or a given one); the best if none does."""
        stances = [stance] if stance is not None else list(_STANCES)
        best: tuple[IkSolution, tuple[float, float]] | None = None
        saved = (dict(self.joints), self.pitch)
        for lean, knee in stances:
            self.joints = self.joints | self._clip(self._legs(knee, lean))
            self.pitch = lean
            base = self.pelvis_xyz()
            solution = self.kin.solve_hand(hand, target, self.joints, base, self.yaw, lean)
            self.joints, self.pitch = dict(saved[0]), saved[1]
            if best is None or solution.residual_m < best[0].residual_m:
                best = (solution, (lean, knee))
            if solution.residual_m <= 0.002:  # first stance that reaches with room to spare
                break
        assert best is not None
        return best

    def _move_hand(
        self,
        index: int,
        hand: Hand,
        target: Vec3,
        duration: float,
        what: str,
        stance: tuple[float, float] | None = None,
        *,
        straight: bool = False,
    ) -> tuple[float, float]:
        """Emit a frame with the hand at ``target`` after ``duration``; returns the stance.
        ``straight``: through waypoints whatever the distance (with a ``stance``).

        From a hand well below the target, the arm first comes up in front of the chest (so it
        goes over a bench's edge, not into it)."""
        now = self._hand_now(hand)
        gap = math.dist(now, target)
        if stance is not None and gap > 0.0 and (straight or gap <= STRAIGHT_MOVE_M):
            # a short move near an item (descend, lift, stroke): straight, through waypoints
            # each solved from the last, so the hand does not swing along the bench top
            count = max(2, math.ceil(gap / WAYPOINT_M))
            for k in range(1, count + 1):
                w = k / count
                point = (
                    now[0] + w * (target[0] - now[0]),
                    now[1] + w * (target[1] - now[1]),
                    now[2] + w * (target[2] - now[2]),
                )
                solution, chosen = self._solve(hand, point, stance=stance)
                self._set({**self._legs(chosen[1], chosen[0]), **solution.joints_rad})
                self.pitch = chosen[0]
                self._emit(duration / count)
            self.hands.append(HandTarget(index, self.t, hand, target, solution.residual_m, what))
            return chosen
        solution, chosen = self._solve(hand, target, stance=stance)
        if now[2] < target[2] - 0.05:  # upright still: leaning first would swing it in
            self._set(_arm(hand, READY_ARM))
            self._emit(0.5 * duration)
            duration *= 0.5
        self._set({**self._legs(chosen[1], chosen[0]), **solution.joints_rad})
        self.pitch = chosen[0]
        self._emit(duration)
        self.hands.append(HandTarget(index, self.t, hand, target, solution.residual_m, what))
        return chosen

    def _retract(self, index: int, hand: Hand, stance: tuple[float, float]) -> None:
        """Take the hand straight up, then back to RETRACT_REACH_M in front of the pelvis, clear
        of the bench it worked over, before the arm swings down to rest."""
        x, y, z = self._hand_now(hand)
        self._move_hand(index, hand, (x, y, z + RETRACT_UP_M), RETRACT_S / 2, "lift off", stance)
        px, py = self.pelvis_xy()
        away = math.hypot(px - x, py - y)
        back = max(0.0, away - RETRACT_REACH_M)
        ux, uy = ((px - x) / away, (py - y) / away) if away > 1e-6 else (0.0, 0.0)
        to = (x + ux * back, y + uy * back, z + RETRACT_UP_M)
        self._move_hand(index, hand, to, RETRACT_S, "retract", stance, straight=True)

    def _grip_above_m(self, hand: Hand, top: Vec3, stance: tuple[float, float]) -> float:
        """How far above an item's ``top`` the hand's centre of mass goes to grasp it: so that
        the hand's collision shape, in the pose the arm takes there, stops GRIP_GAP_M above
        the top (a hand held flat reaches less far below its centre than one hanging)."""
        joint = hand_joint(self.model, hand)
        above = GRIP_ABOVE_M
        for _ in range(3):
            solution, (lean, knee) = self._solve(hand, (top[0], top[1], top[2] + above),
                                                 stance=stance)  # fmt: skip
            saved = (self.joints, self.pitch)
            self.joints = self.joints | self._clip(self._legs(knee, lean)) | solution.joints_rad
            self.pitch = lean
            self.kin.pose(self.joints, self.pelvis_xyz(), self.yaw, self.pitch)
            self.joints, self.pitch = saved
            depth = self.kin.depth_below_com_m(joint) + GRIP_GAP_M
            if abs(depth - above) < 0.002:
                break
            above = depth
        return depth

    def _hand_now(self, hand: Hand) -> Vec3:
        base = self.pelvis_xyz()
        self.kin.pose(self.joints, base, self.yaw, self.pitch)
        return self.kin.link_com(hand_joint(self.model, hand))

    def _reach(self, index: int, step: Step) -> str:
        reach = step.reach
        assert reach is not None
        target = target_point(reach.target, self.scene)
        stance = self._move_hand(index, reach.hand, target, reach.duration, _describe(reach.target))
        if reach.hold > 0:
            self._emit(reach.hold)
        self._retract(index, reach.hand, stance)
        return f"reach {_describe(reach.target)} ({reach.hand} hand)"

    def _grasp(self, index: int, step: Step) -> str:
        grasp = step.grasp
        assert grasp is not None
        top = item_top(self.scene, grasp.item)
        above = (top[0], top[1], top[2] + GRIP_ABOVE_M + APPROACH_M)
        stance = self._move_hand(index, grasp.hand, above, 0.5 * grasp.duration, "above item")
        grip_above = self.grip_above_m[grasp.item] = self._grip_above_m(grasp.hand, top, stance)
        grip = (top[0], top[1], top[2] + grip_above)
        above = (grip[0], grip[1], grip[2] + APPROACH_M)
        self._move_hand(index, grasp.hand, grip, 0.3 * grasp.duration, f"item:{grasp.item}",
                        stance)  # fmt: skip
        self.grip = 1.0
        self._emit(0.2 * grasp.duration)
        span = GraspSpan(grasp.item, grasp.hand, index, self.t)
        self.held[grasp.item] = span
        self._move_hand(index, grasp.hand, above, 0.5, "lift", stance)
        return f"grasp {grasp.item} ({grasp.hand} hand)"

    def _place(self, index: int, step: Step) -> str:
        place = step.place
        assert place is not None
        span = self.held.pop(place.item)
        _, item = item_on_bench(self.scene, place.item)
        at = target_point(place.at, self.scene)
        grip_above = self.grip_above_m.pop(place.item, GRIP_ABOVE_M)
        put = (at[0], at[1], at[2] + item.size[2] + grip_above + PLACE_ABOVE_M)
        above = (put[0], put[1], put[2] + APPROACH_M)
        stance = self._move_hand(index, span.hand, above, 0.5 * place.duration, "above place")
        self._move_hand(index, span.hand, put, 0.25 * place.duration, _describe(place.at), stance)
        self.grip = 0.0
        self._emit(0.15 * place.duration)
        centre = (at[0], at[1], at[2] + item.size[2] / 2.0)
        done = GraspSpan(span.item, span.hand, span.grasp_step, span.grasp_s, self.t, index, centre)
        self.grasps.append(done)
        self._retract(index, span.hand, stance)
        return f"place {place.item} at {_describe(place.at)}"

    def _torque(self, index: int, step: Step) -> str:
        torque = step.torque
        assert torque is not None
        span = self.held[torque.wrench]
        hand = span.hand
        bolt = (
            target_point(torque.at, self.scene) if torque.at is not None else self._hand_now(hand)
        )
        _, wrench = item_on_bench(self.scene, torque.wrench)
        lever = WRENCH_LEVER_FRACTION * max(wrench.size[0], wrench.size[1])
        force = torque.torque / lever
        # the handle points to the hand's side and each working stroke pulls it towards the
        # body (along the robot's forward axis), as a person pulls a wrench: the bolt pushes the
        # hand away, and the feet feel that push as a tipping moment the body leans against.
        # (A stroke across the body turned the robot on its feet: the push, about 0.7 m in front
        # of them, twists it about the vertical harder than the soles' friction holds.)
        back = (-math.cos(self.yaw), -math.sin(self.yaw), 0.0)
        half = STROKE_M / 2.0
        begin = (bolt[0] - back[0] * half, bolt[1] - back[1] * half, bolt[2])
        end = (bolt[0] + back[0] * half, bolt[1] + back[1] * half, bolt[2])
        stance = self._move_hand(index, hand, begin, 1.0, "bolt")
        if self.paced:  # on its own feet the body arrives after the plan: let it settle
            self._emit(SETTLE_AT_WORK_S)
        for _ in range(torque.strokes):
            start = self.t
            self._move_hand(index, hand, end, 0.6 * torque.stroke, "stroke end", stance)
            self.loads.append(
                WrenchLoad(index, hand, start, self.t, force, (-back[0], -back[1], -back[2]))
            )
            self._move_hand(index, hand, begin, 0.4 * torque.stroke, "stroke start", stance)
        return f"torque {torque.wrench} to {torque.torque:g} N*m ({torque.strokes} strokes)"

    def _calibrate(self, index: int, step: Step) -> str:
        calibrate = step.calibrate
        assert calibrate is not None
        if self.held:
            held = ", ".join(self.held)
            self.notes.append(
                CompileNote("reach", index, self.t, f"calibration with {held} still in hand")
            )
        self._to_rest()
        array = item_top(self.scene, calibrate.array)
        pelvis = self.pelvis_xy()
        away = math.hypot(array[0] - pelvis[0], array[1] - pelvis[1])
        if away > CALIBRATION_REACH_M:
            self.notes.append(
                CompileNote(
                    "reach", index, self.t,
                    f"robot is {away:.2f} m from item:{calibrate.array}; calibration needs it "
                    f"within {CALIBRATION_REACH_M:g} m (walk there first)",
                )
            )  # fmt: skip
        for pose in _CALIBRATION[: calibrate.poses]:
            arms = {k: v for k, v in pose.items() if not k.startswith(("spine", "neck"))}
            self._set({**_arm("left", arms), **_arm("right", arms)})
            self._set({k: v for k, v in pose.items() if k.startswith(("spine", "neck"))})
            self._emit(calibrate.move)
            self._emit(calibrate.hold)
        self._set({**self.rest})
        self._emit(calibrate.move)
        return f"calibrate at {calibrate.array} ({calibrate.poses} poses)"


def _describe(target: Target) -> str:
    if target.xyz is not None:
        return "({:g}, {:g}, {:g})".format(*target.xyz)
    name = f"bench:{target.bench}" if target.bench is not None else f"item:{target.item}"
    if target.offset != (0.0, 0.0, 0.0):
        return name + " + ({:g}, {:g}, {:g})".format(*target.offset)
    return name
