"""Compile a task into a plan: keyframes of joint targets, the base's path, the grip.

:func:`compile_plan` is what the preview engine and the hall emulator execute and what the
dispatch gate sends; :func:`compile_task` returns the plan with what the preview checks against
(step spans, hand targets and their IK residuals, grasp and release instants, the wrench's
resisting force during working strokes, the crane's path).

How each step becomes keyframes (robot heading frame: X forward; hall frame for the base):

* ``walk``: arms back to rest, turn on the spot towards the goal, walk (an alternating-leg gait,
  feet kept flat by the ankles), turn to the final heading, stand. The base (pelvis) follows the
  straight path; the preview carries it with a stabilised base.
* ``squat``: knees bend to ``depth``, the pelvis leans forward a little and the arms come forward
  (the centre of mass stays over the feet), and back, ``count`` times.
* ``reach``/``grasp``/``place``/``torque``: hand targets are solved by inverse kinematics at
  compile time (:class:`twin.preview.kinematics.Kinematics`, arm joints only, inside the joint
  limits less a margin), trying a few work stances (upright, leaning forward, knees bent) and
  keeping the first that reaches, else the closest. The feet stay where they stand: the pelvis
  moves with the stance.
* ``calibrate``: the sensor-array pose sequence (arms up, out, torso turned, ...), each moved to
  and held.
* ``wait``: hold still.

Every joint target is clipped into the model's limits (a 0.02 rad margin) and only joints the
model has are named, so the dispatch gate's limit and name checks hold for a compiled plan.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Final

from robots import RobotModel, get_model
from scenes.model import Scene
from scenes.task_model import Hand, Step, Target
from scenes.tasks import Task, item_on_bench, item_top, target_point
from twin.preview.compiled import (
    REACH_TOLERANCE_M,
    CompiledTask,
    CompileNote,
    GraspSpan,
    HandTarget,
    StepSpan,
    WrenchLoad,
)
from twin.preview.kinematics import IkSolution, Kinematics, hand_joint
from twin.preview.plan import PlanFrame, TaskPlan

log = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]
Where = Callable[[float], tuple[tuple[float, float], float]]
"""``where(w) -> ((x, y), yaw)``: the base along a motion, w from 0 to 1."""

PLAN_LIMIT_MARGIN_RAD: Final = 0.02
TURN_RATE_RAD_S: Final = 0.8
GAIT_HZ: Final = 0.9
GAIT_FRAMES: Final = 8
SPOT_SWING_RAD: Final = 0.08
KNEE_BASE_RAD: Final = 0.12
KNEE_LIFT_RAD: Final = 0.38
ARM_SWING_RAD: Final = 0.3
REST_S: Final = 0.6
SHUFFLE_M: Final = 1.0
"""Walks shorter than this shuffle to the goal without turning towards it first."""
SHUFFLE_SPEED_M_S: Final = 0.25
APPROACH_M: Final = 0.08
RETRACT_REACH_M: Final = 0.2
ARM_PARTS: Final = ("shoulder", "elbow", "wrist", "hand", "gripper")
PLACE_ABOVE_M: Final = 0.01
"""An item is let go this far above where it rests (so the arm never presses it down)."""
RETRACT_UP_M: Final = 0.08
RETRACT_S: Final = 0.6
STRAIGHT_MOVE_M: Final = 0.25
"""Hand moves this short in a fixed stance go in a straight line (waypoints WAYPOINT_M apart)."""
WAYPOINT_M: Final = 0.03
GRIP_ABOVE_M: Final = 0.07
"""The hand's centre of mass sits this far above an item's top when it grasps it."""
STROKE_M: Final = 0.10
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


def compile_plan(task: Task, scene: Scene) -> TaskPlan:
    """The plan of a task in a scene (see the module docstring)."""
    return compile_task(task, scene).plan


def compile_task(task: Task, scene: Scene) -> CompiledTask:
    """The plan and what the preview checks (see :class:`CompiledTask`)."""
    robot = scene.robot(task.robot)
    model = get_model(robot.model)
    station = scene.station(robot.station)
    with Kinematics(model) as kinematics:
        builder = _Builder(task, scene, model, kinematics, station.pose.xyz, station.pose.yaw_rad)
        for index, step in enumerate(task.steps):
            builder.step(index, step)
        frames = builder.frames
    crane_path: list[tuple[float, float, float, float]] = []
    if task.crane is not None:
        crane = next(c for c in scene.cranes if c.id == task.crane.id)
        if task.crane.path[0].at > 0.0:
            crane_path.append((0.0, crane.home.bridge, crane.home.trolley, crane.home.hoist))
        crane_path.extend((p.at, p.bridge, p.trolley, p.hoist) for p in task.crane.path)
    return CompiledTask(
        task=task,
        model=model,
        plan=TaskPlan(task.name, task.robot, frames),
        steps=tuple(builder.spans),
        hands=tuple(builder.hands),
        grasps=tuple(builder.grasps),
        loads=tuple(builder.loads),
        notes=tuple(builder.notes),
        crane_id=task.crane.id if task.crane is not None else None,
        crane_path=tuple(crane_path),
        rest_rad=builder.rest,
    )


def _arm(side: str, values: Mapping[str, float]) -> dict[str, float]:
    """One arm's angles given as for the left arm; roll and yaw mirrored for the right."""
    sign = -1.0 if side == "right" else 1.0
    return {
        f"{side}_{k}": sign * v if k.endswith(("_roll", "_yaw")) else v for k, v in values.items()
    }


