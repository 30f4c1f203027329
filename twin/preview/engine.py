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
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from robots.bullet import pb
from scenes.model import Scene
from scenes.tasks import Task, item_on_bench, target_point
from twin.preview.checks import CLEARANCE_HORIZON_M, Checks, support_margin
from twin.preview.compile import REACH_TOLERANCE_M, CompiledTask, compile_task
from twin.preview.hall import PreviewHall
from twin.preview.kinematics import Kinematics, hand_joint
from twin.preview.plan import PlanTable
from twin.preview.result import TIME_STEP_S, PreviewResult, Variation

log = logging.getLogger(__name__)

SOLE_PRELOAD_M: Final = -0.001  # the lowest sole's target height: 1 mm into the floor
SOLE_FOLLOW_GAIN: Final = 0.5  # fraction of the sole's height error corrected per control tick
SOLE_FOLLOW_MAX_M: Final = 0.15  # the most the hold's height may differ from the plan's
CONTROL_EVERY: Final = 1
CHECK_EVERY: Final = 4
BALANCE_EVERY: Final = 12
POSITION_GAIN: Final = 0.3
"""Position gain of the arm, torso and neck motors (they hold loads against gravity)."""
LEG_POSITION_GAIN: Final = 0.05
"""Legs: soft (the stabilised base carries the body; stiff legs fight the floor at every step)."""
VELOCITY_GAIN: Final = 1.0
LEG_PARTS: Final = ("hip", "knee", "ankle")
GRIP_FORCE_N: Final = 400.0
GRASP_REACH_M: Final = 0.02
"""A grasp closes on an item only if the hand's collision shape is this close to it."""
"""At the grasp instant the hand's centre must be this close to the item's centre."""
DROP_M: Final = 0.05
"""A held item this far from where the hand holds it has slipped out (dropped)."""
PLACE_TOLERANCE_M: Final = 0.05
DYNAMIC_REACH_TOLERANCE_M: Final = 0.05
HAND_SETTLE_S: Final = 0.25
SETTLE_S: Final = 0.5


Observer = Callable[[float, PreviewHall], None]
"""Called after every physics step with the simulated time (s) and the hall (a recorder)."""


def run_preview(
    task: Task,
    scene: Scene,
    *,
    variation: Variation | None = None,
    compiled: CompiledTask | None = None,
    observer: Observer | None = None,
    keep_series: bool = True,
) -> PreviewResult:
    """Run one preview of ``task`` in ``scene`` (see the module docstring)."""
    compiled = compiled or compile_task(task, scene)
    return _Run(compiled, scene, variation or Variation.nominal(), observer, keep_series).run()


