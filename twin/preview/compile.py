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

With ``own_feet``, a step after a walk starts by standing still for SETTLE_AFTER_WALK_S, and
every keyframe outside walks is then balanced over the feet by whole-body
inverse kinematics (:mod:`twin.preview.balance`, placo): hands where the step put them, feet
where they stand, the centre of mass drawn to the middle of the support polygon (and against a
wrench stroke's push) by the ankles, hips and torso.

Every joint target is clipped into the model's limits (a 0.02 rad margin) and only joints the
model has are named, so the dispatch gate's limit and name checks hold for a compiled plan.

This module keeps the entry points and the step dispatch; the robot's state and the keyframes
are in :mod:`twin.preview.builder`, walks, turns and squats in :mod:`twin.preview.gait`, and the
hand steps in :mod:`twin.preview.hands`.
"""

from __future__ import annotations

import logging
from typing import Final

from robots import get_model
from scenes.model import Scene
from scenes.task_model import Step
from scenes.tasks import Task
from twin.plan.model import TaskPlan
from twin.preview.balance import WholeBody, balance_frames, whole_body_for
from twin.preview.builder import ARM_PARTS as ARM_PARTS
from twin.preview.builder import CARRY_ARM as CARRY_ARM
from twin.preview.builder import PACED_ARM_RAD_S, PACED_LEG_RAD_S, SLOW_PARTS
from twin.preview.builder import PLAN_LIMIT_MARGIN_RAD as PLAN_LIMIT_MARGIN_RAD
from twin.preview.builder import READY_ARM as READY_ARM
from twin.preview.builder import REST_ARM as REST_ARM
from twin.preview.builder import REST_S as REST_S
from twin.preview.builder import Vec3 as Vec3
from twin.preview.compiled import (
    REACH_TOLERANCE_M,
    CompiledTask,
    CompileNote,
    GraspSpan,
    HandTarget,
    PlannedBalance,
    StepSpan,
    WrenchLoad,
)
from twin.preview.gait import ARM_SWING_RAD as ARM_SWING_RAD
from twin.preview.gait import GAIT_FRAMES as GAIT_FRAMES
from twin.preview.gait import GAIT_HZ as GAIT_HZ
from twin.preview.gait import KNEE_BASE_RAD as KNEE_BASE_RAD
from twin.preview.gait import KNEE_LIFT_RAD as KNEE_LIFT_RAD
from twin.preview.gait import SHUFFLE_M as SHUFFLE_M
from twin.preview.gait import SHUFFLE_SPEED_M_S as SHUFFLE_SPEED_M_S
from twin.preview.gait import SPOT_SWING_RAD as SPOT_SWING_RAD
from twin.preview.gait import TURN_RATE_RAD_S as TURN_RATE_RAD_S
from twin.preview.gait import Gait
from twin.preview.gait import Where as Where
from twin.preview.hands import APPROACH_M as APPROACH_M
from twin.preview.hands import CALIBRATION_REACH_M as CALIBRATION_REACH_M
from twin.preview.hands import GRIP_ABOVE_M as GRIP_ABOVE_M
from twin.preview.hands import GRIP_GAP_M as GRIP_GAP_M
from twin.preview.hands import PLACE_ABOVE_M as PLACE_ABOVE_M
from twin.preview.hands import RETRACT_REACH_M as RETRACT_REACH_M
from twin.preview.hands import RETRACT_S as RETRACT_S
from twin.preview.hands import RETRACT_UP_M as RETRACT_UP_M
from twin.preview.hands import STRAIGHT_MOVE_M as STRAIGHT_MOVE_M
from twin.preview.hands import STROKE_M as STROKE_M
from twin.preview.hands import WAYPOINT_M as WAYPOINT_M
from twin.preview.hands import WRENCH_LEVER_FRACTION as WRENCH_LEVER_FRACTION
from twin.preview.hands import Hands
from twin.preview.kinematics import Kinematics
from twin.preview.pacing import repace, retimed

log = logging.getLogger(__name__)

SETTLE_AFTER_WALK_S: Final = 0.6
"""On its own feet, a step after a walk starts with the robot standing still this long: the
feet land and take the weight while the stabiliser lets go."""


def compile_plan(task: Task, scene: Scene, *, own_feet: bool = False) -> TaskPlan:
    """The plan of a task in a scene (see the module docstring)."""
    return compile_task(task, scene, own_feet=own_feet).plan


def compile_task(task: Task, scene: Scene, *, own_feet: bool = False) -> CompiledTask:
    """The plan and what the preview checks (see :class:`CompiledTask`). ``own_feet``: balance
    the standing poses over the feet for a robot that stands on its own outside walks."""
    robot = scene.robot(task.robot)
    model = get_model(robot.model)
    station = scene.station(robot.station)
    with Kinematics(model) as kinematics:
        builder = _Builder(task, scene, model, kinematics, station.pose.xyz, station.pose.yaw_rad)
        builder.settle_s = SETTLE_AFTER_WALK_S if own_feet else 0.0
        builder.paced = own_feet
        for index, step in enumerate(task.steps):
            builder.step(index, step)
        frames = builder.frames
        body = whole_body_for(model, kinematics) if own_feet else "carried throughout"
        if isinstance(body, WholeBody):
            frames, before_m, after_m = balance_frames(
                frames, builder.spans, body, builder.rest, builder.clip, builder.loads,
                builder.hands, [*builder.grasps, *builder.held.values()],
            )  # fmt: skip
            balance = PlannedBalance(True, "whole-body (placo)", before_m, after_m)
        else:
            balance = PlannedBalance(False, body, None, None)
    steps, hands, grasps = tuple(builder.spans), tuple(builder.hands), tuple(builder.grasps)
    loads, notes = tuple(builder.loads), tuple(builder.notes)
    if balance.whole_body:  # balancing moved the body: pace its moves again, and what follows
        walks = {s.index for s in builder.spans if s.kind == "walk"}
        frames, timed = repace(
            frames, walks, builder.rest, PACED_LEG_RAD_S, PACED_ARM_RAD_S, SLOW_PARTS
        )
        steps = retimed(steps, ("start_s", "end_s"), timed)
        hands = retimed(hands, ("t_s",), timed)
        grasps = retimed(grasps, ("grasp_s", "release_s"), timed)
        loads = retimed(loads, ("start_s", "end_s"), timed)
        notes = retimed(notes, ("t_s",), timed)
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
        steps=steps,
        hands=hands,
        grasps=grasps,
        loads=loads,
        notes=notes,
        crane_id=task.crane.id if task.crane is not None else None,
        crane_path=tuple(crane_path),
        rest_rad=builder.rest,
        balance=balance,
    )


class _Builder(Gait, Hands):
    """Walks through the steps, keeping the robot's state and emitting keyframes."""

    # -- steps --------------------------------------------------------------------------

    settle_s = 0.0

    def step(self, index: int, step: Step) -> None:
        self.current = index
        start = self.t
        label = step.kind
        after_walk = index > 0 and self.task.steps[index - 1].walk is not None
        if self.settle_s > 0.0 and after_walk and step.walk is None:
            self._emit(self.settle_s)  # stand still while the feet take the weight
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