REST_ARM: Final = {"shoulder_pitch": 0.0, "shoulder_roll": 0.12, "elbow": -0.3}
READY_ARM: Final = {"shoulder_pitch": 0.3, "shoulder_roll": 0.15, "elbow": -2.1}
"""The hand up at the chest (upper arm back, elbow bent): on the way to a target above the hanging
hand, the forearm comes up close to the body instead of sweeping forward into a bench."""
CARRY_ARM: Final = {"shoulder_pitch": -0.7, "shoulder_roll": 0.15, "elbow": -1.4}
"""A hand holding something while the robot walks."""


class _Builder:
    """Walks through the steps, keeping the robot's state and emitting keyframes."""

    def __init__(
        self,
        task: Task,
        scene: Scene,
        model: RobotModel,
        kinematics: Kinematics,
        start_xyz: Vec3,
        start_yaw_rad: float,
    ) -> None:
        self.task = task
        self.scene = scene
        self.model = model
        self.kin = kinematics
        self.names = [
            model.profile.canonical_name(j.name)
            for j in model.joints
            if j.kind != "spherical" and model.profile.canonical_name(j.name) != j.name
        ]
        self.limits = {n: (model.joint(n).lower, model.joint(n).upper) for n in self.names}
        self.rest = self._clip(
            {n: 0.0 for n in self.names} | _arm("left", REST_ARM) | _arm("right", REST_ARM)
        )
        self.joints = dict(self.rest)
        self.pitch = 0.0
        self.grip = 0.0
        self.yaw = start_yaw_rad
        fwd, left, _ = kinematics.pelvis_over_feet(self.joints)
        self.feet = self._feet_from_pelvis((start_xyz[0], start_xyz[1]), fwd, left)
        self.t = 0.0
        self.frames: list[PlanFrame] = []
        self.spans: list[StepSpan] = []
        self.hands: list[HandTarget] = []
        self.grasps: list[GraspSpan] = []
        self.loads: list[WrenchLoad] = []
        self.notes: list[CompileNote] = []
        self.held: dict[str, GraspSpan] = {}
        self.current = 0
        self._emit(0.0)

    # -- frames -------------------------------------------------------------------------

    def _clip(self, joints: Mapping[str, float]) -> dict[str, float]:
        out = {}
        for name, value in joints.items():
            if name not in self.limits:
                continue
            lo, hi = self.limits[name]
            lo = lo + PLAN_LIMIT_MARGIN_RAD if math.isfinite(lo) else -math.pi
            hi = hi - PLAN_LIMIT_MARGIN_RAD if math.isfinite(hi) else math.pi
            out[name] = min(max(value, min(lo, hi)), max(lo, hi))
        return out

    def _feet_from_pelvis(
        self, pelvis: tuple[float, float], fwd: float, left: float
    ) -> tuple[float, float]:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return (pelvis[0] - c * fwd + s * left, pelvis[1] - s * fwd - c * left)

    def pelvis_xy(self) -> tuple[float, float]:
        """Where the pelvis stands over the feet for the current pose."""
        fwd, left, _ = self.kin.pelvis_over_feet(self.joints, self.pitch)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return (self.feet[0] + c * fwd - s * left, self.feet[1] + s * fwd + c * left)

    def pelvis_xyz(self) -> Vec3:
        """Pelvis position (hall frame) for the current pose, feet flat on the floor."""
        fwd, left, height = self.kin.pelvis_over_feet(self.joints, self.pitch)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return (self.feet[0] + c * fwd - s * left, self.feet[1] + s * fwd + c * left, height)

    def _emit(self, dt_s: float, base_xy: tuple[float, float] | None = None) -> None:
        self.t += dt_s
        x, y = base_xy if base_xy is not None else self.pelvis_xy()
        self.frames.append(
            PlanFrame(
                t_s=round(self.t, 6),
                step=self.current,
                base_xy_yaw=(x, y, self.yaw),
                joints_rad=self._clip(self.joints),
                grip=self.grip,
                pelvis_pitch_rad=self.pitch,
            )
        )

    def _set(self, joints: Mapping[str, float]) -> None:
        self.joints = self.joints | self._clip(joints)

    def _legs(self, knee: float, lean: float) -> dict[str, float]:
        """Both legs bent ``knee`` with the pelvis leaning ``lean``, feet flat."""
        out: dict[str, float] = {}
        for side in ("left", "right"):
            out[f"{side}_hip_pitch"] = -knee / 2.0 - lean
            out[f"{side}_knee"] = knee
            out[f"{side}_ankle_pitch"] = -knee / 2.0
        return out

    # -- steps --------------------------------------------------------------------------

    def step(self, index: int, step: Step) -> None:
        self.current = index
        start = self.t
        label = step.kind
        if step.walk is not None:
            label = self._walk(step)
        elif step.squat is not None:
            self._squat(step)
            label = f"squat x{step.squat.count}"
        elif step.reach is not None:
            label = self._reach(index, step)
        elif step.grasp is not None:
            label = self._grasp(index, step)
        elif step.place is not None:
            label = self._place(index, step)
        elif step.torque is not None:
            label = self._torque(index, step)
        elif step.calibrate is not None:
            label = self._calibrate(index, step)
        elif step.wait is not None:
            self._emit(step.wait)
            label = f"wait {step.wait:g} s"
        self.spans.append(StepSpan(index, step.kind, label, start, self.t))

    def _to_rest(self) -> None:
        """Arms (unless holding), lean and knees back to standing, if not there already."""
        wanted = dict(self.rest)
        for span in self.held.values():  # a holding arm carries in front of the body
            arm = tuple(f"{span.hand}_{part}" for part in ARM_PARTS)
            wanted = {k: v for k, v in wanted.items() if not k.startswith(arm)}
            wanted |= self._clip(_arm(span.hand, CARRY_ARM))
        wanted = {k: v for k, v in wanted.items() if "hip" not in k or k.endswith("pitch")}
        if all(abs(self.joints.get(k, 0.0) - v) < 1e-6 for k, v in wanted.items()) and (
            self.pitch == 0.0
        ):
            return
        self._set(wanted)
        self.pitch = 0.0
        self._emit(REST_S)

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

    # -- hands --------------------------------------------------------------------------

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
        grip = (top[0], top[1], top[2] + GRIP_ABOVE_M)
        above = (grip[0], grip[1], grip[2] + APPROACH_M)
        stance = self._move_hand(index, grasp.hand, above, 0.5 * grasp.duration, "above item")
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
        put = (at[0], at[1], at[2] + item.size[2] + GRIP_ABOVE_M + PLACE_ABOVE_M)
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
        # the stroke sweeps across the robot (its left/right axis), right to left for the right
        # hand; the bolt pushes back against the sweep
        sign = 1.0 if hand == "right" else -1.0
        left = (-math.sin(self.yaw) * sign, math.cos(self.yaw) * sign, 0.0)
        half = STROKE_M / 2.0
        begin = (bolt[0] - left[0] * half, bolt[1] - left[1] * half, bolt[2])
        end = (bolt[0] + left[0] * half, bolt[1] + left[1] * half, bolt[2])
        stance = self._move_hand(index, hand, begin, 1.0, "bolt")
        for _ in range(torque.strokes):
            start = self.t
            self._move_hand(index, hand, end, 0.6 * torque.stroke, "stroke end", stance)
            self.loads.append(
                WrenchLoad(index, hand, start, self.t, force, (-left[0], -left[1], -left[2]))
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


def _leg_phase(u: float) -> tuple[float, float]:
    """One leg over a gait cycle ``u`` in [0, 1): (thigh swing -1 forward .. 1 back, knee lift
    0..1); stance in the first half, swing in the second."""
    if u < 0.5:
        return -1.0 + 4.0 * u, 0.0
    w = (u - 0.5) / 0.5
    return 1.0 - 2.0 * (w * w * (3.0 - 2.0 * w)), math.sin(math.pi * w)


def _describe(target: Target) -> str:
    if target.xyz is not None:
        return "({:g}, {:g}, {:g})".format(*target.xyz)
    name = f"bench:{target.bench}" if target.bench is not None else f"item:{target.item}"
    if target.offset != (0.0, 0.0, 0.0):
        return name + " + ({:g}, {:g}, {:g})".format(*target.offset)
    return name


__all__ = [
    "REACH_TOLERANCE_M",
    "CompileNote",
    "CompiledTask",
    "GraspSpan",
    "HandTarget",
    "StepSpan",
    "WrenchLoad",
    "compile_plan",
    "compile_task",
]