class _Run:
    """The state of one run; :meth:`run` steps it to the end."""

    def __init__(
        self,
        compiled: CompiledTask,
        scene: Scene,
        variation: Variation,
        observer: Observer | None,
        keep_series: bool,
    ) -> None:
        self.c = compiled
        self.scene = scene
        self.var = variation
        self.observer = observer
        self.keep_series = keep_series
        self.rng = np.random.default_rng(variation.seed)
        self.time_scale = self._factor(variation.timing_sigma)
        plan = compiled.plan
        model = compiled.model
        self.rest = compiled.rest_rad
        with Kinematics(model) as kin:
            self.heights = [
                kin.pelvis_over_feet({**self.rest, **f.joints_rad}, f.pelvis_pitch_rad)[2]
                for f in _filled_frames(plan.frames, self.rest)
            ]
        self.frame_times = np.array([f.t_s for f in plan.frames])
        self.table = PlanTable(plan, self.rest)
        first = self.table.at(0.0)
        start = (first.base_xy_yaw[0], first.base_xy_yaw[1], self.heights[0])
        self.hall = PreviewHall(
            scene, plan.robot, start, first.base_xy_yaw[2], first.pelvis_pitch_rad,
            first.joints_rad, time_step_s=TIME_STEP_S,
        )  # fmt: skip

    def _factor(self, sigma: float) -> float:
        if sigma == 0.0:
            return 1.0
        return max(0.3, 1.0 + sigma * float(self.rng.standard_normal()))

    # -- set-up -------------------------------------------------------------------------

    def _setup(self) -> None:
        hall, model = self.hall, self.c.model
        client = hall.client
        joints = hall.motor_joints
        self.n = len(joints)
        self.forces = [j.effort_limit if math.isfinite(j.effort_limit) else 100.0 for j in joints]
        self.position_gains = [
            LEG_POSITION_GAIN if any(part in c for part in LEG_PARTS) else POSITION_GAIN
            for c in hall.canonical
        ]
        self.lower = np.array([j.lower for j in joints])
        self.upper = np.array([j.upper for j in joints])
        self.gripper = np.array(
            [
                j.kind == "prismatic" and c == j.name
                for j, c in zip(joints, hall.canonical, strict=True)
            ]
        )
        self.friction_scale = self._factor(self.var.friction_sigma)
        self._perturb()
        self.link_masses = {
            link: pb.getDynamicsInfo(hall.body, link, physicsClientId=client)[0]
            for link in range(-1, pb.getNumJoints(hall.body, physicsClientId=client))
        }
        self.checks = Checks(
            hall.canonical, self.lower, self.upper, np.array(self.forces),
            max_effort_fraction=self.c.task.limits.max_effort_fraction,
            max_joint_limit_fraction=self.c.task.limits.max_joint_limit_fraction,
            min_clearance_m=self.c.task.limits.min_clearance,
            check_dt_s=CHECK_EVERY * TIME_STEP_S,
        )  # fmt: skip
        self.hand_links = {side: self._chain(side) for side in ("left", "right")}
        self.hand_link: dict[str, int] = {
            side: hall.link_of(hand_joint(model, side))
            for side in ("left", "right")
            if side in self._sides()
        }
        self.held: dict[str, tuple[int, int, str, NDArray[np.float64]]] = {}
        self._previous_targets: NDArray[np.float64] | None = None
        self.dropped: set[str] = set()
        self.max_hand_error = 0.0
        self.max_stabiliser = 0.0
        self.feet = [
            link for link, name in hall.link_names.items() if "foot" in name.lower() and link >= 0
        ]
        self._sole_offset_m = 0.0  # the hold's height correction that keeps a sole on the floor

    def _sides(self) -> set[str]:
        sides = set()
        for side in ("left", "right"):
            try:
                hand_joint(self.c.model, side)
            except KeyError:
                continue
            sides.add(side)
        return sides

    def _chain(self, side: str) -> set[int]:
        """Links from the forearm out (the hand at work may touch what it works on)."""
        try:
            root = self.hall.link_of(f"{side}_elbow")
        except KeyError:
            return set()
        hall = self.hall
        out = {root}
        changed = True
        while changed:
            changed = False
            for i in range(pb.getNumJoints(hall.body, physicsClientId=hall.client)):
                parent = pb.getJointInfo(hall.body, i, physicsClientId=hall.client)[16]
                if parent in out and i not in out:
                    out.add(i)
                    changed = True
        return out

    def _perturb(self) -> None:
        hall, var, client = self.hall, self.var, self.hall.client
        if var.is_nominal:
            return
        for link in range(-1, pb.getNumJoints(hall.body, physicsClientId=client)):
            info = pb.getDynamicsInfo(hall.body, link, physicsClientId=client)
            scale = self._factor(var.mass_sigma)
            pb.changeDynamics(
                hall.body, link, mass=info[0] * scale,
                localInertiaDiagonal=[v * scale for v in info[2]],
                lateralFriction=info[1] * self.friction_scale, physicsClientId=client,
            )  # fmt: skip
        pb.changeDynamics(
            hall.floor, -1,
            lateralFriction=pb.getDynamicsInfo(hall.floor, -1, physicsClientId=client)[1]
            * self.friction_scale, physicsClientId=client,
        )  # fmt: skip
        for bench in self.scene.benches:
            for item in bench.items:
                body = hall.item_body(item.id)
                info = pb.getDynamicsInfo(body, -1, physicsClientId=client)
                if item.fixed:
                    continue
                pb.changeDynamics(
                    body, -1, mass=info[0] * self._factor(var.mass_sigma),
                    lateralFriction=info[1] * self.friction_scale, physicsClientId=client,
                )  # fmt: skip
                pos, orn = pb.getBasePositionAndOrientation(body, physicsClientId=client)
                dx, dy = (float(v) for v in self.rng.normal(0.0, var.noise_sigma_m, 2))
                pb.resetBasePositionAndOrientation(
                    body, (pos[0] + dx, pos[1] + dy, pos[2]), orn, physicsClientId=client
                )

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
            result = self._result(steps * TIME_STEP_S, time.perf_counter() - started)
        finally:
            self.hall.close()
        return result

    def plan_time(self, t_s: float) -> float:
        """Plan time at simulated time ``t_s``."""
        return t_s / self.time_scale

    def step_at(self, t_s: float) -> int:
        """Index of the task step running at simulated time ``t_s``."""
        tp = self.plan_time(t_s)
        for span in self.c.steps:
            if tp < span.end_s:
                return span.index
        return self.c.steps[-1].index if self.c.steps else 0

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
                    f"({_xyz(target.target_m)}): IK residual {target.residual_m:.3f} m "
                    f"(tolerance {REACH_TOLERANCE_M:g} m)",
                )  # fmt: skip
        events.sort(key=lambda e: (e[0], e[1]))
        return events

    def _hand_com(self, side: str) -> NDArray[np.float64]:
        hall = self.hall
        state = pb.getLinkState(hall.body, self.hand_link[side], physicsClientId=hall.client)
        return np.array(state[0])

    def _hand_check(self, target: Any, t_s: float) -> None:
        if not target.reached or target.hand not in self.hand_link:
            return
        error = float(np.linalg.norm(self._hand_com(target.hand) - np.array(target.target_m)))
        self.max_hand_error = max(self.max_hand_error, error)
        if error > DYNAMIC_REACH_TOLERANCE_M:
            self.checks.raise_once(
                "reach", f"dyn:{target.step}:{target.what}", target.step, t_s,
                f"{target.hand} hand {error:.3f} m from {target.what} in dynamics "
                f"(tolerance {DYNAMIC_REACH_TOLERANCE_M:g} m)",
            )  # fmt: skip

    def _grasp(self, span: Any, t_s: float) -> None:
        hall, client = self.hall, self.hall.client
        body = hall.item_body(span.item)
        link = self.hand_link[span.hand]
        hand = pb.getLinkState(hall.body, link, physicsClientId=client)
        item_pos, item_orn = pb.getBasePositionAndOrientation(body, physicsClientId=client)
        near = pb.getClosestPoints(
            hall.body, body, 1.0, linkIndexA=link, linkIndexB=-1, physicsClientId=client
        )
        gap = min((float(p[8]) for p in near), default=math.inf)
        if gap > GRASP_REACH_M:
            self.checks.raise_once(
                "grasp", span.item, span.grasp_step, t_s,
                f"{span.hand} hand {gap:.3f} m from item:{span.item} when closing "
                f"(needs {GRASP_REACH_M:g} m): nothing grasped",
            )  # fmt: skip
            return
        # a constraint's parent frame is relative to the link's centre of mass frame (not its
        # URDF frame: getLinkState [4], [5]), so the item stays where the hand took it
        inv_pos, inv_orn = pb.invertTransform(hand[0], hand[1])
        rel_pos, rel_orn = pb.multiplyTransforms(inv_pos, inv_orn, item_pos, item_orn)
        constraint = pb.createConstraint(
            hall.body, link, body, -1, pb.JOINT_FIXED, (0, 0, 0), rel_pos, (0, 0, 0),
            parentFrameOrientation=rel_orn, physicsClientId=client,
        )  # fmt: skip
        pb.changeConstraint(
            constraint, maxForce=GRIP_FORCE_N * self.friction_scale, physicsClientId=client
        )
        for own in self.hand_links.get(span.hand, set()):
            pb.setCollisionFilterPair(hall.body, body, own, -1, 0, physicsClientId=client)
        self.held[span.item] = (constraint, link, span.hand, np.array(rel_pos))

    def _release(self, span: Any, t_s: float) -> None:
        held = self.held.pop(span.item, None)
        if held is None:
            return
        hall, client = self.hall, self.hall.client
        pb.removeConstraint(held[0], physicsClientId=client)
        body = hall.item_body(span.item)
        for own in self.hand_links.get(span.hand, set()):
            pb.setCollisionFilterPair(hall.body, body, own, -1, 1, physicsClientId=client)

    def _placed(self, span: Any, t_s: float) -> None:
        if span.place_target_m is None or span.item in self.dropped:
            return
        body = self.hall.item_body(span.item)
        pos = pb.getBasePositionAndOrientation(body, physicsClientId=self.hall.client)[0]
        miss = float(np.linalg.norm(np.array(pos) - np.array(span.place_target_m)))
        if miss > PLACE_TOLERANCE_M:
            self.checks.raise_once(
                "place", span.item, span.place_step, t_s,
                f"item:{span.item} came to rest {miss:.3f} m from where it was to be placed "
                f"({_xyz(span.place_target_m)})",
            )  # fmt: skip

    # -- checks -------------------------------------------------------------------------

    def _check(self, t_s: float, balance: bool) -> None:
        hall, client = self.hall, self.hall.client
        step = self.step_at(t_s)
        states = pb.getJointStates(hall.body, hall.motors, physicsClientId=client)
        positions = np.array([s[0] for s in states])
        efforts = np.array([s[3] for s in states])
        if self.var.noise_sigma_m:
            positions = positions + self.rng.normal(0.0, self.var.noise_sigma_m, len(positions))
        targets = self._previous_targets if self._previous_targets is not None else positions
        limit, effort = self.checks.joints(t_s, step, positions, efforts, targets)
        clearance = self.checks.clearance(t_s, step, self._nearest(step))
        force = hall.stabiliser_force_n() / hall.weight_n
        self.max_stabiliser = max(self.max_stabiliser, force)
        self._held_check(t_s, step)
        if balance and self.c.task.steps[step].kind != "walk" and not self._walking(t_s):
            self.checks.balance(t_s, step, self._balance_margin())
        if self.keep_series:
            self.checks.sample(t_s, limit, effort, clearance)

    def _walking(self, t_s: float) -> bool:
        # the last instants of a walk blend into the next step: give the feet time to land
        tp = self.plan_time(t_s)
        return any(s.kind == "walk" and s.start_s <= tp < s.end_s + 0.3 for s in self.c.steps)

    def _held_check(self, t_s: float, step: int) -> None:
        hall, client = self.hall, self.hall.client
        for item, (constraint, link, hand, rel) in list(self.held.items()):
            state = pb.getLinkState(hall.body, link, physicsClientId=client)
            expected, _ = pb.multiplyTransforms(state[0], state[1], rel.tolist(), (0, 0, 0, 1))
            body = hall.item_body(item)
            pos = pb.getBasePositionAndOrientation(body, physicsClientId=client)[0]
            slip = float(np.linalg.norm(np.array(pos) - np.array(expected)))
            if slip > DROP_M:
                self.checks.raise_once(
                    "grasp", item, step, t_s,
                    f"item:{item} slipped {slip:.3f} m out of the {hand} hand: dropped",
                )  # fmt: skip
                pb.removeConstraint(constraint, physicsClientId=client)
                del self.held[item]
                self.dropped.add(item)

    def _work_set(self, step: int) -> tuple[set[int], set[str]]:
        """(own links exempt, other bodies they may touch) for a step's hand at work."""
        s = self.c.task.steps[step]
        scene = self.scene
        benches: set[str] = set()
        sides: set[str] = set()
        if s.reach is not None:
            sides.add(s.reach.hand)
            t = s.reach.target
            if t.bench is not None:
                benches.add(t.bench)
            elif t.item is not None:
                benches.add(item_on_bench(scene, t.item)[0].id)
            else:
                benches.update(_benches_near(scene, target_point(t, scene)))
        elif s.grasp is not None:
            sides.add(s.grasp.hand)
            benches.add(item_on_bench(scene, s.grasp.item)[0].id)
        elif s.place is not None:
            sides.update(("left", "right"))
            benches.add(item_on_bench(scene, s.place.item)[0].id)
            benches.update(_benches_near(scene, target_point(s.place.at, scene)))
        elif s.torque is not None:
            sides.update(("left", "right"))
            benches.add(item_on_bench(scene, s.torque.wrench)[0].id)
            if s.torque.at is not None:
                benches.update(_benches_near(scene, target_point(s.torque.at, scene)))
        elif s.calibrate is not None:
            sides.update(("left", "right"))
            benches.add(item_on_bench(scene, s.calibrate.array)[0].id)
        links: set[int] = set()
        for side in sides:
            links |= self.hand_links.get(side, set())
        others = {f"bench:{b}" for b in benches}
        for bench in scene.benches:
            if bench.id in benches:
                others.update(f"item:{i.id}" for i in bench.items)
        return links, others

    def _nearest(self, step: int) -> list[tuple[float, str, str]]:
        hall, client = self.hall, self.hall.client
        base = pb.getBasePositionAndOrientation(hall.body, physicsClientId=client)[0]
        reach = 1.2 + CLEARANCE_HORIZON_M
        box_lo = (base[0] - reach, base[1] - reach, 0.02)
        box_hi = (base[0] + reach, base[1] + reach, base[2] + 1.5 + CLEARANCE_HORIZON_M)
        overlapping = pb.getOverlappingObjects(box_lo, box_hi, physicsClientId=client) or ()
        near = {int(b) for b, _ in overlapping}
        exempt_links, work = self._work_set(step)
        held = {f"item:{item}" for item in self.held}
        out: list[tuple[float, str, str]] = []
        for other in hall.others:
            if other.body not in near or other.name in held:
                continue
            points = pb.getClosestPoints(
                hall.body, other.body, CLEARANCE_HORIZON_M, physicsClientId=client
            )
            best: tuple[float, int, int] | None = None
            for p in points or ():
                if other.name in work and int(p[3]) in exempt_links:
                    continue
                if best is None or p[8] < best[0]:
                    best = (float(p[8]), int(p[3]), int(p[4]))
            if best is not None:
                out.append((best[0], hall.link_name(best[1]), self._other_name(other, best[2])))
        return out

    def _other_name(self, other: Any, link: int) -> str:
        if other.name.startswith("crane:") and link >= 0:
            crane = self.hall.world.cranes[other.name.partition(":")[2]]
            for name, index in crane.link_index.items():
                if index == link:
                    return f"{other.name}/{name}"
        return str(other.name)

    def _balance_margin(self) -> float | None:
        hall, client = self.hall, self.hall.client
        contacts = pb.getContactPoints(hall.body, hall.floor, physicsClientId=client) or ()
        points = np.array([[c[5][0], c[5][1]] for c in contacts]).reshape(-1, 2)
        base = pb.getBasePositionAndOrientation(hall.body, physicsClientId=client)[0]
        total = self.link_masses[-1]
        com = np.array(base[:2]) * self.link_masses[-1]
        links = [i for i in self.link_masses if i >= 0]
        for i, state in zip(
            links, pb.getLinkStates(hall.body, links, physicsClientId=client), strict=True
        ):
            com += np.array(state[0][:2]) * self.link_masses[i]
            total += self.link_masses[i]
        return support_margin(points, com / total)

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
        )


