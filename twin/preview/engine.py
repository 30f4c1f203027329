"""The preview engine: run a compiled task in PyBullet dynamics and judge it.

One run (:func:`run_preview`) builds a :class:`twin.preview.hall.PreviewHall`, then steps it at
240 Hz as fast as it goes:

* **controllers** (120 Hz): every joint under PyBullet position control towards the plan's
  targets (the targets' rate fed forward as velocity), the model's effort rating as the force
  limit; the pelvis carried by the stabiliser along the plan's base path at the height the legs
  give (gait: ``stabilised base``); grasps as a fixed constraint from the hand to the item whose
  force is bounded by the grip (:data:`GRIP_FORCE_N` times the friction scale), released at the
  plan's release instant; the bolt resisting each working stroke of a torque wrench with a force
  at the hand (torque / lever).
* **crane**: moved along the task's crane path every step (kinematically), or held at home.
* **checks** (60 Hz; balance 20 Hz): see :mod:`twin.preview.checks`; reach is judged at compile
  time (IK residual) and again in dynamics (hand error when the hand should be there), grasp at
  the grasp instant (hand close enough) and while held (item still in hand), place after release
  (item where it should be), and the deadline against the cycle time.

A :class:`Variation` perturbs one run for robustness trials (friction, masses, timing, sensor
noise), drawn from its seed; :meth:`Variation.nominal` is the task as planned.

This module keeps the run loop, the events and the result; the run's state and set-up are in
:mod:`twin.preview.run_state`, the controllers in :mod:`twin.preview.control`, grasps and the
hand checks in :mod:`twin.preview.grasping`, and the checks glue in :mod:`twin.preview.run_checks`.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final

from robots.bullet import pb
from scenes.model import Scene
from scenes.tasks import Task
from twin.preview.compile import REACH_TOLERANCE_M, CompiledTask, compile_task
from twin.preview.control import CONTROL_EVERY as CONTROL_EVERY
from twin.preview.control import SOLE_FOLLOW_GAIN as SOLE_FOLLOW_GAIN
from twin.preview.control import SOLE_FOLLOW_MAX_M as SOLE_FOLLOW_MAX_M
from twin.preview.control import SOLE_PRELOAD_M as SOLE_PRELOAD_M
from twin.preview.control import VELOCITY_GAIN as VELOCITY_GAIN
from twin.preview.control import Control
from twin.preview.grasping import DROP_M as DROP_M
from twin.preview.grasping import DYNAMIC_REACH_TOLERANCE_M as DYNAMIC_REACH_TOLERANCE_M
from twin.preview.grasping import GRASP_REACH_M as GRASP_REACH_M
from twin.preview.grasping import GRIP_FORCE_N as GRIP_FORCE_N
from twin.preview.grasping import HAND_SETTLE_S as HAND_SETTLE_S
from twin.preview.grasping import PLACE_TOLERANCE_M as PLACE_TOLERANCE_M
from twin.preview.grasping import format_xyz
from twin.preview.result import TIME_STEP_S, PreviewResult, Variation
from twin.preview.run_checks import RunChecks
from twin.preview.run_state import BALANCE_EVERY as BALANCE_EVERY
from twin.preview.run_state import CHECK_EVERY as CHECK_EVERY
from twin.preview.run_state import LEG_PARTS as LEG_PARTS
from twin.preview.run_state import LEG_POSITION_GAIN as LEG_POSITION_GAIN
from twin.preview.run_state import POSITION_GAIN as POSITION_GAIN
from twin.preview.run_state import Observer as Observer
from twin.preview.support import finite_or_none
from twin.preview.surroundings import Surroundings

log = logging.getLogger(__name__)

SETTLE_S: Final = 0.5


def run_preview(
    task: Task,
    scene: Scene,
    *,
    variation: Variation | None = None,
    compiled: CompiledTask | None = None,
    observer: Observer | None = None,
    keep_series: bool = True,
    surroundings: Surroundings | None = None,
    own_feet: bool = False,
) -> PreviewResult:
    """Run one preview of ``task`` in ``scene`` (see the module docstring); ``surroundings``:
    where the other robots and the cranes are (default: as the scene has them); ``own_feet``:
    compile for and run on the robot's own feet outside walks (ignored with ``compiled``,
    which says it itself)."""
    compiled = compiled or compile_task(task, scene, own_feet=own_feet)
    variation = variation or Variation.nominal()
    return _Run(compiled, scene, variation, observer, keep_series, surroundings).run()


class _Run(Control, RunChecks):
    """The state of one run; :meth:`run` steps it to the end."""

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> PreviewResult:
        started = time.perf_counter()
        try:
            self._setup()
            end_s = self.c.plan.duration_s * self.time_scale + SETTLE_S
            steps = math.ceil(end_s / TIME_STEP_S)
            self.events = self._events()
            for k in range(steps):
                t = k * TIME_STEP_S
                if k % CONTROL_EVERY == 0:
                    self._control(t)
                self._loads(t)
                self.hall.step()
                t_after = (k + 1) * TIME_STEP_S
                while self.events and self.events[0][0] <= t_after:
                    _, _, action = self.events.pop(0)
                    action(t_after)
                if (k + 1) % CHECK_EVERY == 0:
                    self._check(t_after, (k + 1) % BALANCE_EVERY == 0)
                if self.observer is not None:
                    self.observer(t_after, self.hall)
                if self.fallen:  # on its own feet: what follows a fall says nothing more
                    break
            simulated_s = (k + 1) * TIME_STEP_S if self.fallen else steps * TIME_STEP_S
            result = self._result(simulated_s, time.perf_counter() - started)
        finally:
            self.hall.close()
        return result

    # -- events (grasp, release, hand targets) -------------------------------------------

    def _events(self) -> list[tuple[float, int, Callable[[float], None]]]:
        events: list[tuple[float, int, Callable[[float], None]]] = []
        scale = self.time_scale
        for span in self.c.grasps:
            events.append((span.grasp_s * scale, len(events), _bind(self._grasp, span)))
            if span.release_s is not None:
                events.append((span.release_s * scale, len(events), _bind(self._release, span)))
                settle = (span.release_s + 0.6) * scale
                events.append((settle, len(events), _bind(self._placed, span)))
        for target in self.c.hands:
            # checked once the hand has had time to settle, but no later than the plan holds
            # the pose: a plan that moves straight on is judged on arrival
            at = min(target.t_s + HAND_SETTLE_S, _held_until(self.c.plan.frames, target.t_s))
            events.append((at * scale, len(events), _bind(self._hand_check, target)))
        for note in self.c.notes:
            self.checks.raise_once(note.kind, note.detail, note.step, note.t_s * scale, note.detail)
        for target in self.c.hands:
            if not target.reached:
                self.checks.raise_once(
                    "reach", f"{target.step}:{target.what}", target.step, target.t_s * scale,
                    f"{target.hand} hand cannot reach {target.what} "
                    f"({format_xyz(target.target_m)}): IK residual {target.residual_m:.3f} m "
                    f"(tolerance {REACH_TOLERANCE_M:g} m)",
                )  # fmt: skip
        if self.var.push_delta_v_m_s > 0.0:  # a lesson's push, halfway through the plan
            at = 0.5 * self.c.plan.duration_s * scale
            events.append((at, len(events), self._push))
        events.sort(key=lambda e: (e[0], e[1]))
        return events

    def _push(self, t_s: float) -> None:
        """Shove the robot's base sideways (its own +y) by the variation's speed change."""
        client, body = self.hall.client, self.hall.body
        linear, angular = pb.getBaseVelocity(body, physicsClientId=client)
        _, orientation = pb.getBasePositionAndOrientation(body, physicsClientId=client)
        side = pb.rotateVector(orientation, (0.0, 1.0, 0.0))
        dv = self.var.push_delta_v_m_s
        pb.resetBaseVelocity(
            body,
            (linear[0] + dv * side[0], linear[1] + dv * side[1], linear[2]),
            angular,
            physicsClientId=client,
        )

    # -- result -------------------------------------------------------------------------

    def _result(self, simulated_s: float, wall_s: float) -> PreviewResult:
        checks = self.checks
        cycle = self.c.plan.duration_s * self.time_scale
        deadline = self.c.task.limits.deadline
        if deadline is not None and cycle > deadline:
            last = self.c.steps[-1].index if self.c.steps else 0
            checks.raise_once(
                "deadline", "task", last, cycle,
                f"cycle time {cycle:.2f} s is over the deadline of {deadline:g} s",
            )  # fmt: skip
        reasons = sorted(checks.reasons, key=lambda r: (r.time_s, r.kind))
        series = checks.series
        support = self.support
        return PreviewResult(
            task=self.c.task.name,
            robot=self.c.task.robot,
            passed=not reasons,
            reasons=reasons,
            cycle_time_s=cycle,
            simulated_s=simulated_s,
            wall_s=wall_s,
            min_clearance_m=checks.min_clearance,
            min_clearance_to=checks.min_clearance_to,
            max_work_contact_force_n=checks.max_work_contact_n,
            max_work_contact_on=checks.max_work_contact_on,
            max_effort_fraction=checks.worst_effort,
            max_effort_joint=checks.worst_effort_joint,
            max_joint_limit_fraction=checks.worst_limit,
            max_joint_limit_joint=checks.worst_limit_joint,
            max_ik_residual_m=max((h.residual_m for h in self.c.hands), default=0.0),
            max_hand_error_m=self.max_hand_error,
            min_balance_margin_m=(
                None
                if not math.isfinite(checks.min_balance_margin_m)
                else checks.min_balance_margin_m
            ),
            max_stabiliser_force_fraction=self.max_stabiliser,
            deadline_s=deadline,
            seed=self.var.seed,
            series={
                "t_s": series.t_s,
                "joint_limit_fraction": series.limit_fraction,
                "effort_fraction": series.effort_fraction,
                "clearance_m": series.clearance_m,
            },
            own_feet=self.on_own_feet,
            max_support_force_fraction_outside_walks=support.max_outside_walks,
            max_support_force_fraction_in_walks=support.max_in_walks,
            min_zmp_margin_m=finite_or_none(support.min_zmp_margin_m),
            min_com_margin_m=finite_or_none(support.min_com_margin_m),
            min_planned_com_margin_m=finite_or_none(self.min_planned_margin_m),
            min_planned_cop_margin_m=min(
                (m for _, m, _, _ in self.pushed_margins if m is not None), default=None
            ),
            balance_plan=self.c.balance.how,
            balance_series={
                "t_s": support.series.t_s,
                "support_fraction": support.series.support_fraction,
                "zmp_margin_m": support.series.zmp_margin_m,
                "com_margin_m": support.series.com_margin_m,
                "foot_force_n": support.series.foot_force_n,
            },
        )


def _bind(method: Callable[[Any, float], None], arg: Any) -> Callable[[float], None]:
    return lambda t_s: method(arg, t_s)


__all__ = ["TIME_STEP_S", "PreviewResult", "Variation", "run_preview"]


def _held_until(frames: list[Any], t_s: float) -> float:
    """The end of the hold that starts with the plan frame at ``t_s``: the time of the last
    following frame with the same joints, base and grip (``t_s`` when the plan moves on)."""
    times = [frame.t_s for frame in frames]
    i = bisect.bisect_left(times, t_s - 1e-5)  # frame times are rounded to the microsecond
    if i >= len(frames):
        return t_s

    def pose(frame: Any) -> tuple[Any, ...]:
        return (frame.joints_rad, frame.base_xy_yaw, frame.grip, frame.pelvis_pitch_rad)

    end, held = float(frames[i].t_s), pose(frames[i])
    for frame in frames[i + 1 :]:
        if pose(frame) != held:
            break
        end = float(frame.t_s)
    return end