def _bind(method: Callable[[Any, float], None], arg: Any) -> Callable[[float], None]:
    return lambda t_s: method(arg, t_s)


def _filled_frames(frames: list[Any], rest: dict[str, float]) -> list[Any]:
    """Each frame with its full joints (carrying earlier values forward)."""
    current = dict(rest)
    out = []
    for frame in frames:
        current = {**current, **frame.joints_rad}
        out.append(type(frame)(**{**_fields(frame), "joints_rad": dict(current)}))
    return out


def _fields(frame: Any) -> dict[str, Any]:
    return {name: getattr(frame, name) for name in frame.__struct_fields__}


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


def _benches_near(scene: Scene, point: tuple[float, float, float]) -> set[str]:
    """Benches whose footprint (grown by 10 cm) is under a point."""
    out = set()
    for bench in scene.benches:
        c, s = math.cos(-bench.pose.yaw_rad), math.sin(-bench.pose.yaw_rad)
        dx, dy = point[0] - bench.pose.xyz[0], point[1] - bench.pose.xyz[1]
        lx, ly = c * dx - s * dy, s * dx + c * dy
        if abs(lx) <= bench.size[0] / 2 + 0.1 and abs(ly) <= bench.size[1] / 2 + 0.1:
            out.add(bench.id)
    return out


def _xyz(v: tuple[float, float, float]) -> str:
    return "({:.2f}, {:.2f}, {:.2f}) m".format(*v)


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
